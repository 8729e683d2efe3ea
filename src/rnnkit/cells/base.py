"""The step contract shared by every cell.

A cell computes one time step::

    y_t, state_t = cell(x_t, state_{t-1})

``state`` is a NamedTuple (:class:`HiddenState` or :class:`LSTMState`); ``y_t`` is the new hidden
state ``h_t``. The math lives in :meth:`RecurrentCell.step`, a function of explicit weights, so the
same code runs a standalone cell (``cell(x, state)`` uses the cell's own parameters) and every
(layer, direction) of a stacked layer (which stores torch-named parameters such as
``weight_hh_l1_reverse`` and hands them to ``step``).

A cell also describes itself to everything above it, so layers, backends, initialisers and
diagnostics ask the cell instead of branching on its class or parameter names:

- ``state_type`` and :meth:`~RecurrentCell.state_sizes`: the state's fields and sizes;
- :meth:`~RecurrentCell.native_kernel` / :meth:`~RecurrentCell.native_blocker`: torch's kernel
  for the family and the option that keeps it from serving this configuration;
  :meth:`~RecurrentCell.native_weights`: the weights in that kernel's flat order;
- :meth:`~RecurrentCell.onnx_recurrence` / :meth:`~RecurrentCell.onnx_blocker`: the cell as
  ONNX's own ``LSTM`` / ``GRU`` / ``RNN`` operator, or why it is not one;
- :meth:`~RecurrentCell.fused_kernel`: the whole-sequence kernel of ``backend="fused"`` (None:
  ``auto`` runs ``reference``), by default the cell's optional ``sequence_scan``;
- :meth:`~RecurrentCell.gates`: the named gate activations ``step`` is built on;
  ``gate_blocks``, ``sigmoid_gates``, ``forget_gate``, ``input_gate``: what they are;
- :meth:`~RecurrentCell.parameter_roles`: each parameter's role (:data:`PARAMETER_ROLES`),
  which the initialisers read instead of names.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import NamedTuple

import torch
from torch import Tensor, nn


class HiddenState(NamedTuple):
    """State of an Elman or GRU cell. ``h``: (B, H)."""

    h: Tensor


class LSTMState(NamedTuple):
    """State of an LSTM cell. ``h``: (B, P) with P = proj_size or H; ``c``: (B, H)."""

    h: Tensor
    c: Tensor


PARAMETER_ROLES = {
    "input": "(k*H, I) input weights, one H-row block per gate",
    "recurrent": "(k*H, P) recurrent weights, one H-row block per gate",
    "bias": "(k*H,) gate biases; the first one holds a forget-gate bias",
    "projection": "(P, H) output projection",
    "peephole": "(H,) diagonal weights from the cell state",
    "gain": "normalisation gains, 1 at init",
    "shift": "normalisation shifts, 0 at init",
}
"""Roles a parameter can declare in :meth:`RecurrentCell.parameter_roles`, with their shapes."""


def _check_size(name: str, value, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


class RecurrentCell(nn.Module):
    """Base class: parameters, validation and initial state for one recurrent step.

    Subclasses define :meth:`parameter_shapes` (name -> shape, torch's names),
    :meth:`parameter_roles`, :meth:`step` (gated cells build it on :meth:`gates`) and, where
    they have them, :meth:`native_kernel` and :meth:`fused_kernel`.

    Class attributes a subclass sets:
        state_type: the state NamedTuple (fields in order, ``h`` first).
        gate_blocks: names of the H-row blocks of the input and recurrent weights, in order.
        sigmoid_gates: the entries of :meth:`gates` that are sigmoid gates, in (0, 1);
            diagnostics report their saturation.
        forget_gate: the gate block that scales the previous state (LSTM ``forget``, GRU
            ``update``), or None; forget-bias initialisers set its bias.
        input_gate: the gate block with its own parameters that scales what is written
            (LSTM ``input``), or None; chrono init sets its bias to minus the forget bias.
        default_forget_bias: the forget-gate bias of the default ``rnnkit`` init.
        sequence_scan: None, or for a cell whose gates do not read the state a whole-sequence
            function with :func:`rnnkit.backends.reference.scan`'s signature (a parallel scan,
            trained by autograd); set it as ``staticmethod(fn)``. The default
            :meth:`fused_kernel` returns it.

    Args:
        input_size: features I of ``x_t``.
        hidden_size: units H.
        bias: learn ``bias_ih`` and ``bias_hh``.
        create_parameters: allocate parameters on the cell. Layers pass ``False``: they own the
            parameters under torch's per-layer names and pass them to :meth:`step`.
    """

    state_type: type = HiddenState
    gate_blocks: tuple[str, ...] = ("hidden",)
    sigmoid_gates: tuple[str, ...] = ()
    forget_gate: str | None = None
    input_gate: str | None = None
    default_forget_bias: float = 0.0
    sequence_scan: Callable | None = None

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        create_parameters: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self.input_size = _check_size("input_size", input_size)
        self.hidden_size = _check_size("hidden_size", hidden_size)
        self.bias = bool(bias)
        self._create_parameters = create_parameters
        self._factory = {"device": device, "dtype": dtype}

    # -- subclasses ------------------------------------------------------------------------
    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def parameter_roles(self) -> dict[str, str]:
        """Parameter name -> role (a key of :data:`PARAMETER_ROLES`), for initialisers."""
        raise NotImplementedError

    def step(self, x: Tensor, state, weights: Mapping[str, Tensor]):
        """One time step with explicit ``weights`` (keys from :meth:`parameter_shapes`)."""
        raise NotImplementedError

    def gates(self, x: Tensor, state, weights: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The named gate activations of one step, (B, H) each; ``{}`` for an ungated cell."""
        return {}

    def native_kernel(self) -> Callable | None:
        """torch's fused kernel for this cell family (``torch.lstm``, …), or None if none.

        A kernel that exists may still be blocked by an option: see :meth:`native_blocker`.
        """
        return None

    def native_blocker(self) -> str | None:
        """The option that keeps :meth:`native_kernel` from serving, as ``name=value``; or None."""
        return None

    def native_weights(self, weights: Mapping[str, Tensor]) -> list[Tensor]:
        """``weights`` in the native kernel's flat order (torch's w_ih, w_hh, b_ih, b_hh, w_hr)."""
        return list(weights.values())

    def onnx_blocker(self) -> str | None:
        """Why no ONNX recurrent operator expresses this cell (None: :meth:`onnx_recurrence`
        maps it); see :mod:`rnnkit.backends.onnx_ops`."""
        return f"{type(self).__name__} has no ONNX operator"

    def onnx_recurrence(self, weights: Mapping[str, Tensor]):
        """One (layer, direction)'s ``weights`` as an
        :class:`~rnnkit.backends.onnx_ops.OnnxRecurrence` (only when :meth:`onnx_blocker` is
        None)."""
        raise NotImplementedError(self.onnx_blocker())

    def fused_kernel(self) -> Callable | None:
        """The whole-sequence kernel of ``backend="fused"``, or None if the cell has none.

        A function with :func:`rnnkit.backends.reference.scan`'s signature and result,
        ``fn(cell, weights, x, state, keep) -> (h, final_state)``. Default: ``sequence_scan``.
        """
        return self.sequence_scan

    @property
    def output_size(self) -> int:
        """Size of ``y_t`` and of ``state.h``."""
        return self.hidden_size

    @property
    def gate_count(self) -> int:
        """Number of H-sized blocks in the input weight (4 for LSTM, 3 for GRU, 1 for Elman)."""
        return len(self.gate_blocks)

    @property
    def forget_gate_index(self) -> int | None:
        """Index of ``forget_gate`` among ``gate_blocks``, or None."""
        return None if self.forget_gate is None else self.gate_blocks.index(self.forget_gate)

    def recurrent_blocks(self, w: Tensor) -> list[Tensor]:
        """Views of the blocks of a recurrent weight that initialisers treat as square matrices
        (orthogonal, identity): by default its H-row gate blocks; a cell with block-diagonal
        (multi-head) recurrent weights returns one block per (gate, head)."""
        return list(w.split(self.hidden_size, dim=0))

    def initial_forget_bias(self, like: Tensor) -> float | Tensor:
        """The forget-gate bias of the default init: ``default_forget_bias``, or per unit (H,)
        where the family recommends a spread (``like`` gives dtype and device)."""
        return self.default_forget_bias

    def parameter_names(self, role: str) -> list[str]:
        """Names of the parameters with ``role``, in :meth:`parameter_shapes` order."""
        if role not in PARAMETER_ROLES:
            raise ValueError(f"role must be one of {', '.join(PARAMETER_ROLES)}; got {role!r}")
        return [name for name, r in self.parameter_roles().items() if r == role]

    # -- shared ------------------------------------------------------------------------------
    def _finish_init(self) -> None:
        """Allocate parameters (when the cell owns them) and initialise them."""
        if self._create_parameters:
            for name, shape in self.parameter_shapes().items():
                if hasattr(self, name):
                    raise ValueError(
                        f"{type(self).__name__}: parameter name {name!r} clashes with an "
                        "attribute of the cell; name it differently (torch's: bias_ih, …)"
                    )
                setattr(self, name, nn.Parameter(torch.empty(shape, **self._factory)))
            self.reset_parameters()

    def weights(self) -> dict[str, Tensor]:
        """The cell's own parameters by name (only when ``create_parameters=True``)."""
        return {name: getattr(self, name) for name in self.parameter_shapes()}

    def reset_parameters(self, init: str = "rnnkit") -> None:
        from rnnkit.init import initialize

        with torch.no_grad():
            initialize(self, self.weights(), init)

    def state_sizes(self) -> tuple[int, ...]:
        """Feature size of each state field, in NamedTuple order."""
        return (self.output_size,)

    def initial_state(self, batch_size: int, device=None, dtype=None):
        """Zeros of the right shape: a NamedTuple of (batch_size, size) tensors."""
        batch_size = _check_size("batch_size", batch_size)
        device = device if device is not None else self._factory["device"]
        dtype = (
            dtype if dtype is not None else (self._factory["dtype"] or torch.get_default_dtype())
        )
        return self.state_type(
            *(
                torch.zeros(batch_size, size, device=device, dtype=dtype)
                for size in self.state_sizes()
            )
        )

    def forward(self, input: Tensor, state=None):
        """``(y_t, new_state) = cell(x_t, state)``; ``x_t``: (B, I) or (I,) unbatched."""
        if not self._create_parameters:
            raise RuntimeError(
                "this cell was built without parameters; call step(x, state, weights)"
            )
        if not isinstance(input, Tensor):
            raise TypeError(f"input must be a Tensor, got {type(input).__name__}")
        unbatched = input.dim() == 1
        if input.dim() not in (1, 2):
            raise ValueError(
                f"{type(self).__name__}: expected input of shape (B, {self.input_size}) or "
                f"({self.input_size},), got {tuple(input.shape)}"
            )
        if input.shape[-1] != self.input_size:
            raise ValueError(
                f"{type(self).__name__}: input has {input.shape[-1]} features, "
                f"expected input_size={self.input_size}"
            )
        if unbatched:
            input = input.unsqueeze(0)
        if state is None:
            state = self.initial_state(input.shape[0], device=input.device, dtype=input.dtype)
        else:
            state = self._check_state(state, input, unbatched)
        y, new_state = self.step(input, state, self.weights())
        if unbatched:
            return y.squeeze(0), self.state_type(*(s.squeeze(0) for s in new_state))
        return y, new_state

    def _check_state(self, state, input: Tensor, unbatched: bool):
        fields = self.state_type._fields
        if isinstance(state, Tensor) and len(fields) == 1:
            state = (state,)
        if not isinstance(state, tuple) or len(state) != len(fields):
            raise TypeError(
                f"{type(self).__name__}: state must be a {self.state_type.__name__}"
                f"({', '.join(fields)}), got {type(state).__name__}"
            )
        checked = []
        for name, s, size in zip(fields, state, self.state_sizes()):
            if unbatched:
                s = s.unsqueeze(0)
            expected = (input.shape[0], size)
            if tuple(s.shape) != expected:
                raise ValueError(
                    f"{type(self).__name__}: state.{name} has shape {tuple(s.shape)}, "
                    f"expected {expected}"
                )
            if s.dtype != input.dtype:
                raise TypeError(
                    f"{type(self).__name__}: state.{name} has dtype {s.dtype}, "
                    f"input has {input.dtype}"
                )
            if s.device != input.device:
                raise ValueError(
                    f"{type(self).__name__}: state.{name} is on {s.device}, "
                    f"input is on {input.device}"
                )
            checked.append(s)
        return self.state_type(*checked)

    def options_repr(self) -> str:
        """The family's options that differ from their defaults, as ``", name=value"`` text."""
        return ""

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            text += ", bias=False"
        return text + self.options_repr()


def default_stdv(hidden_size: int) -> float:
    """torch's uniform init bound, 1/sqrt(H)."""
    return 1.0 / math.sqrt(hidden_size)
