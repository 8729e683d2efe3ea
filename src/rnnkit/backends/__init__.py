"""How a sequence is executed; one seam, :func:`resolve`.

- ``reference``: the readable per-step loop over ``cell.step`` (:mod:`.reference`) — the
  specification every other backend is tested against.
- ``native``: torch's own fused kernels (``torch.lstm`` / ``gru`` / ``rnn_tanh`` / ``rnn_relu``:
  oneDNN on CPU, cuDNN on GPU) for the configurations torch supports (:mod:`.native`).
- ``fused``: every configuration of a cell with a fused kernel (LSTM, GRU, Elman, sLSTM); the input
  projection for all steps in one matmul, then one ``torch.autograd.Function`` per
  (layer, direction) with a hand-written BPTT backward (:mod:`.fused`), or the cell's
  ``sequence_scan``. When autograd records nothing (``no_grad``, ``inference_mode``, frozen
  weights) the kernels save nothing for a backward pass: the configurations torch's kernels
  compute run those, the rest a forward-only loop (:func:`.kernel_parts.needs_backward`) whose
  recurrence is compiled C++ on the CPU (:mod:`.cpu_kernels`). On the CPU in float32
  the matmuls around and inside the recurrence go through oneDNN
  (:func:`.kernel_parts.input_projection`, :func:`.kernel_parts.step_matmul`).
- ``auto``: ``native`` when the configuration allows it, else ``fused`` when the cell has a
  fused kernel, else ``reference``; :func:`resolve_with_note` says why.

Which kernels serve a cell is the cell's answer (``native_kernel``, ``native_blocker``,
``fused_kernel``; see :mod:`rnnkit.cells.base`); nothing here branches on the cell's class.
"""

from __future__ import annotations

BACKENDS = ("auto", "native", "fused", "reference")


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {name!r}")
    return name


def native_blocker(layer) -> str | None:
    """What keeps torch's kernels from running ``layer``, as ``name=value``; None if nothing.

    The cell answers for itself (:meth:`~rnnkit.cells.RecurrentCell.native_kernel`,
    :meth:`~rnnkit.cells.RecurrentCell.native_blocker`); options of the layer that torch's
    kernels lack (zoneout) are checked here.
    """
    cell = layer.cell
    blocker = cell.native_blocker()
    if blocker is not None:
        return blocker
    if cell.native_kernel() is None:
        return f"{type(cell).__name__}, which has no torch kernel"
    if any(layer.zoneout):
        return f"zoneout={layer.zoneout_option!r}"
    return None


def resolve_with_note(layer) -> tuple[str, str | None]:
    """``(backend, note)``: the backend that will run ``layer`` and, when ``auto`` could not
    pick ``native``, one line saying why (else None).

    ``auto`` picks ``native`` if nothing blocks it, else ``fused`` if the cell has a fused
    kernel, else ``reference``. An explicit backend that cannot serve the layer raises.

    Raises:
        ValueError: ``native`` with a blocker, or ``fused`` for a cell without a fused kernel;
            the message names what prevents it and the backend to use instead.
    """
    cell = layer.cell
    blocker = native_blocker(layer)
    fused = cell.fused_kernel() is not None
    fallback = "fused" if fused else "reference"
    if layer.backend == "auto":
        if blocker is None:
            return "native", None
        note = f"backend='auto' runs {fallback!r}: torch's kernels cannot serve {blocker}"
        if not fused:
            note += f", and {type(cell).__name__} has no fused kernel"
        return fallback, note
    if layer.backend == "native" and blocker:
        raise ValueError(
            f"backend='native' cannot serve {blocker}: torch's fused kernels do not implement it; "
            f"use backend={fallback!r} (or 'auto', which picks it)"
        )
    if layer.backend == "fused" and not fused:
        raise ValueError(
            f"backend='fused' cannot serve {type(cell).__name__}: the cell has no fused "
            "whole-sequence kernel (fused_kernel() is None); use backend='reference' "
            "(or 'auto', which picks it)"
        )
    return layer.backend, None


def resolve(layer) -> str:
    """The backend that will run ``layer``: its ``backend`` option with ``auto`` decided."""
    return resolve_with_note(layer)[0]


def scan_function(backend: str):
    """The whole-sequence function of a scanning backend (``fused`` or ``reference``).

    Both have :func:`rnnkit.backends.reference.scan`'s signature,
    ``scan(cell, weights, x, state, keep) -> (h, final_state)``.
    """
    if backend == "fused":
        from rnnkit.backends.fused import scan
    elif backend == "reference":
        from rnnkit.backends.reference import scan
    elif backend == "export":
        from rnnkit.backends.exportable import scan
    else:
        raise ValueError(
            f"backend {backend!r} does not run a scan; expected 'fused' or 'reference'"
        )
    return scan


def available_backends() -> dict[str, str]:
    """Backend name -> one-line description (for ``rnnkit env``)."""
    return {
        "native": "torch fused kernels (oneDNN on CPU, cuDNN on GPU); vanilla configurations",
        "fused": "whole-sequence hand-written BPTT; every configuration",
        "reference": "readable per-step loop over the cell; the specification",
    }
