r"""The fused GRU backend: the input projection in one matmul, the recurrence in one Function.

:func:`gru_scan` computes exactly :func:`rnnkit.backends.reference.scan` over a
:class:`rnnkit.cells.GRUCell` (both ``reset_after`` formulations, with and without bias, with the
``keep`` mixing rule of variable lengths and zoneout)::

    gi   = x W_ih^T + b_ih                                  one matmul over all T steps (autograd)
    r_t  = σ(gi_r + W_hr h_{t-1} + b_hr)
    z_t  = σ(gi_z + W_hz h_{t-1} + b_hz)
    n_t  = tanh(gi_n + r_t ⊙ (W_hn h_{t-1} + b_hn))       reset_after=True
    n_t  = tanh(gi_n + W_hn (r_t ⊙ h_{t-1}) + b_hn)        reset_after=False
    h_t  = k_t ⊙ h_{t-1} + (1 - k_t) ⊙ [(1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}]
         = n_t + z'_t ⊙ (h_{t-1} - n_t),   z'_t = k_t + (1 - k_t) ⊙ z_t      (k_t = 0 without keep)

The recurrence runs inside one :class:`torch.autograd.Function` that writes into preallocated
buffers and has a hand-written backward through time: whatever does not depend on the recurrence
(gate derivatives, products of saved activations) is computed for all steps at once, each
backward step is three (``reset_after=True``) or six (``reset_after=False``) tensor operations,
and the recurrent weight and bias gradients are one matmul / sum over all steps after the loop.
At small sizes the per-operation overhead of the interpreter dominates, hence the operation count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnnkit.backends import cpu_kernels
from rnnkit.backends.kernel_parts import (
    apply_in_float32,
    input_projection,
    keep_field,
    needs_backward,
    sigmoid_backward,
    step_matmul,
    tanh_backward,
)
from rnnkit.cells.base import HiddenState


def gru_scan(
    cell,
    weights: Mapping[str, Tensor],
    x: Tensor,
    state: HiddenState,
    keep: Sequence[Tensor | None] | None = None,
):
    """Run a :class:`~rnnkit.cells.GRUCell` over a time-major sequence, fused.

    Same contract and result (values and gradients) as :func:`rnnkit.backends.reference.scan`.

    Args:
        cell: a ``GRUCell`` (its options ``reset_after``, ``bias`` and sizes are read).
        weights: ``weight_ih`` (3H, I), ``weight_hh`` (3H, H), and with bias ``bias_ih``,
            ``bias_hh`` (3H).
        x: (T, B, I) inputs.
        state: ``HiddenState(h=(B, H))`` initial state.
        keep: ``None`` or ``(keep_h,)`` with ``keep_h`` ``None`` or (T, B, H) in [0, 1]
            (or broadcastable to it, e.g. a (T, B, 1) length mask).

    Returns:
        ``(h, HiddenState(h_T))``: h (T, B, H) the mixed ``h_t`` of every step.

    Example::

        >>> from rnnkit.cells import GRUCell
        >>> cell = GRUCell(8, 16, reset_after=False)
        >>> x = torch.randn(20, 4, 8)
        >>> h, last = gru_scan(cell, cell.weights(), x, cell.initial_state(4))
        >>> h.shape, last.h.shape
        (torch.Size([20, 4, 16]), torch.Size([4, 16]))
    """
    bias = cell.bias
    unmixed = (keep is None or keep[0] is None) and x.shape[0] > 0
    inference = not needs_backward(x, state.h, *weights.values())
    compiled = inference and cpu_kernels.serves(x, state.h, *weights.values())
    if unmixed and cell.reset_after and inference and not compiled:
        # Inference in torch's own formulation: torch's kernel (oneDNN, cuDNN). Where the
        # compiled recurrence serves (the CPU) it is faster: 0.83 / 0.85 / 0.86 of torch's LSTM
        # at B/I/H = 32/64/64, 32/256/256, 64/512/512, where torch's GRU took 1.90 / 1.25 / 1.06
        # (T = 100, two threads, AMD EPYC with AVX-512).
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")[: 4 if bias else 2]
        hx = state.h.unsqueeze(0).contiguous()
        args = (x, hx, [weights[n] for n in names], bias, 1, 0.0, False, False, False)
        h, h_T = apply_in_float32(torch.gru, *args)
        return h, HiddenState(h_T[0])
    T, B, I = x.shape
    b_ih = weights["bias_ih"] if bias else None
    gi = input_projection(x.reshape(T * B, I), weights["weight_ih"], b_ih).view(
        T, B, 3 * cell.hidden_size
    )
    keep_h = keep_field(keep, x, cell.hidden_size)
    args = (gi, weights["weight_hh"], weights["bias_hh"] if bias else None, state.h, keep_h)
    if inference:  # nothing saved; the compiled recurrence on the CPU where it serves
        function = partial(_forward_only, reset_after=cell.reset_after)
    else:
        function = GRUResetAfterScan if cell.reset_after else GRUResetBeforeScan
    hs = apply_in_float32(function, *args)
    return hs[1:], HiddenState(hs[-1])


class GRUResetAfterScan(torch.autograd.Function):
    """Whole-sequence GRU recurrence, torch's formulation (reset applied after ``W_hn h``).

    ``apply(gi, w_hh, b_hh, h0, keep) -> hs``: gi (T, B, 3H) the input projection including
    ``b_ih``; w_hh (3H, H); b_hh (3H) or None; h0 (B, H); keep (T, B, H) or None.
    hs (T+1, B, H) stacks h0 and every h_t.
    """

    @staticmethod
    def forward(ctx, gi, w_hh, b_hh, h0, keep):
        T, B, G = gi.shape
        H = G // 3
        hs = gi.new_empty(T + 1, B, H)
        hs[0] = h0
        # gates[t] = [r, z, W_hn h_{t-1} + b_hn]: one addmm onto [gi_r + b_hr, gi_z + b_hz, b_hn]
        # gives both gate pre-activations and the reset-gated term.
        gates = gi.new_empty(T, B, G)
        if b_hh is None:
            gates[..., : 2 * H] = gi[..., : 2 * H]
            gates[..., 2 * H :] = 0
        else:
            torch.add(gi[..., : 2 * H], b_hh[: 2 * H], out=gates[..., : 2 * H])
            gates[..., 2 * H :] = b_hh[2 * H :]
        n = gi.new_empty(T, B, H)
        mix, keep_c = _mixing_weights(gates[..., H : 2 * H], keep)
        recurrent = step_matmul(w_hh, B, T)
        steps_h = hs.unbind(0)
        for g, rz, r, z, gh_n, gi_n, n_t, w, k, kc, h, h_next in zip(
            gates.unbind(0),
            gates[..., : 2 * H].unbind(0),
            gates[..., :H].unbind(0),
            gates[..., H : 2 * H].unbind(0),
            gates[..., 2 * H :].unbind(0),
            gi[..., 2 * H :].unbind(0),
            n.unbind(0),
            mix.unbind(0),
            *_keep_lists(keep, keep_c, T),
            steps_h,
            steps_h[1:],
        ):
            recurrent(h, g, out=g)
            rz.sigmoid_()
            torch.addcmul(gi_n, r, gh_n, out=n_t).tanh_()
            if k is not None:  # z' = k + (1 - k) z
                torch.addcmul(k, z, kc, out=w)
            torch.lerp(n_t, h, w, out=h_next)  # n + z' (h - n)
        ctx.save_for_backward(w_hh, hs, gates, n, mix, keep, keep_c)
        ctx.has_bias = b_hh is not None
        return hs

    @staticmethod
    @once_differentiable
    def backward(ctx, dhs):
        w_hh, hs, gates, n, mix, keep, keep_c = ctx.saved_tensors
        T, B, G = gates.shape
        H = G // 3
        h_prev = hs[:-1]
        r, z, gh_n = gates[..., :H], gates[..., H : 2 * H], gates[..., 2 * H :]
        # Everything that does not depend on the recurrence, for all steps at once:
        # dG_t = dh_t ⊙ M_t with M = [∂/∂a_r, ∂/∂a_z, ∂/∂(W_hn h + b_hn)] per unit of dh_t.
        dn_da = tanh_backward(1 - mix, n)  # ∂h_t/∂(n pre-activation) = (1 - z') (1 - n²)
        diff = h_prev - n
        m = gates.new_empty(T, B, 3, H)
        sigmoid_backward(dn_da * gh_n, r, grad_input=m[:, :, 0])
        sigmoid_backward(diff if keep is None else diff * keep_c, z, grad_input=m[:, :, 1])
        torch.mul(dn_da, r, out=m[:, :, 2])
        dgates = gates.new_empty(T, B, 3, H)
        dh = gates.new_empty(T + 1, B, H)  # dh[t]: total gradient of hs[t]
        dh[T] = dhs[T]
        steps_dh = dh.unbind(0)
        recurrent_back = step_matmul(w_hh.t(), B, T)  # dL/dG_t W_hh
        for m_t, dg, dg_flat, w, dh_up, dh_t, dh_tu, dh_prev in zip(
            reversed(m.unbind(0)),
            reversed(dgates.unbind(0)),
            reversed(dgates.view(T, B, G).unbind(0)),
            reversed(mix.unbind(0)),
            reversed(dhs[:-1].unbind(0)),
            reversed(steps_dh[1:]),
            reversed(dh[1:].unsqueeze(2).unbind(0)),
            reversed(steps_dh[:-1]),
        ):
            torch.mul(dh_tu, m_t, out=dg)
            torch.addcmul(dh_up, w, dh_t, out=dh_prev)
            recurrent_back(dg_flat, dh_prev, out=dh_prev)
        need = ctx.needs_input_grad
        dgates_flat = dgates.view(T * B, G)
        dw_hh = dgates_flat.t() @ h_prev.reshape(T * B, H) if need[1] else None
        db_hh = dgates_flat.sum(0) if ctx.has_bias and need[2] else None
        dkeep = None
        if keep is not None and need[4]:
            dkeep = dh[1:] * diff * (1 - z)
        # The input-projection gradient is dgates with the n block replaced by ∂/∂gi_n.
        torch.mul(dh[1:], dn_da, out=dgates[:, :, 2])
        dgi = dgates.view(T, B, G) if need[0] else None
        return dgi, dw_hh, db_hh, dh[0] if need[3] else None, dkeep


class GRUResetBeforeScan(torch.autograd.Function):
    """Whole-sequence GRU recurrence, Cho et al.'s formulation (reset before ``W_hn``).

    ``apply(gi, w_hh, b_hh, h0, keep) -> hs``: same arguments as :class:`GRUResetAfterScan`.
    """

    @staticmethod
    def forward(ctx, gi, w_hh, b_hh, h0, keep):
        T, B, G = gi.shape
        H = G // 3
        hs = gi.new_empty(T + 1, B, H)
        hs[0] = h0
        if b_hh is None:
            rz = gi[..., : 2 * H].contiguous()
            n = gi[..., 2 * H :].contiguous()
        else:
            rz = gi[..., : 2 * H] + b_hh[: 2 * H]  # (T, B, 2H): pre-activations, then r, z
            n = gi[..., 2 * H :] + b_hh[2 * H :]  # (T, B, H): pre-activation, then n
        rh = gi.new_empty(T, B, H)  # r_t ⊙ h_{t-1}
        mix, keep_c = _mixing_weights(rz[..., H:], keep)
        recurrent_rz = step_matmul(w_hh[: 2 * H], B, T)
        recurrent_n = step_matmul(w_hh[2 * H :], B, T)
        steps_h = hs.unbind(0)
        for rz_t, r, z, n_t, rh_t, w, k, kc, h, h_next in zip(
            rz.unbind(0),
            rz[..., :H].unbind(0),
            rz[..., H:].unbind(0),
            n.unbind(0),
            rh.unbind(0),
            mix.unbind(0),
            *_keep_lists(keep, keep_c, T),
            steps_h,
            steps_h[1:],
        ):
            recurrent_rz(h, rz_t, out=rz_t).sigmoid_()
            torch.mul(r, h, out=rh_t)
            recurrent_n(rh_t, n_t, out=n_t).tanh_()
            if k is not None:  # z' = k + (1 - k) z
                torch.addcmul(k, z, kc, out=w)
            torch.lerp(n_t, h, w, out=h_next)  # n + z' (h - n)
        ctx.save_for_backward(w_hh, hs, rz, n, rh, mix, keep, keep_c)
        ctx.has_bias = b_hh is not None
        return hs

    @staticmethod
    @once_differentiable
    def backward(ctx, dhs):
        w_hh, hs, rz, n, rh, mix, keep, keep_c = ctx.saved_tensors
        T, B, H2 = rz.shape
        H = H2 // 2
        G = 3 * H
        h_prev = hs[:-1]
        r, z = rz[..., :H], rz[..., H:]
        w_rz, w_n = w_hh[: 2 * H], w_hh[2 * H :]
        # Recurrence-free factors for all steps: [∂/∂a_z, ∂/∂a_n] per unit of dh_t, and
        # ∂/∂a_r per unit of ∂/∂(r ⊙ h_{t-1}).
        diff = h_prev - n
        m = rz.new_empty(T, B, 2, H)
        sigmoid_backward(diff if keep is None else diff * keep_c, z, grad_input=m[:, :, 0])
        tanh_backward(1 - mix, n, grad_input=m[:, :, 1])
        dr_da = sigmoid_backward(h_prev, r)
        dgates = rz.new_empty(T, B, 3, H)
        dgates_flat = dgates.view(T, B, G)
        drh = rz.new_empty(B, H)
        dh = rz.new_empty(T + 1, B, H)  # dh[t]: total gradient of hs[t]
        dh[T] = dhs[T]
        steps_dh = dh.unbind(0)
        back_n = step_matmul(w_n.t(), B, T)  # dL/da_n W_hn
        back_rz = step_matmul(w_rz.t(), B, T)  # dL/da_rz W_hrz
        for m_t, dg_zn, dg_r, dg_n, dg_rz, dr_t, r_t, w, dh_up, dh_tu, dh_t, dh_prev in zip(
            reversed(m.unbind(0)),
            reversed(dgates[:, :, 1:].unbind(0)),
            reversed(dgates[:, :, 0].unbind(0)),
            reversed(dgates_flat[..., 2 * H :].unbind(0)),
            reversed(dgates_flat[..., : 2 * H].unbind(0)),
            reversed(dr_da.unbind(0)),
            reversed(r.unbind(0)),
            reversed(mix.unbind(0)),
            reversed(dhs[:-1].unbind(0)),
            reversed(dh[1:].unsqueeze(2).unbind(0)),
            reversed(steps_dh[1:]),
            reversed(steps_dh[:-1]),
        ):
            torch.mul(dh_tu, m_t, out=dg_zn)  # [∂a_z, ∂a_n]
            back_n(dg_n, out=drh)  # ∂(r ⊙ h_{t-1})
            torch.mul(drh, dr_t, out=dg_r)  # ∂a_r
            torch.addcmul(dh_up, w, dh_t, out=dh_prev)
            dh_prev.addcmul_(drh, r_t)
            back_rz(dg_rz, dh_prev, out=dh_prev)
        need = ctx.needs_input_grad
        flat = dgates.view(T * B, G)
        dw_hh = None
        if need[1]:
            dw_hh = torch.cat(
                [
                    flat[:, : 2 * H].t() @ h_prev.reshape(T * B, H),
                    flat[:, 2 * H :].t() @ rh.view(T * B, H),
                ]
            )
        db_hh = flat.sum(0) if ctx.has_bias and need[2] else None
        dkeep = dh[1:] * diff * (1 - z) if keep is not None and need[4] else None
        dgi = dgates_flat if need[0] else None
        return dgi, dw_hh, db_hh, dh[0] if need[3] else None, dkeep


def _forward_only(gi, w_hh, b_hh, h0, keep, reset_after):
    """The forward of :class:`GRUResetAfterScan` / :class:`GRUResetBeforeScan` when nothing
    needs a backward pass: the compiled recurrence where it serves
    (:func:`rnnkit.backends.cpu_kernels.gru_forward_only`), else the Function's own forward
    (which, with autograd recording nothing, saves nothing either)."""
    args = (gi, w_hh, b_hh, h0, keep)
    if cpu_kernels.serves(*args):
        return cpu_kernels.gru_forward_only(*args, reset_after=reset_after)
    return (GRUResetAfterScan if reset_after else GRUResetBeforeScan).apply(*args)


def _mixing_weights(z: Tensor, keep: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Buffer for ``z' = k + (1 - k) z`` (or ``z`` itself without keep) and ``1 - k``."""
    if keep is None:
        return z, None
    return torch.empty_like(z, memory_format=torch.contiguous_format), 1 - keep


def _keep_lists(keep: Tensor | None, keep_c: Tensor | None, T: int):
    """Per-step views of ``keep`` and ``1 - keep`` (``None`` each step without keep)."""
    if keep is None:
        return [None] * T, [None] * T
    return keep.unbind(0), keep_c.unbind(0)
