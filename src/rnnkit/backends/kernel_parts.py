"""The pieces every fused kernel shares.

- the derivative kernels ``sigmoid_backward`` / ``tanh_backward`` (one pass each);
- :func:`needs_backward`: whether autograd will record a call (else the forward-only paths);
- :func:`apply_in_float32`: the recurrence in float32 under autocast;
- :func:`keep_field`: a one-field state's ``keep`` tensor;
- the matmuls: :func:`input_projection` (the input side for all steps) and :func:`step_matmul`
  (a recurrence's per-step product), through oneDNN on the CPU in float32 where that is faster.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

# Fused derivative kernels: sigmoid_backward(g, y) = g y (1 - y), tanh_backward(g, y) = g (1 - y²).
_sigmoid_backward = torch.ops.aten.sigmoid_backward
_tanh_backward = torch.ops.aten.tanh_backward


def sigmoid_backward(grad: Tensor, y: Tensor, grad_input: Tensor | None = None) -> Tensor:
    """``grad ⊙ y ⊙ (1 - y)`` in one kernel, into ``grad_input`` when given."""
    if grad_input is None:
        return _sigmoid_backward.default(grad, y)
    return _sigmoid_backward.grad_input(grad, y, grad_input=grad_input)


def tanh_backward(grad: Tensor, y: Tensor, grad_input: Tensor | None = None) -> Tensor:
    """``grad ⊙ (1 - y²)`` in one kernel, into ``grad_input`` when given."""
    if grad_input is None:
        return _tanh_backward.default(grad, y)
    return _tanh_backward.grad_input(grad, y, grad_input=grad_input)


def needs_backward(*args) -> bool:
    """Whether autograd will record a call on ``args``: grad mode is on and a tensor among them
    requires grad. When not (``torch.no_grad``, ``inference_mode``, frozen weights), the fused
    kernels take their forward-only paths, which save nothing for a backward pass."""
    return torch.is_grad_enabled() and any(isinstance(a, Tensor) and a.requires_grad for a in args)


def _onednn_linear():
    """oneDNN's linear op (the one inductor's CPU path uses), or None where torch lacks it."""
    op = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    pack = getattr(torch.ops.mkldnn, "_reorder_linear_weight", None)
    usable = op is not None and pack is not None and torch.backends.mkldnn.is_available()
    return op if usable else None


_ONEDNN_LINEAR = _onednn_linear()


def input_projection(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x Wᵀ + b`` for the rows of ``x`` (N, I) with ``weight`` (G, I): the input side of a
    recurrence for all steps at once.

    ``torch.addmm`` where autograd records the call, under autocast and off the CPU. Otherwise
    (inference in float32 on the CPU) oneDNN's matmul, the one torch's own CPU LSTM kernel uses:
    on an AMD EPYC (AVX-512) with two threads it took 4.1 ms for (3,200 × 256) · (256 × 1,024)
    where the BLAS matmul behind ``torch.addmm`` took 9.2 ms (medians of 15).
    """
    fast = (
        _ONEDNN_LINEAR is not None
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
        and not needs_backward(x, weight, bias)
    )
    if fast:
        return _ONEDNN_LINEAR(x.contiguous(), weight.contiguous(), bias, "none", [], "")
    return x @ weight.t() if bias is None else torch.addmm(bias, x, weight.t())


# Per-step products h Wᵀ of a recurrence, (B, P) by (P, G), two threads, ms per step with
# torch.addmm / oneDNN with the weight packed once (packing: 0.09-0.27 ms): B=32 H=64 (G = 4H)
# 0.009 / 0.019; B=32 H=128 0.030 / 0.028; B=8 H=256 0.049 / 0.031; B=1 H=256 0.017 / 0.022;
# B=32 H=256 0.123 / 0.092; B=64 H=512 0.820 / 0.387 (AMD EPYC, AVX-512). oneDNN where B·G·P is
# at least STEP_MATMUL_MIN_WORK and the sequence is long enough to repay the packing.
STEP_MATMUL_MIN_WORK = 2**21
STEP_MATMUL_MIN_STEPS = 16


def step_matmul(weight: Tensor, batch: int, steps: int):
    """The per-step product of a recurrence as a function ``(h, other=None, out=None)``.

    It returns ``other + h Wᵀ`` (``h Wᵀ`` without ``other``) for ``weight`` W (G, P), ``h``
    (batch, P) and ``other`` (batch, G): written into ``out`` when given, else possibly into
    ``other``. On the CPU in float32, when the product is large enough and the sequence long
    enough (see :data:`STEP_MATMUL_MIN_WORK`), oneDNN's matmul with the weight packed once for all
    steps; otherwise ``torch.addmm``. Not differentiable: for the inside of the fused Functions
    (forward and backward) and for inference. The function's ``adds_in_place`` says whether
    ``product(h, other)`` adds into ``other`` in place (``addmm_``, no new tensor) or computes a
    new one (oneDNN: a caller that can add the product in a pass of its own does better with
    ``product(h)`` there).
    """
    G, P = weight.shape
    fast = (
        _ONEDNN_LINEAR is not None
        and weight.device.type == "cpu"
        and weight.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
        and batch * G * P >= STEP_MATMUL_MIN_WORK
        and steps >= STEP_MATMUL_MIN_STEPS
    )
    if fast:
        op = _ONEDNN_LINEAR
        packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), batch)

        def product(h: Tensor, other: Tensor | None = None, out: Tensor | None = None) -> Tensor:
            # The plain matmul, then the addition: oneDNN's matmul with an added operand
            # ("binary add") took 12.1 / 77.6 ms for 100 steps (into ``out``) at B = 32, H = 256
            # / B = 64, H = 512, the plain one and torch.add 10.8 / 65.6 ms.
            result = op(h, packed, None, "none", [], "")
            if other is None:
                return result if out is None else out.copy_(result)
            return result.add_(other) if out is None else torch.add(other, result, out=out)

        product.adds_in_place = False
        return product
    weight_t = weight.t()

    def product(h: Tensor, other: Tensor | None = None, out: Tensor | None = None) -> Tensor:
        if other is None:
            return torch.mm(h, weight_t, out=out)
        if out is None or out is other:
            return other.addmm_(h, weight_t)
        return torch.addmm(other, h, weight_t, out=out)

    product.adds_in_place = True
    return product


def apply_in_float32(function, *args):
    """``function.apply(*args)`` (or ``function(*args)`` for a plain function), under autocast
    with autocast off and float32 inputs.

    Mixed precision: the input projection before the recurrence runs in the autocast dtype
    (most of the FLOPs, one matmul), but the recurrent state, its T-step chain and the gradient
    accumulation over T steps stay in float32, where bfloat16's 8-bit mantissa would drift.
    Outputs are float32; autograd casts the input gradients back to the inputs' dtypes.
    """
    call = function.apply if isinstance(function, type) else function
    device_type = next(a.device.type for a in args if isinstance(a, Tensor))
    if not torch.is_autocast_enabled(device_type):
        return call(*args)
    half = (torch.float16, torch.bfloat16)
    args = tuple(a.float() if isinstance(a, Tensor) and a.dtype in half else a for a in args)
    with torch.autocast(device_type, enabled=False):
        return call(*args)


def keep_field(keep: Sequence[Tensor | None] | None, x: Tensor, size: int) -> Tensor | None:
    """The one state field's keep tensor as (T, B, size) in ``x``'s dtype, or ``None``."""
    if keep is None:
        return None
    if len(keep) != 1:
        raise ValueError(
            f"keep must have one entry per state field (1: h), got {len(keep)} entries"
        )
    (keep_h,) = keep
    if keep_h is None:
        return None
    T, B = x.shape[:2]
    return keep_h.to(x.dtype).expand(T, B, size)
