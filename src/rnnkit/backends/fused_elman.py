r"""The fused Elman backend: the input projection in one matmul, the recurrence in one Function.

:func:`elman_scan` computes exactly :func:`rnnkit.backends.reference.scan` over an
:class:`rnnkit.cells.ElmanCell` (every nonlinearity, with and without bias, with the ``keep``
mixing rule of variable lengths and zoneout)::

    gi  = x W_ih^T + b_ih                                   one matmul over all T steps (autograd)
    h̃_t = φ(gi_t + W_hh h_{t-1} + b_hh)
    h_t = k_t ⊙ h_{t-1} + (1 - k_t) ⊙ h̃_t                  (h_t = h̃_t without keep)

The recurrence runs inside one :class:`torch.autograd.Function` with a hand-written backward
through time. φ' is computed from the activation value h̃ for all steps at once (tanh: 1 - h̃²,
sigmoid: h̃ (1 - h̃), relu: [h̃ > 0], leaky_relu: 1 or 0.01, elu: 1 or h̃ + 1), so a backward step
is two tensor operations (three with keep), a forward step two (three with keep), and the
recurrent weight and bias gradients are one matmul / sum over all steps after the loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnnkit.backends.kernel_parts import (
    apply_in_float32,
    input_projection,
    keep_field,
    sigmoid_backward,
    step_matmul,
    tanh_backward,
)
from rnnkit.cells.base import HiddenState

# In-place activations; each matches rnnkit.cells.elman.NONLINEARITIES value for value.
ACTIVATIONS_INPLACE: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh_,
    "relu": torch.relu_,
    "leaky_relu": F.leaky_relu_,  # negative slope 0.01
    "elu": F.elu_,  # alpha 1
    "sigmoid": torch.sigmoid_,
}


def activation_derivative(nonlinearity: str, y: Tensor, scale: Tensor | None = None) -> Tensor:
    """``scale ⊙ φ'(a)`` elementwise, from the activation value ``y = φ(a)``, as autograd has it.

    ``scale`` (same shape as ``y``) defaults to ones.
    """
    if nonlinearity == "tanh":
        return 1 - y * y if scale is None else tanh_backward(scale, y)
    if nonlinearity == "sigmoid":
        return y * (1 - y) if scale is None else sigmoid_backward(scale, y)
    if nonlinearity == "relu":
        d = (y > 0).to(y.dtype)
    elif nonlinearity == "leaky_relu":
        d = torch.where(y > 0, y.new_ones(()), y.new_full((), 0.01))
    elif nonlinearity == "elu":  # a <= 0: y = exp(a) - 1, φ'(a) = exp(a) = y + 1
        d = torch.where(y > 0, 1.0, y + 1)
    else:
        raise ValueError(
            f"nonlinearity must be one of {', '.join(ACTIVATIONS_INPLACE)}; got {nonlinearity!r}"
        )
    return d if scale is None else d.mul_(scale)


def elman_scan(
    cell,
    weights: Mapping[str, Tensor],
    x: Tensor,
    state: HiddenState,
    keep: Sequence[Tensor | None] | None = None,
):
    """Run an :class:`~rnnkit.cells.ElmanCell` over a time-major sequence, fused.

    Same contract and result (values and gradients) as :func:`rnnkit.backends.reference.scan`.

    Args:
        cell: an ``ElmanCell`` (its ``nonlinearity``, ``bias`` and sizes are read).
        weights: ``weight_ih`` (H, I), ``weight_hh`` (H, H), and with bias ``bias_ih``,
            ``bias_hh`` (H).
        x: (T, B, I) inputs.
        state: ``HiddenState(h=(B, H))`` initial state.
        keep: ``None`` or ``(keep_h,)`` with ``keep_h`` ``None`` or (T, B, H) in [0, 1]
            (or broadcastable to it, e.g. a (T, B, 1) length mask).

    Returns:
        ``(h, HiddenState(h_T))``: h (T, B, H) the mixed ``h_t`` of every step.

    Example::

        >>> from rnnkit.cells import ElmanCell
        >>> cell = ElmanCell(8, 16, nonlinearity="relu")
        >>> x = torch.randn(20, 4, 8)
        >>> h, last = elman_scan(cell, cell.weights(), x, cell.initial_state(4))
        >>> h.shape, last.h.shape
        (torch.Size([20, 4, 16]), torch.Size([4, 16]))
    """
    bias = cell.bias
    T, B, I = x.shape
    b_ih = weights["bias_ih"] if bias else None
    gi = input_projection(x.reshape(T * B, I), weights["weight_ih"], b_ih).view(
        T, B, cell.hidden_size
    )
    keep_h = keep_field(keep, x, cell.hidden_size)
    hs = apply_in_float32(
        ElmanScan,
        gi,
        weights["weight_hh"],
        weights["bias_hh"] if bias else None,
        state.h,
        keep_h,
        cell.nonlinearity,
    )
    return hs[1:], HiddenState(hs[-1])


class ElmanScan(torch.autograd.Function):
    """Whole-sequence Elman recurrence.

    ``apply(gi, w_hh, b_hh, h0, keep, nonlinearity) -> hs``: gi (T, B, H) the input projection
    including ``b_ih``; w_hh (H, H); b_hh (H) or None; h0 (B, H); keep (T, B, H) or None;
    nonlinearity a key of :data:`ACTIVATIONS_INPLACE`. hs (T+1, B, H) stacks h0 and every h_t.
    """

    @staticmethod
    def forward(ctx, gi, w_hh, b_hh, h0, keep, nonlinearity):
        T, B, H = gi.shape
        activation = ACTIVATIONS_INPLACE[nonlinearity]
        hs = gi.new_empty(T + 1, B, H)
        hs[0] = h0
        recurrent = step_matmul(w_hh, B, T)
        pre = gi if b_hh is None else gi + b_hh
        steps_h = hs.unbind(0)
        if keep is None:
            for p, h, h_next in zip(pre.unbind(0), steps_h, steps_h[1:]):
                activation(recurrent(h, p, out=h_next))
            act = hs[1:]
        else:
            act = pre.clone() if pre is gi else pre  # becomes h̃_t
            for a, k, h, h_next in zip(act.unbind(0), keep.unbind(0), steps_h, steps_h[1:]):
                activation(recurrent(h, a, out=a))
                torch.lerp(a, h, k, out=h_next)  # k h + (1 - k) h̃
        ctx.save_for_backward(w_hh, hs, act, keep)
        ctx.nonlinearity = nonlinearity
        ctx.has_bias = b_hh is not None
        return hs

    @staticmethod
    @once_differentiable
    def backward(ctx, dhs):
        w_hh, hs, act, keep = ctx.saved_tensors
        T, B, H = act.shape
        # ∂h_t/∂(pre-activation) for all steps at once, from the activation value h̃.
        dact = activation_derivative(ctx.nonlinearity, act, None if keep is None else 1 - keep)
        dpre = torch.empty_like(act, memory_format=torch.contiguous_format)
        dh = act.new_empty(T + 1, B, H)  # dh[t]: total gradient of hs[t]
        dh[T] = dhs[T]
        steps_dh = dh.unbind(0)
        recurrent_back = step_matmul(w_hh.t(), B, T)  # dL/da_t W_hh
        steps = zip(
            reversed(dpre.unbind(0)),
            reversed(dact.unbind(0)),
            reversed(dhs[:-1].unbind(0)),
            reversed(steps_dh[1:]),
            reversed(steps_dh[:-1]),
        )
        if keep is None:
            for dp, d, dh_up, dh_t, dh_prev in steps:
                recurrent_back(torch.mul(dh_t, d, out=dp), dh_up, out=dh_prev)
        else:
            for (dp, d, dh_up, dh_t, dh_prev), k in zip(steps, reversed(keep.unbind(0))):
                torch.addcmul(dh_up, k, dh_t, out=dh_prev)
                recurrent_back(torch.mul(dh_t, d, out=dp), dh_prev, out=dh_prev)
        need = ctx.needs_input_grad
        flat = dpre.view(T * B, H)
        dw_hh = flat.t() @ hs[:-1].reshape(T * B, H) if need[1] else None
        db_hh = flat.sum(0) if ctx.has_bias and need[2] else None
        dkeep = dh[1:] * (hs[:-1] - act) if keep is not None and need[4] else None
        return dpre if need[0] else None, dw_hh, db_hh, dh[0] if need[3] else None, dkeep, None
