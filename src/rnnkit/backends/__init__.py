"""How a sequence is executed; one seam, :func:`resolve`.

- ``reference``: the readable per-step loop over ``cell.step`` (:mod:`.reference`) — the
  specification every other backend is tested against.
- ``native``: torch's own fused kernels (``torch.lstm`` / ``gru`` / ``rnn_tanh`` / ``rnn_relu``:
  oneDNN on CPU, cuDNN on GPU) for the configurations torch supports (:mod:`.native`).
- ``fused``: every configuration; the input projection for all steps in one matmul, then one
  ``torch.autograd.Function`` per (layer, direction) with a hand-written BPTT backward
  (:mod:`.fused`).
- ``auto``: ``native`` when the configuration allows it, else ``fused``.
"""

from __future__ import annotations

BACKENDS = ("auto", "native", "fused", "reference")


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {name!r}")
    return name


def native_blocker(layer) -> str | None:
    """The option of ``layer`` that torch's kernels cannot run, as ``name=value``; None if none."""
    cell = layer._cells[0]
    for option in ("peephole", "coupled", "layer_norm"):
        if getattr(cell, option, False):
            return f"{option}=True"
    if getattr(cell, "forget_bias", 0.0) and not cell.bias:
        return f"forget_bias={cell.forget_bias} with bias=False"
    if getattr(cell, "reset_after", True) is False:
        return "reset_after=False"
    nonlinearity = getattr(cell, "nonlinearity", None)
    if nonlinearity is not None and nonlinearity not in ("tanh", "relu"):
        return f"nonlinearity={nonlinearity!r}"
    if any(layer.zoneout):
        return f"zoneout={layer.zoneout_option!r}"
    return None


def resolve(layer) -> str:
    """The backend that will run ``layer``: its ``backend`` option with ``auto`` decided."""
    blocker = native_blocker(layer)
    if layer.backend == "auto":
        return "fused" if blocker else "native"
    if layer.backend == "native" and blocker:
        raise ValueError(
            f"backend='native' cannot serve {blocker}: torch's fused kernels do not implement it; "
            "use backend='fused' (or 'auto', which picks it)"
        )
    return layer.backend


def available_backends() -> dict[str, str]:
    """Backend name -> one-line description (for ``rnnkit env``)."""
    return {
        "native": "torch fused kernels (oneDNN on CPU, cuDNN on GPU); vanilla configurations",
        "fused": "whole-sequence hand-written BPTT; every configuration",
        "reference": "readable per-step loop over the cell; the specification",
    }
