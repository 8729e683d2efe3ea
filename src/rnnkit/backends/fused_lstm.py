r"""Whole-sequence LSTM with a hand-written BPTT backward: the ``fused`` backend's LSTM scan.

:func:`lstm_scan` computes exactly :func:`rnnkit.backends.reference.scan` for an
:class:`~rnnkit.cells.LSTMCell` with any options (peephole, coupled, layer_norm, proj_size,
forget_bias, bias), in two parts:

1. The input side for all T steps at once, with ordinary autograd ops over T·B rows::

       X_t = LN_ih(W_ih x_t) + b_ih + b_hh + forget_bias·[f block]     (LN_ih with layer_norm)

2. The recurrence in one :class:`torch.autograd.Function` (``_LSTMRecurrence``) whose backward
   is BPTT written by hand: no per-step autograd graph, every per-step result written in place
   into buffers allocated once, everything that does not depend on the recurrence (gate
   derivative factors, weight gradients) computed in bulk over all T steps. One step::

       a_t  = X_t + LN_hh(W_hh h_{t-1})                       (plain W_hh h_{t-1} without LN)
       i, f = σ(a_i + w_ci ⊙ c_{t-1}), σ(a_f + w_cf ⊙ c_{t-1})    (coupled: i = 1 - f)
       g    = tanh(a_g)
       c̃_t  = f ⊙ c_{t-1} + i ⊙ g
       o    = σ(a_o + w_co ⊙ c̃_t)
       h̃_t  = W_hr (o ⊙ tanh(LN_c(c̃_t)))                     (W_hr with proj_size, LN_c with LN)
       h_t  = keep_h ⊙ h_{t-1} + (1 - keep_h) ⊙ h̃_t,   c_t = keep_c ⊙ c_{t-1} + (1 - keep_c) ⊙ c̃_t

Internally the gate blocks are reordered from torch's (i, f, g, o) to (o, i, f, g) — coupled:
(f, g, o) to (o, f, g) — by permuting weight rows once per call, so one ``sigmoid_`` covers
the sigmoid gates and one ``tanh_`` the candidate, and in the backward one multiplication writes
the i, f, g pre-activation gradients and the carried ``dL/dc_{t-1}`` side by side.

Shapes: T steps, B batch, I ``input_size``, H ``hidden_size``, P ``proj_size`` or H,
G = 4H (3H when coupled).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnnkit.cells.base import LSTMState
from rnnkit.cells.lstm import LAYER_NORM_EPS, LSTMCell

_layer_norm_backward = torch.ops.aten.native_layer_norm_backward.default
_sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input  # out = grad * y * (1 - y)
_tanh_backward = torch.ops.aten.tanh_backward.grad_input  # out = grad * (1 - y²)
_INPUT_GRAD_ONLY = [True, False, False]


def lstm_scan(
    cell: LSTMCell,
    weights: Mapping[str, Tensor],
    x: Tensor,
    state: LSTMState,
    keep: Sequence[Tensor | None] | None = None,
) -> tuple[Tensor, LSTMState]:
    """Run an LSTM cell over a time-major sequence; same contract and result as ``reference.scan``.

    Args:
        cell: the :class:`~rnnkit.cells.LSTMCell` whose options define the math.
        weights: its parameters by name (``cell.parameter_shapes()`` keys).
        x: (T, B, I) inputs.
        state: ``LSTMState(h (B, P), c (B, H))`` before the first step.
        keep: ``None`` or ``(keep_h (T, B, P) | None, keep_c (T, B, H) | None)`` with values in
            [0, 1]: after each step ``s_t = keep ⊙ s_{t-1} + (1 - keep) ⊙ s̃_t`` (lengths, zoneout).
            Receives no gradient.

    Returns:
        ``(h, LSTMState(h_T, c_T))``: h (T, B, P) the mixed ``h_t`` of every step. With T = 0,
        an empty h and ``state`` itself.

    Example::

        >>> cell = LSTMCell(8, 16, peephole=True, layer_norm=True)
        >>> x = torch.randn(5, 3, 8)
        >>> h, (h_T, c_T) = lstm_scan(cell, cell.weights(), x, cell.initial_state(3))
        >>> h.shape, c_T.shape
        (torch.Size([5, 3, 16]), torch.Size([3, 16]))
    """
    T, B, keep_h, keep_c = _check_inputs(cell, x, state, keep)
    H, P, k = cell.hidden_size, cell.output_size, cell.gate_count
    if T == 0:
        return x.new_zeros(0, B, P), state
    G = k * H
    order = _internal_order(k, H, x.device)
    w = weights

    # Input side for all steps in bulk (ordinary autograd ops over T*B rows).
    x_rows = x.reshape(T * B, x.shape[2])
    w_ih = w["weight_ih"].index_select(0, order)
    bias = None
    if cell.bias:
        bias = (w["bias_ih"] + w["bias_hh"]).index_select(0, order)
    if cell.forget_bias:
        if bias is None:
            bias = x.new_zeros(G)
        f = 1 if cell.coupled else 2  # the forget block in (o, f, g) / (o, i, f, g)
        bias[f * H : (f + 1) * H] += cell.forget_bias
    if cell.layer_norm:
        xi = (x_rows @ w_ih.t()).view(T * B, k, H)
        xi = F.layer_norm(xi, (H,), eps=LAYER_NORM_EPS).view(T * B, G)
        xi = xi * w["layer_norm_ih_weight"].index_select(0, order)
        if bias is not None:
            xi = xi + bias
    elif bias is not None:
        xi = torch.addmm(bias, x_rows, w_ih.t())
    else:
        xi = x_rows @ w_ih.t()

    g_hh = None
    if cell.layer_norm:
        g_hh = w["layer_norm_hh_weight"].index_select(0, order)
    h, c_last = _LSTMRecurrence.apply(
        cell.coupled,
        xi.view(T, B, G),
        w["weight_hh"].index_select(0, order),
        state.h,
        state.c,
        w["weight_hr"] if cell.proj_size else None,
        w["weight_ci"] if cell.peephole and not cell.coupled else None,
        w["weight_cf"] if cell.peephole else None,
        w["weight_co"] if cell.peephole else None,
        g_hh,
        w["layer_norm_c_weight"] if cell.layer_norm else None,
        w["layer_norm_c_bias"] if cell.layer_norm else None,
        keep_h,
        keep_c,
    )
    return h, LSTMState(h[-1], c_last)


class _LSTMRecurrence(torch.autograd.Function):
    """The recurrence over precomputed input pre-activations, with hand-written BPTT.

    Inputs (internal gate order (o, i, f, g) / coupled (o, f, g); optional ones may be None):
    ``coupled``; ``xi`` (T, B, G); ``w_hh`` (G, P); ``h0`` (B, P); ``c0`` (B, H);
    ``w_hr`` (P, H); peepholes ``w_ci``, ``w_cf``, ``w_co`` (H); recurrent layer-norm gain
    ``g_hh`` (G); cell layer norm ``g_c``, ``b_c`` (H); ``keep_h`` (T, B, P), ``keep_c`` (T, B, H).
    Outputs: ``h`` (T, B, P) and ``c_T`` (B, H).
    """

    @staticmethod
    def forward(ctx, coupled, xi, w_hh, h0, c0, w_hr, w_ci, w_cf, w_co, g_hh, g_c, b_c, keep_h,
                keep_c):  # fmt: skip
        T, B, G = xi.shape
        H, P = c0.shape[1], h0.shape[1]
        k = G // H
        peephole = w_co is not None
        eps = LAYER_NORM_EPS
        new = xi.new_empty

        # Buffers. gates holds the activations o, i, f, g (coupled: o, f, g).
        gates = new(T, B, G)
        h_all = new(T, B, P)
        c_all = new(T, B, H)  # carried c_t (mixed with keep_c)
        c_new = c_all if keep_c is None else new(T, B, H)  # the cell's c̃_t
        tanh_c = new(T, B, H)
        raw_hh = new(T, B, G) if g_hh is not None else None  # W_hh h_{t-1} before its LN
        h_tmp = new(B, P) if keep_h is not None else None
        m_tmp = new(B, H) if w_hr is not None else None
        cg_tmp = new(B, H) if coupled else None

        # Per-step views, made once.
        xi_t, a_t, h_t, c_t, cn_t, tc_t = (
            v.unbind(0) for v in (xi, gates, h_all, c_all, c_new, tanh_c)
        )
        h_prev = (h0, *h_t[:-1])
        c_prev = (c0, *c_all.unbind(0)[:-1])
        s = (k - 1) * H  # sigmoid blocks end, candidate block starts
        o_t = gates[..., :H].unbind(0)
        g_t = gates[..., s:].unbind(0)
        f_t = gates[..., s - H : s].unbind(0)
        i_t = None if coupled else gates[..., H : 2 * H].unbind(0)
        sig_t = gates[..., H if peephole else 0 : s].unbind(0)
        if peephole and not coupled:
            pre_if_t = gates[..., H:s].view(T, B, 2, H).unbind(0)
            c_prev_3d = (c0.view(B, 1, H), *c_all.view(T, B, 1, H).unbind(0)[:-1])
            w_if = torch.stack((w_ci, w_cf))
        w_hh_t = w_hh.t()
        w_hr_t = w_hr.t() if w_hr is not None else None
        raw_t = raw_hh.unbind(0) if raw_hh is not None else None
        kh_t = keep_h.unbind(0) if keep_h is not None else None
        kc_t = keep_c.unbind(0) if keep_c is not None else None
        stats_hh, stats_c = [], []

        for t in range(T):
            hp, cp, a, cn = h_prev[t], c_prev[t], a_t[t], cn_t[t]
            if g_hh is None:
                torch.addmm(xi_t[t], hp, w_hh_t, out=a)
            else:
                r = torch.mm(hp, w_hh_t, out=raw_t[t])
                normed, mean, rstd = torch.native_layer_norm(r.view(B, k, H), (H,), None, None, eps)
                torch.addcmul(xi_t[t], normed.view(B, G), g_hh, out=a)
                stats_hh.append((mean, rstd))
            if peephole:
                if coupled:
                    f_t[t].addcmul_(cp, w_cf)
                else:
                    pre_if_t[t].addcmul_(c_prev_3d[t], w_if)
            sig_t[t].sigmoid_()
            g_t[t].tanh_()
            if coupled:  # c̃ = g + f (c_{t-1} - g)
                torch.sub(cp, g_t[t], out=cg_tmp)
                torch.addcmul(g_t[t], f_t[t], cg_tmp, out=cn)
            else:
                torch.mul(f_t[t], cp, out=cn)
                cn.addcmul_(i_t[t], g_t[t])
            if peephole:
                o_t[t].addcmul_(cn, w_co).sigmoid_()
            if g_c is None:
                torch.tanh(cn, out=tc_t[t])
            else:
                normed, mean, rstd = torch.native_layer_norm(cn, (H,), g_c, b_c, eps)
                torch.tanh(normed, out=tc_t[t])
                stats_c.append((mean, rstd))
            ht = h_t[t] if keep_h is None else h_tmp
            if w_hr is None:
                torch.mul(o_t[t], tc_t[t], out=ht)
            else:
                torch.mul(o_t[t], tc_t[t], out=m_tmp)
                torch.mm(m_tmp, w_hr_t, out=ht)
            if keep_h is not None:
                torch.lerp(ht, hp, kh_t[t], out=h_t[t])
            if keep_c is not None:
                torch.lerp(cn, cp, kc_t[t], out=c_t[t])

        def stack(stats):  # [(mean, rstd)] per step -> (T, …) mean, rstd
            if not stats:
                return None, None
            return torch.stack([m for m, _ in stats]), torch.stack([r for _, r in stats])

        ctx.coupled = coupled
        ctx.save_for_backward(
            w_hh, h0, c0, w_hr, w_ci, w_cf, w_co, g_hh, g_c, b_c, keep_h, keep_c,
            gates, h_all, c_all, c_new if keep_c is not None else None, tanh_c, raw_hh,
            *stack(stats_hh), *stack(stats_c),
        )  # fmt: skip
        ctx.set_materialize_grads(False)
        return h_all, c_all[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, d_h, d_c_last):
        (
            w_hh, h0, c0, w_hr, w_ci, w_cf, w_co, g_hh, g_c, b_c, keep_h, keep_c,
            gates, h_all, c_all, c_new, tanh_c, raw_hh, mean_hh, rstd_hh, mean_c, rstd_c,
        ) = ctx.saved_tensors  # fmt: skip
        coupled = ctx.coupled
        needs = ctx.needs_input_grad
        T, B, G = gates.shape
        H, P = c0.shape[1], h0.shape[1]
        k = G // H
        peephole = w_co is not None
        if c_new is None:
            c_new = c_all
        if d_h is None:
            d_h = h_all.new_zeros(T, B, P)
        new = gates.new_empty

        # Factors that do not depend on the recurrence, in bulk over all T steps.
        s = (k - 1) * H
        o, g, f = gates[..., :H], gates[..., s:], gates[..., s - H : s]
        c_prev = torch.cat((c0.unsqueeze(0), c_all[:-1]))
        # dL/dm -> dL/d(LN_c output or c̃) through tanh, and -> dL/da_o
        tanh_factor = _tanh_backward(o, tanh_c, grad_input=new(T, B, H))  # o (1 - tanh²)
        o_factor = _sigmoid_backward(tanh_c, o, grad_input=new(T, B, H))  # tanh o (1 - o)
        co_factor = None
        if peephole:  # dL/dc̃ gains dL/da_o w_co
            if g_c is None:
                tanh_factor.addcmul_(o_factor, w_co)
            else:
                co_factor = o_factor * w_co
        # dL/dc̃ -> [da_i, da_f, da_g, dL/dc_{t-1}] (coupled: [da_f, da_g, dL/dc_{t-1}])
        dc_factor = new(T, B, k, H)
        if coupled:
            _sigmoid_backward(c_prev - g, f, grad_input=dc_factor[:, :, 0])
            _tanh_backward(1 - f, g, grad_input=dc_factor[:, :, 1])
            dc_factor[:, :, 2] = f
            if peephole:
                dc_factor[:, :, 2].addcmul_(dc_factor[:, :, 0], w_cf)
        else:
            i = gates[..., H : 2 * H]
            _sigmoid_backward(g, i, grad_input=dc_factor[:, :, 0])
            _sigmoid_backward(c_prev, f, grad_input=dc_factor[:, :, 1])
            _tanh_backward(i, g, grad_input=dc_factor[:, :, 2])
            dc_factor[:, :, 3] = f
            if peephole:
                dc_factor[:, :, 3].addcmul_(dc_factor[:, :, 0], w_ci)
                dc_factor[:, :, 3].addcmul_(dc_factor[:, :, 1], w_cf)

        # Backward buffers: grads[t] = [da_o, da_i, da_f, da_g, dL/dc_{t-1} (own part)].
        grads = new(T, B, G + H)
        d_h_total = new(T, B, P)  # dL/dh_t, everything included
        d_h_cell = new(T, B, P) if keep_h is not None and w_hr is not None else None
        d_norm_c = new(T, B, H) if g_c is not None else None  # dL/d LN_c(c̃_t)
        d_raw_hh = [] if g_hh is not None else None
        dm_tmp = new(B, P if w_hr is None else H)
        dc_tmp = new(B, H)
        dk_tmp = new(B, H) if keep_c is not None else None

        gr_a = grads[..., :G].unbind(0)
        gr_o = grads[..., :H].unbind(0)
        gr_rest = grads[..., H:].view(T, B, k, H).unbind(0)
        gr_c = grads[..., G:].unbind(0)
        dht_t, dh_t = d_h_total.unbind(0), d_h.unbind(0)
        tf_t, of_t, df_t = (v.unbind(0) for v in (tanh_factor, o_factor, dc_factor))
        kh_t = keep_h.unbind(0) if keep_h is not None else None
        kc_t = keep_c.unbind(0) if keep_c is not None else None
        if keep_h is not None:
            not_kh_t = (1 - keep_h).unbind(0)
            dhc_t = d_h_cell.unbind(0) if d_h_cell is not None else None
        if keep_c is not None:
            not_kc_t = (1 - keep_c).unbind(0)
        if g_c is not None:
            dn_t, cn_t = d_norm_c.unbind(0), c_new.unbind(0)
            mc_t, rc_t = mean_c.unbind(0), rstd_c.unbind(0)
            cof_t = co_factor.unbind(0) if co_factor is not None else None
        if g_hh is not None:
            raw_t, mh_t, rh_t = raw_hh.unbind(0), mean_hh.unbind(0), rstd_hh.unbind(0)

        d_h_total[T - 1] = d_h[T - 1]
        dc = d_c_last  # dL/dc_t (carried); None means zero
        dh0 = None
        for t in range(T - 1, -1, -1):
            dh = dht_t[t]
            dm = dh  # dL/dh̃_t, then dL/dm_t
            if keep_h is not None:
                dm = torch.mul(dh, not_kh_t[t], out=dhc_t[t] if dhc_t is not None else dm_tmp)
            if w_hr is not None:
                dm = torch.mm(dm, w_hr, out=dm_tmp)
            dcc = dc  # dL/dc̃_t from the carried c_t
            if keep_c is not None and dc is not None:
                dcc = torch.mul(dc, not_kc_t[t], out=dk_tmp)
            if g_c is None:
                if dcc is None:
                    dcn = torch.mul(dm, tf_t[t], out=dc_tmp)
                else:
                    dcn = torch.addcmul(dcc, dm, tf_t[t], out=dc_tmp)
            else:
                dn = torch.mul(dm, tf_t[t], out=dn_t[t])
                dcn = _layer_norm_backward(
                    dn, cn_t[t], (H,), mc_t[t], rc_t[t], g_c, None, _INPUT_GRAD_ONLY
                )[0]
                if dcc is not None:
                    dcn.add_(dcc)
                if cof_t is not None:
                    dcn.addcmul_(dm, cof_t[t])
            torch.mul(dm, of_t[t], out=gr_o[t])
            torch.mul(df_t[t], dcn.unsqueeze(1), out=gr_rest[t])
            if keep_c is not None and dc is not None:
                gr_c[t].addcmul_(dc, kc_t[t])
            dc = gr_c[t]
            da = gr_a[t]
            if g_hh is not None:
                da = _layer_norm_backward(
                    (da * g_hh).view(B, k, H), raw_t[t].view(B, k, H), (H,), mh_t[t], rh_t[t],
                    None, None, _INPUT_GRAD_ONLY,
                )[0].view(B, G)  # fmt: skip
                d_raw_hh.append(da)
            if t > 0:
                torch.addmm(dh_t[t - 1], da, w_hh, out=dht_t[t - 1])
                if keep_h is not None:
                    dht_t[t - 1].addcmul_(dh, kh_t[t])
            else:
                dh0 = torch.mm(da, w_hh)
                if keep_h is not None:
                    dh0.addcmul_(dh, kh_t[0])
        dc0 = dc.clone()

        # Weight gradients in bulk.
        d_a = grads[..., :G]
        d_xi = d_a if needs[1] else None
        d_w_hh = d_w_hr = d_ci = d_cf = d_co = d_g_hh = d_g_c = d_b_c = None
        if needs[2]:
            d_rec = d_a if d_raw_hh is None else torch.stack(d_raw_hh[::-1])
            h_prev = torch.cat((h0.unsqueeze(0), h_all[:-1]))
            d_w_hh = d_rec.reshape(T * B, G).t() @ h_prev.reshape(T * B, P)
        if w_hr is not None and needs[5]:
            d_cell_h = d_h_cell if d_h_cell is not None else d_h_total
            m = o * tanh_c
            d_w_hr = d_cell_h.reshape(T * B, P).t() @ m.reshape(T * B, H)
        if peephole:
            f_block = 1 if coupled else 2
            if needs[7]:
                d_cf = _sum_tb(grads[..., f_block * H : (f_block + 1) * H] * c_prev)
            if not coupled and needs[6]:
                d_ci = _sum_tb(grads[..., H : 2 * H] * c_prev)
            if needs[8]:
                d_co = _sum_tb(grads[..., :H] * c_new)
        if g_hh is not None and needs[9]:
            normed = (raw_hh.view(T, B, k, H) - mean_hh) * rstd_hh
            d_g_hh = _sum_tb(d_a * normed.view(T, B, G))
        if g_c is not None:
            if needs[10]:
                d_g_c = _sum_tb(d_norm_c * ((c_new - mean_c) * rstd_c))
            if needs[11]:
                d_b_c = _sum_tb(d_norm_c)
        return (
            None, d_xi, d_w_hh, dh0 if needs[3] else None, dc0 if needs[4] else None,
            d_w_hr, d_ci, d_cf, d_co, d_g_hh, d_g_c, d_b_c, None, None,
        )  # fmt: skip


def _sum_tb(a: Tensor) -> Tensor:
    return a.sum((0, 1))


@lru_cache(maxsize=64)
def _internal_order(k: int, H: int, device: torch.device) -> Tensor:
    """Row indices from torch's gate order (i, f, g, o) / (f, g, o) to (o, i, f, g) / (o, f, g)."""
    blocks = torch.tensor([3, 0, 1, 2] if k == 4 else [2, 0, 1], device=device)
    return (blocks[:, None] * H + torch.arange(H, device=device)).reshape(-1)


def _check_inputs(cell, x, state, keep):
    if not isinstance(cell, LSTMCell):
        raise TypeError(f"lstm_scan runs an LSTMCell, got {type(cell).__name__}")
    if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[2] != cell.input_size:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must be (T, B, {cell.input_size}), got {shape}")
    T, B = x.shape[0], x.shape[1]
    H, P = cell.hidden_size, cell.output_size
    if not isinstance(state, tuple) or len(state) != 2:
        raise TypeError(f"state must be LSTMState(h, c), got {type(state).__name__}")
    for name, s, size in (("h", state[0], P), ("c", state[1], H)):
        if tuple(s.shape) != (B, size):
            raise ValueError(f"state.{name} must be ({B}, {size}), got {tuple(s.shape)}")
    if keep is None:
        return T, B, None, None
    if len(keep) != 2:
        raise ValueError(f"keep must be None or (keep_h, keep_c), got {len(keep)} entries")
    checked = []
    for name, kp, size in (("keep_h", keep[0], P), ("keep_c", keep[1], H)):
        if kp is not None:
            try:
                kp = torch.broadcast_to(kp, (T, B, size))
            except RuntimeError:
                raise ValueError(
                    f"{name} must broadcast to ({T}, {B}, {size}), got {tuple(kp.shape)}"
                ) from None
            kp = kp.to(x.dtype).detach()
        checked.append(kp)
    return T, B, *checked
