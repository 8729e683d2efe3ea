"""Devices and precisions: name -> ``torch.device``, moving nested batches, autocast settings.

A device name is ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``. ``auto`` is CUDA when one
is available, else the CPU; MPS is used only when asked for, because recurrent kernels on MPS
are slower than on the CPU (torch issue 123148). Weights and checkpoints are always saved on
the CPU (:func:`rnnkit.io.save_tensors`), so a run trained on one device loads on another.

A precision is ``32`` (float32, no autocast), ``bf16`` (autocast to bfloat16; works on the CPU)
or ``16`` (autocast to float16 with a gradient scaler; CUDA only).

Example::

    >>> resolve_device("cpu")
    device(type='cpu')
    >>> batch = (torch.zeros(2, 3), {"lengths": torch.ones(2)}, 7)
    >>> moved = to_device(batch, torch.device("cpu"))
    >>> moved[0].device, moved[2]
    (device(type='cpu'), 7)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from rnnkit.errors import InvalidInputError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
PRECISIONS = ("32", "bf16", "16")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """Names of the devices this torch can use here: ``cpu``, ``cuda:0``…, ``mps``."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        names.append("mps")
    return names


def default_device() -> str:
    """What ``auto`` resolves to here (``cuda:0`` or ``cpu``)."""
    return "cuda:0" if torch.cuda.is_available() else "cpu"


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The ``torch.device`` for a device name; ``auto`` = CUDA if available, else CPU.

    Raises:
        InvalidInputError: the device is not there (the message lists the available ones) or
            the name is not a device name.
    """
    if isinstance(name, torch.device):
        name = str(name)
    text = str(name).strip().lower()
    if text == "auto":
        return torch.device(default_device())
    available = ", ".join(available_devices())
    try:
        device = torch.device(text)
    except RuntimeError:
        raise InvalidInputError(
            f"--device must be one of {', '.join(DEVICE_CHOICES)}, got {name!r} "
            f"(available here: {available})"
        ) from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidInputError(
                f"--device {name}: CUDA is not available (this torch "
                f"{'has no CUDA support' if torch.version.cuda is None else 'sees no GPU'}); "
                f"available here: {available}"
            )
        index = 0 if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise InvalidInputError(
                f"--device {name}: there are {torch.cuda.device_count()} CUDA devices; "
                f"available here: {available}"
            )
        return torch.device("cuda", index)
    if device.type == "mps":
        if not _mps_available():
            raise InvalidInputError(
                f"--device {name}: MPS is not available; available here: {available}"
            )
        return torch.device("mps")
    raise InvalidInputError(
        f"--device must be one of {', '.join(DEVICE_CHOICES)}, got {name!r} "
        f"(available here: {available})"
    )


def device_of(module: torch.nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (or buffer); the CPU for a module with none.

    >>> device_of(torch.nn.Linear(2, 2))
    device(type='cpu')
    """
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def state_to_float32(state: Any) -> Any:
    """A carried recurrent state with its half-precision tensors in float32: autocast leaves
    some outputs in bfloat16/float16, and the next window's input is float32 again.

    >>> state_to_float32((torch.zeros(1, dtype=torch.bfloat16), 3))[0].dtype
    torch.float32
    """
    if isinstance(state, torch.Tensor):
        return state.float() if state.dtype in (torch.float16, torch.bfloat16) else state
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(state_to_float32(s) for s in state))
    if isinstance(state, list | tuple):
        return type(state)(state_to_float32(s) for s in state)
    if isinstance(state, dict):
        return {k: state_to_float32(v) for k, v in state.items()}
    return state


def to_device(obj: Any, device: torch.device | str, *, non_blocking: bool = False) -> Any:
    """``obj`` with every tensor moved to ``device``, recursively.

    Walks tensors inside tuples, lists, dicts, NamedTuples and dataclasses; anything else
    (ints, strings, None) is returned as is. Containers are rebuilt, never changed in place.
    """
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # NamedTuple (LSTMState, batches)
        return type(obj)(*(to_device(v, device, non_blocking=non_blocking) for v in obj))
    if isinstance(obj, list | tuple):
        return type(obj)(to_device(v, device, non_blocking=non_blocking) for v in obj)
    if isinstance(obj, dict):
        return type(obj)(
            (k, to_device(v, device, non_blocking=non_blocking)) for k, v in obj.items()
        )
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {
            f.name: to_device(getattr(obj, f.name), device, non_blocking=non_blocking)
            for f in dataclasses.fields(obj)
            if f.init
        }
        return dataclasses.replace(obj, **changes)
    return obj


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a precision (None for ``32``).

    Raises:
        InvalidInputError: not one of ``32``, ``bf16``, ``16``.
    """
    text = str(precision)
    if text not in PRECISIONS:
        raise InvalidInputError(
            f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}"
        )
    return {"32": None, "bf16": torch.bfloat16, "16": torch.float16}[text]


def check_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """:func:`autocast_dtype`, refusing combinations the device does not support.

    Raises:
        InvalidInputError: ``16`` on the CPU (use ``bf16``), ``bf16`` on a GPU without it.
    """
    dtype = autocast_dtype(precision)
    if dtype is torch.float16 and device.type == "cpu":
        raise InvalidInputError(
            "--precision 16 (float16 with a gradient scaler) is unsupported on CPU; "
            "use --precision bf16"
        )
    if dtype is torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise InvalidInputError(
            f"--precision bf16: {torch.cuda.get_device_name(device)} does not support "
            "bfloat16; use --precision 16"
        )
    return dtype
