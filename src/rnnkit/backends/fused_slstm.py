r"""Whole-sequence sLSTM with a hand-written BPTT backward: the ``fused`` backend's sLSTM scan.

:func:`slstm_scan` computes exactly :func:`rnnkit.backends.reference.scan` for an
:class:`~rnnkit.cells.slstm.SLSTMCell` (both forget gates, any ``num_heads``, with and without
bias, with the ``keep`` mixing rule of variable lengths and zoneout on all four state fields).
The input side for all T steps is one matmul (ordinary autograd ops over T·B rows)::

    X_t = W x_t + b

and the recurrence runs in one :class:`torch.autograd.Function` (``_SLSTMRecurrence``) whose
backward is BPTT written by hand, into buffers allocated once; everything that does not depend
on the recurrence (gate derivative factors, which branch the stabiliser took, weight
gradients) is computed in bulk over all T steps. One step (the cell's equations)::

    a_t   = X_t + R h_{t-1}                 R block-diagonal over heads, used as a dense (4H, H)
    u_t   = log f_t + m_{t-1}               log f_t = log σ(a_f) or a_f
    m̃_t   = max(u_t, a_i)                   (a_i while n_{t-1} = 0)
    i'_t  = exp(a_i - m̃_t),   f'_t = exp(min(u_t - m̃_t, 0))
    c̃_t   = f'_t c_{t-1} + i'_t tanh(a_z),   ñ_t = f'_t n_{t-1} + i'_t,   h̃_t = σ(a_o) c̃_t / ñ_t
    s_t   = keep_s ⊙ s_{t-1} + (1 - keep_s) ⊙ s̃_t      for s in h, c, n, m

Backward of one step, from the carried ``dL/d(h̃, c̃, ñ, m̃)`` (δh, δc, δn, δm after the keep
mix)::

    δc += δh σ(a_o) / ñ,   δn -= δh h̃ / ñ,   δa_o = δh (c̃/ñ) σ'(a_o),   δa_z = δc i' tanh'(a_z)
    δI  = (δc tanh(a_z) + δn) i'               (i' = e^{a_i - m̃}: to a_i, and minus to m̃)
    δE  = (δc c_{t-1} + δn n_{t-1}) f' [u - m̃ ≤ 0]    (f' = e^{u - m̃}: to u, and minus to m̃)
    δm̃' = δm − δI − δE;   w = the share of a_i in the max (1, 0, ½ at a tie; 1 while n = 0)
    δa_i = δI + w δm̃',    δu = δE + (1 − w) δm̃',    δa_f = δu σ(−a_f) (or δu),  δm_{t-1} = δu
    δc_{t-1} = δc f',   δn_{t-1} = δn f',   δh_{t-1} = Rᵀ δa_t

— the subgradients of ``torch.maximum``, ``torch.where`` and ``clamp_max`` exactly as autograd
takes them through the reference step, so the two agree to rounding.

Speed notes. As in :mod:`rnnkit.backends.fused_lstm`, ``tanh(a) = 2σ(2a) - 1``: the candidate's
rows arrive doubled and share one sigmoid pass with the output gate (z and o are adjacent), and
``i'`` and ``f'`` share one ``exp``. Inside the Function everything is head-major, (…, k, B, ·)
with each head's gate rows (i, f, z, o) together, so the block-diagonal R is k (d, 4d) blocks
and each step's recurrent product is one batched matmul (``baddbmm``) that never touches the
zeros off the blocks; the rows are reordered once per call by ``index_select`` (autograd ops).

Shapes: T steps, B batch, I ``input_size``, H ``hidden_size``, k ``num_heads``, d = H / k.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnnkit.backends.kernel_parts import apply_in_float32, sigmoid_backward, tanh_backward
from rnnkit.cells.slstm import SLSTMCell, SLSTMState

_log_sigmoid = torch._C._nn.log_sigmoid  # with out=, unlike F.logsigmoid


def slstm_scan(
    cell: SLSTMCell,
    weights: Mapping[str, Tensor],
    x: Tensor,
    state: SLSTMState,
    keep: Sequence[Tensor | None] | None = None,
) -> tuple[Tensor, SLSTMState]:
    """Run an sLSTM cell over a time-major sequence; same contract and result as
    :func:`rnnkit.backends.reference.scan`.

    Args:
        cell: the :class:`~rnnkit.cells.slstm.SLSTMCell` whose options define the math.
        weights: ``weight_ih`` (4H, I), ``weight_hh`` (4H, d), and with bias ``bias_ih`` (4H).
        x: (T, B, I) inputs.
        state: ``SLSTMState(h, c, n, m)``, (B, H) each, before the first step.
        keep: ``None`` or one entry per state field (h, c, n, m), each ``None`` or broadcastable
            to (T, B, H) with values in [0, 1]: after each step
            ``s_t = keep ⊙ s_{t-1} + (1 - keep) ⊙ s̃_t``. Receives no gradient.

    Returns:
        ``(h, SLSTMState(h_T, c_T, n_T, m_T))``: h (T, B, H) the mixed ``h_t`` of every step.
        With T = 0, an empty h and ``state`` itself.

    Example::

        >>> cell = SLSTMCell(8, 16, num_heads=4, forget_gate="exp")
        >>> x = torch.randn(5, 3, 8)
        >>> h, last = slstm_scan(cell, cell.weights(), x, cell.initial_state(3))
        >>> h.shape, last.m.shape
        (torch.Size([5, 3, 16]), torch.Size([3, 16]))
    """
    T, B, keeps = _check_inputs(cell, x, state, keep)
    H, k, d = cell.hidden_size, cell.num_heads, cell.head_size
    if T == 0:
        return x.new_zeros(0, B, H), state
    order, double_z = _head_major_rows(k, d, x.device, x.dtype)
    w_ih = weights["weight_ih"].index_select(0, order) * double_z[:, None]
    x_rows = x.reshape(T * B, x.shape[2])
    if cell.bias:
        xi = torch.addmm(weights["bias_ih"].index_select(0, order) * double_z, x_rows, w_ih.t())
    else:
        xi = x_rows @ w_ih.t()
    xi = to_heads(xi.view(T, B, 4 * H), k)  # (T, k, B, 4d)
    # R per head, (k, d_in, 4d): a_t[j] = h_{t-1}[j] @ r[j].
    r = weights["weight_hh"].view(4, k, d, d).permute(1, 3, 0, 2).reshape(k, d, 4 * d)
    r = r * double_z.view(k, 1, 4 * d)
    h, c, n, m = apply_in_float32(
        _SLSTMRecurrence,
        cell.forget_gate_activation == "exp",
        xi,
        r,
        *(to_heads(s, k) for s in state),
        *(None if kp is None else to_heads(kp, k) for kp in keeps),
    )
    h = from_heads(h)
    return h, SLSTMState(h[-1], *(from_heads(s) for s in (c, n, m)))


def to_heads(a: Tensor, k: int) -> Tensor:
    """(…, B, k·F) -> (…, k, B, F) contiguous: each head's features together (head-major)."""
    *lead, B, F = a.shape
    return a.reshape(*lead, B, k, F // k).transpose(-3, -2).contiguous()


def from_heads(a: Tensor) -> Tensor:
    """The inverse of :func:`to_heads`: (…, k, B, F) -> (…, B, k·F)."""
    *lead, k, B, F = a.shape
    return a.transpose(-3, -2).reshape(*lead, B, k * F)


class _SLSTMRecurrence(torch.autograd.Function):
    """The recurrence with hand-written BPTT, head-major: every tensor is (…, k, B, ·) and head
    j's gate blocks are (i, f, z, o) of d units each, z rows doubled.

    ``apply(exp_forget, xi, r, h0, c0, n0, m0, keep_h, keep_c, keep_n, keep_m)``: xi
    (T, k, B, 4d) the input pre-activations with the bias; r (k, d, 4d) the recurrent weight of
    each head; the initial state (k, B, d) each; keeps (T, k, B, d) or None. Returns h
    (T, k, B, d) and c_T, n_T, m_T (k, B, d).
    """

    @staticmethod
    def forward(ctx, exp_forget, xi, r, h0, c0, n0, m0, keep_h, keep_c, keep_n, keep_m):
        T, k, B, G = xi.shape
        H = G // 4  # per head: d
        new = xi.new_empty

        # gates[t] = [a_i, a_f, σ(2a_z) → tanh(a_z), σ(a_o)]: a_i and a_f stay raw.
        gates = xi.clone(memory_format=torch.contiguous_format)  # a_t = X_t + R h_{t-1}
        log_u = new(T, k, B, H)  # u_t = log f_t + m_{t-1}
        exps = new(T, k, B, 2, H)  # [i'_t, f'_t]
        h_all = new(T, k, B, H)
        seqs = []  # c, n, m: (T+1, k, B, d), index 0 the initial state, then the mixed s_t
        for s0 in (c0, n0, m0):
            seq = new(T + 1, k, B, H)
            seq[0] = s0
            seqs.append(seq)
        c_seq, n_seq, m_seq = seqs
        fresh = [  # the cell's own c̃, ñ, m̃ (views of the sequence without keep)
            seq[1:] if kp is None else new(T, k, B, H)
            for seq, kp in zip(seqs, (keep_c, keep_n, keep_m))
        ]
        h_new = h_all if keep_h is None else new(T, k, B, H)
        minus_one = xi.new_full((), -1.0)

        a_t, u_t, e_t = gates.unbind(0), log_u.unbind(0), exps.unbind(0)
        ai_t, af_t = gates[..., :H].unbind(0), gates[..., H : 2 * H].unbind(0)
        zo_t, z_t = gates[..., 2 * H :].unbind(0), gates[..., 2 * H : 3 * H].unbind(0)
        o_t = gates[..., 3 * H :].unbind(0)
        ei_t, ef_t = exps[..., 0, :].unbind(0), exps[..., 1, :].unbind(0)
        h_t, hn_t = h_all.unbind(0), h_new.unbind(0)
        c_t, n_t, m_t = (s.unbind(0) for s in seqs)
        cn_t, nn_t, mn_t = (s.unbind(0) for s in fresh)
        h_prev = (h0, *h_t[:-1])
        mixes = [  # (keep, the cell's own s̃, where the mixed s_t goes, s_{t-1})
            (kp.unbind(0), own, out, previous)
            for kp, own, out, previous in zip(
                (keep_h, keep_c, keep_n, keep_m),
                (hn_t, cn_t, nn_t, mn_t),
                (h_t, c_t[1:], n_t[1:], m_t[1:]),
                (h_prev, c_t, n_t, m_t),
            )
            if kp is not None
        ]

        for t in range(T):
            a, a_i, a_f, m = a_t[t], ai_t[t], af_t[t], mn_t[t]
            a.baddbmm_(h_prev[t], r)
            if exp_forget:
                u = torch.add(a_f, m_t[t], out=u_t[t])
            else:
                u = _log_sigmoid(a_f, out=u_t[t]).add_(m_t[t])
            torch.maximum(u, a_i, out=m)
            if t == 0 or keep_n is not None:  # n_{t-1} can be 0 only here
                torch.where(n_t[t] == 0, a_i, m, out=m)
            torch.sub(a_i, m, out=ei_t[t])
            torch.sub(u, m, out=ef_t[t]).clamp_max_(0)
            i, f = e_t[t].exp_().unbind(-2)
            zo_t[t].sigmoid_()
            torch.add(minus_one, z_t[t], alpha=2, out=z_t[t])  # 2σ(2a) - 1 = tanh(a)
            cn, nn = cn_t[t], nn_t[t]
            torch.mul(f, c_t[t], out=cn).addcmul_(i, z_t[t])
            torch.addcmul(i, f, n_t[t], out=nn)
            torch.div(cn, nn, out=hn_t[t]).mul_(o_t[t])
            for keep_t, own, out, previous in mixes:
                torch.lerp(own[t], previous[t], keep_t[t], out=out[t])

        ctx.exp_forget = exp_forget
        ctx.save_for_backward(
            r, h0, gates, log_u, exps, h_all, c_seq, n_seq, *fresh,
            h_new if keep_h is not None else None, keep_h, keep_c, keep_n, keep_m,
        )  # fmt: skip
        ctx.set_materialize_grads(False)
        return h_all, c_seq[-1].clone(), n_seq[-1].clone(), m_seq[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, d_h, d_c_last, d_n_last, d_m_last):
        (
            r, h0, gates, log_u, exps, h_all, c_seq, n_seq, c_new, n_new, m_new, h_new,
            keep_h, keep_c, keep_n, keep_m,
        ) = ctx.saved_tensors  # fmt: skip
        needs = ctx.needs_input_grad
        T, k, B, G = gates.shape
        H = G // 4
        new = gates.new_empty
        if h_new is None:
            h_new = h_all
        # dL/dh_t (mixed): the outputs' gradient, plus R^T δa_{t+1} (and the kept share) added
        # in place as the loop reaches step t + 1.
        if d_h is None:
            d_h_total = h_all.new_zeros(T, k, B, H)
        else:
            d_h_total = d_h.clone(memory_format=torch.contiguous_format)

        # Factors that do not depend on the recurrence, in bulk over all T steps.
        a_i, a_f = gates[..., :H], gates[..., H : 2 * H]
        z, o = gates[..., 2 * H : 3 * H], gates[..., 3 * H :]
        i, f = exps[..., 0, :], exps[..., 1, :]
        c_prev, n_prev = c_seq[:-1], n_seq[:-1]
        # [δc, δn] += δh [σ(a_o) / ñ, -h̃ / ñ]
        q_cn = torch.stack((o / n_new, -(h_new / n_new)), -2)
        p_o = sigmoid_backward(c_new / n_new, o)  # δh -> δa_o
        f_z = tanh_backward(i, z).mul_(0.5)  # δc -> δ(2 a_z)
        f_live = f * ((log_u - m_new) <= 0)  # f' where the clamp let the gradient through
        # Per unit, [δE, δI] = δc [c_{t-1} f', z i'] + δn [n_{t-1} f', i'].
        from_c = torch.stack((c_prev * f_live, z * i), -2)  # (T, k, B, 2, d)
        from_n = torch.stack((n_prev * f_live, i), -2)
        empty = n_prev == 0  # where the forward took m̃ = a_i (it looks only where n can be 0)
        if keep_n is None:
            empty[1:] = False
        share = torch.where(  # of a_i in m̃ = max(u, a_i); 1 while n_{t-1} = 0
            empty, 1.0, torch.where(a_i > log_u, 1.0, torch.where(a_i == log_u, 0.5, 0.0))
        ).to(gates.dtype)
        d_logf = None if ctx.exp_forget else torch.sigmoid(-a_f)
        mixed_cn = keep_c is not None or keep_n is not None
        if mixed_cn:  # [keep_c, keep_n], zeros for None
            k_cn = torch.stack([c_new.new_zeros(()).expand_as(c_new) if kp is None else kp
                                for kp in (keep_c, keep_n)], -2)  # fmt: skip
            not_k_cn_t, k_cn_t = (1 - k_cn).unbind(0), k_cn.unbind(0)

        grads = new(T, k, B, G)  # [δa_i, δa_f, δa_z, δa_o] per step
        dcn = new(k, B, 2, H)  # [δc, δn] of the cell's own c̃, ñ
        dc_2, dn_2 = dcn[..., 0:1, :], dcn[..., 1:2, :]
        d_ei = new(k, B, 2, H)
        d_e, d_i = d_ei.unbind(-2)
        d_ml = new(k, B, H)
        d_us = (new(k, B, H), new(k, B, H))  # δu of steps t and t+1 (δm carried)
        gr_t = grads.unbind(0)
        gi_t, gf_t = grads[..., :H].unbind(0), grads[..., H : 2 * H].unbind(0)
        gz_t, go_t = grads[..., 2 * H : 3 * H].unbind(0), grads[..., 3 * H :].unbind(0)
        dht_t = d_h_total.unbind(0)
        q_t, po_t, fz_t = q_cn.unbind(0), p_o.unbind(0), f_z.unbind(0)
        kc_t, kn_t = from_c.unbind(0), from_n.unbind(0)
        share_t, f_t = share.unbind(0), f.unbind(0)
        dlf_t = d_logf.unbind(0) if d_logf is not None else None
        kh_t, km_t = (None if kp is None else kp.unbind(0) for kp in (keep_h, keep_m))
        not_kh_t, not_km_t = (None if kp is None else (1 - kp).unbind(0) for kp in
                              (keep_h, keep_m))  # fmt: skip
        r_t = r.transpose(1, 2).contiguous()

        if d_c_last is None and d_n_last is None:
            d_cn = None  # dL/d[c_t, n_t] (mixed), carried; None means zero
        else:
            d_cn = torch.stack([h0.new_zeros(()).expand_as(h0) if g is None else g
                                for g in (d_c_last, d_n_last)], -2)  # fmt: skip
        dm = d_m_last
        dh0 = None
        for t in range(T - 1, -1, -1):
            dh = dht_t[t]
            dhh = dh if not_kh_t is None else torch.mul(dh, not_kh_t[t])
            dhh_2 = dhh.unsqueeze(-2)
            if d_cn is None:
                torch.mul(dhh_2, q_t[t], out=dcn)
            elif not mixed_cn:
                torch.addcmul(d_cn, dhh_2, q_t[t], out=dcn)
            else:
                torch.mul(d_cn, not_k_cn_t[t], out=dcn).addcmul_(dhh_2, q_t[t])
            torch.mul(dhh, po_t[t], out=go_t[t])
            torch.mul(dcn[..., 0, :], fz_t[t], out=gz_t[t])
            torch.mul(dc_2, kc_t[t], out=d_ei).addcmul_(dn_2, kn_t[t])
            dmm = dm if dm is None or not_km_t is None else dm * not_km_t[t]
            # δm̃' = δm − δI − δE;  δa_i = δI + w δm̃';  δu = δE + (1 − w) δm̃' = δm − δa_i
            d_u = gf_t[t] if dlf_t is None else d_us[t % 2]
            if dmm is None:
                torch.add(d_i, d_e, out=d_ml).neg_()
                torch.addcmul(d_i, share_t[t], d_ml, out=gi_t[t])
                torch.neg(gi_t[t], out=d_u)
            else:
                torch.sub(dmm, d_i, out=d_ml).sub_(d_e)
                torch.addcmul(d_i, share_t[t], d_ml, out=gi_t[t])
                torch.sub(dmm, gi_t[t], out=d_u)
            if dlf_t is not None:
                torch.mul(d_u, dlf_t[t], out=gf_t[t])
            dm = d_u if km_t is None or dm is None else torch.addcmul(d_u, dm, km_t[t])
            # δ[c, n]_{t-1} = δ[c̃, ñ] f' (+ the kept share of the mixed δ[c, n]_t)
            if not mixed_cn:
                d_cn = dcn.mul_(f_t[t].unsqueeze(-2))  # dcn is rewritten first next step
            else:
                step = torch.mul(dcn, f_t[t].unsqueeze(-2))
                if d_cn is not None:
                    step.addcmul_(d_cn, k_cn_t[t])
                d_cn = step
            if t > 0:
                dht_t[t - 1].baddbmm_(gr_t[t], r_t)
                if kh_t is not None:
                    dht_t[t - 1].addcmul_(dh, kh_t[t])
            else:
                dh0 = torch.bmm(gr_t[0], r_t)
                if kh_t is not None:
                    dh0.addcmul_(dh, kh_t[0])

        d_r = None
        if needs[2]:  # Σ_t h_{t-1}^T δa_t per head, h_{-1} = h0
            h_prev = torch.cat((h0.unsqueeze(0), h_all[:-1]))  # (T, k, B, d)
            d_r = torch.bmm(
                h_prev.transpose(0, 1).reshape(k, T * B, H).transpose(1, 2),
                grads.transpose(0, 1).reshape(k, T * B, G),
            )
        d_c0 = d_n0 = None
        if d_cn is not None:
            d_c0, d_n0 = d_cn.unbind(-2)
        return (
            None, grads if needs[1] else None, d_r, dh0 if needs[3] else None,
            d_c0 if needs[4] else None, d_n0 if needs[5] else None,
            dm.clone() if needs[6] and dm is not None else None,
            None, None, None, None,
        )  # fmt: skip


@lru_cache(maxsize=64)
def _head_major_rows(
    k: int, d: int, device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """``(order, double_z)``, (4H,) each: ``order[j·4d + g·d + u] = g·H + j·d + u`` takes the
    cell's gate-major rows (i, f, z, o; heads within each gate) to head-major rows (heads; i,
    f, z, o within each head), and ``double_z`` is ones with 2 on every head's z block."""
    H = k * d
    gate, head, unit = torch.meshgrid(
        torch.arange(4), torch.arange(k), torch.arange(d), indexing="ij"
    )
    order = (gate * H + head * d + unit).permute(1, 0, 2).reshape(4 * H).to(device)
    double_z = torch.ones(k, 4, d, dtype=dtype)
    double_z[:, 2] = 2
    return order, double_z.reshape(4 * H).to(device)


def _check_inputs(cell, x, state, keep):
    if not isinstance(cell, SLSTMCell):
        raise TypeError(f"slstm_scan runs an SLSTMCell, got {type(cell).__name__}")
    if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[2] != cell.input_size:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must be (T, B, {cell.input_size}), got {shape}")
    T, B, H = x.shape[0], x.shape[1], cell.hidden_size
    fields = SLSTMState._fields
    if not isinstance(state, tuple) or len(state) != len(fields):
        raise TypeError(f"state must be SLSTMState(h, c, n, m), got {type(state).__name__}")
    for name, s in zip(fields, state):
        if tuple(s.shape) != (B, H):
            raise ValueError(f"state.{name} must be ({B}, {H}), got {tuple(s.shape)}")
    if keep is None:
        return T, B, (None,) * len(fields)
    if len(keep) != len(fields):
        raise ValueError(f"keep must be None or one entry per field (h, c, n, m), got {len(keep)}")
    checked = []
    for name, kp in zip(fields, keep):
        if kp is not None:
            try:
                kp = torch.broadcast_to(kp, (T, B, H))
            except RuntimeError:
                raise ValueError(
                    f"keep_{name} must broadcast to ({T}, {B}, {H}), got {tuple(kp.shape)}"
                ) from None
            kp = kp.to(x.dtype).detach()
        checked.append(kp)
    return T, B, tuple(checked)
