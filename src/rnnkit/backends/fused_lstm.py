r"""Whole-sequence LSTM with a hand-written BPTT backward: the ``fused`` backend's LSTM scan.

:func:`lstm_scan` computes exactly :func:`rnnkit.backends.reference.scan` for an
:class:`~rnnkit.cells.LSTMCell` with any options (peephole, coupled, layer_norm, proj_size,
forget_bias, bias). Without layer norm the input side is one matmul for all T steps (ordinary
autograd ops over T·B rows)::

    X_t = W_ih x_t + b_ih + b_hh + forget_bias·[f block]

and the recurrence runs in one :class:`torch.autograd.Function` (``_LSTMRecurrence``) whose
backward is BPTT written by hand: no per-step autograd graph, every per-step result written in
place into buffers allocated once, everything that does not depend on the recurrence (gate
derivative factors, weight gradients) computed in bulk over all T steps. One step::

    a_t  = X_t + W_hh h_{t-1}          (layer norm: LN(W_ih x_t) γ_ih + LN(W_hh h_{t-1}) γ_hh + b)
    i, f = σ(a_i + w_ci ⊙ c_{t-1}), σ(a_f + w_cf ⊙ c_{t-1})    (coupled: i = 1 - f)
    g    = tanh(a_g)
    c̃_t  = f ⊙ c_{t-1} + i ⊙ g
    o    = σ(a_o + w_co ⊙ c̃_t)
    h̃_t  = W_hr (o ⊙ tanh(LN_c(c̃_t)))                     (W_hr with proj_size, LN_c with LN)
    h_t  = keep_h ⊙ h_{t-1} + (1 - keep_h) ⊙ h̃_t,   c_t = keep_c ⊙ c_{t-1} + (1 - keep_c) ⊙ c̃_t

With layer norm the input matmul is still one bulk matmul, but inside the Function: both
per-gate-block layer norms of a step run as one call on adjacent rows, while the step's data is
in cache — in bulk they cost several passes over (T, B, 4H) tensors, more than the whole step.

Speed notes. Gate blocks are reordered from torch's (i, f, g, o) to (o, i, f, g) — coupled:
(f, g, o) to (o, f, g) — by permuting weight rows once per call, so one ``sigmoid_`` covers all
gates and, in the backward, one multiplication writes the i, f, g pre-activation gradients and
the carried ``dL/dc_{t-1}`` side by side. tanh is several times slower than sigmoid on CPU, so
``tanh(a) = 2σ(2a) - 1``: the candidate's rows arrive doubled and share the sigmoid pass, and
``o ⊙ tanh(c̃) = o - 2 o ⊙ σ(-2c̃)``.

Inference. When autograd records nothing, no Function runs. Without peephole, layer norm and
``keep``, torch's own LSTM kernel computes the cell (:func:`_torch_kernel`; coupled gates as four
blocks, the input block the negated forget block). Otherwise a forward-only loop runs the same
steps as the Function's forward but writes each step's gates into its own rows of the input
pre-activations and keeps the cell state in one (B, H) buffer, saving nothing: on the CPU as
compiled C++ (:func:`rnnkit.backends.cpu_kernels.lstm_forward_only`), elsewhere as eager
operations (:func:`_lstm_forward_only`).

Shapes: T steps, B batch, I ``input_size``, H ``hidden_size``, P ``proj_size`` or H,
G = 4H (3H when coupled).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnnkit.backends import cpu_kernels
from rnnkit.backends.kernel_parts import (
    apply_in_float32,
    input_projection,
    needs_backward,
    step_matmul,
)
from rnnkit.cells.base import LSTMState
from rnnkit.cells.lstm import LAYER_NORM_EPS, LSTMCell

_layer_norm = torch.native_layer_norm  # -> (normalised, mean, rstd)
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
    train = needs_backward(x, *state, *weights.values())  # else inference: nothing saved
    torch_computes = keep is None and not (cell.peephole or cell.layer_norm)
    if torch_computes and not train:
        return apply_in_float32(_torch_kernel, cell, weights, x, state)
    G = k * H
    order = _internal_order(k, H, x.device)
    double_g = _candidate_doubling(k, H, x.device, x.dtype)  # see the module docstring
    w = weights

    def rows(name: str) -> Tensor:  # a parameter's rows in the internal gate order
        return w[name].index_select(0, order)

    bias = (w["bias_ih"] + w["bias_hh"]).index_select(0, order) * double_g if cell.bias else None
    if cell.forget_bias:
        if bias is None:
            bias = x.new_zeros(G)
        f = 1 if cell.coupled else 2  # the forget block in (o, f, g) / (o, i, f, g)
        bias[f * H : (f + 1) * H] += cell.forget_bias
    if cell.layer_norm:  # layer norm is scale-invariant: double the gains, not the weights
        inputs = (x, rows("weight_ih"), bias, rows("layer_norm_ih_weight") * double_g)
        w_hh = rows("weight_hh")
        g_hh = rows("layer_norm_hh_weight") * double_g
    else:
        w_ih = rows("weight_ih") * double_g[:, None]
        if train:  # the input side for all steps in one matmul
            xi = input_projection(x.reshape(T * B, x.shape[2]), w_ih, bias)
            inputs = (xi.view(T, B, G), None, None, None)
        else:  # projected by the forward-only loop (the compiled one chunk by chunk, in cache)
            inputs = (x, w_ih, bias, None)
        w_hh = rows("weight_hh") * double_g[:, None]
        g_hh = None
    args = (
        cell.coupled,
        *inputs,
        w_hh,
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
    recurrence = _LSTMRecurrence if train else _forward_only
    h, c_last = apply_in_float32(recurrence, *args)  # under autocast: the recurrence in float32
    return h, LSTMState(h[-1], c_last)


def _torch_kernel(cell: LSTMCell, weights: Mapping[str, Tensor], x: Tensor, state: LSTMState):
    """``(h, LSTMState)`` from torch's own LSTM kernel (oneDNN, cuDNN), for inference in the
    configurations it can compute: ``bias``, ``forget_bias`` (folded into the forget bias) and
    ``proj_size`` as torch has them, and coupled gates as four blocks whose input block is the
    negated forget block, i = σ(-a_f) = 1 - σ(a_f) = 1 - f."""
    H, k = cell.hidden_size, cell.forget_gate_index
    w = weights
    zeros = w["weight_ih"].new_zeros(cell.gate_count * H)
    b_ih, b_hh = (w["bias_ih"], w["bias_hh"]) if cell.bias else (zeros, zeros)
    if cell.forget_bias:
        b_ih = b_ih.clone()
        b_ih[k * H : (k + 1) * H] += cell.forget_bias

    def ifgo(a: Tensor) -> Tensor:  # coupled (f, g, o) -> (-f, f, g, o)
        return torch.cat([-a[:H], a]) if cell.coupled else a

    flat = [ifgo(w["weight_ih"]), ifgo(w["weight_hh"]), ifgo(b_ih), ifgo(b_hh)]
    if cell.proj_size:
        flat.append(w["weight_hr"])
    hx = (state.h.unsqueeze(0).contiguous(), state.c.unsqueeze(0).contiguous())
    h, h_T, c_T = torch.lstm(x, hx, flat, True, 1, 0.0, False, False, False)
    return h, LSTMState(h_T[0], c_T[0])


def _forward_only(*args):
    """Inference: the compiled recurrence where it serves
    (:mod:`~rnnkit.backends.cpu_kernels`), else the eager loop; same arguments and result."""
    if cpu_kernels.serves(*args):
        return cpu_kernels.lstm_forward_only(*args)
    return _lstm_forward_only(*args)


def _lstm_forward_only(coupled, xi, w_ih, bias, g_ih, w_hh, h0, c0, w_hr, w_ci, w_cf, w_co, g_hh,
                       g_c, b_c, keep_h, keep_c):  # fmt: skip
    """``_LSTMRecurrence.forward`` for when nothing needs a backward pass (``no_grad``,
    ``inference_mode``, frozen weights): same arguments, same ``(h, c_T)``, nothing saved; and
    without layer norm ``xi`` may be ``x`` (T, B, I) with ``w_ih`` (G, I) and ``bias``, the
    input side then projected here.

    A step's gates are written in place into its rows of the input pre-activations (a fresh
    tensor of :func:`lstm_scan`; with layer norm, the normalised input side computed in bulk),
    and the cell state, the squashed cell state and the other per-step values live in (B, ·)
    buffers that every step reuses, so a step touches only its own rows and a few cached ones.
    """
    T, B = xi.shape[:2]
    G, H, P = w_hh.shape[0], c0.shape[1], h0.shape[1]
    k = G // H
    s = (k - 1) * H  # the candidate block starts here
    if w_ih is not None and g_ih is None:  # xi is x: the input side for all steps in one matmul
        xi = input_projection(xi.reshape(T * B, xi.shape[2]), w_ih, bias).view(T, B, G)
    peephole, layer_norm = w_co is not None, g_hh is not None
    new = xi.new_empty
    if layer_norm:  # a_t = LN(W_ih x_t) g_ih + b for all steps, + LN(W_hh h_{t-1}) g_hh per step
        raw = input_projection(xi.reshape(T * B, xi.shape[2]), w_ih).view(T, B, k, H)
        normed = _layer_norm(raw, (H,), None, None, LAYER_NORM_EPS)[0].view(T, B, G)
        gates = normed.mul_(g_ih) if bias is None else normed.mul_(g_ih).add_(bias)
        g_c2, b_c2 = g_c * -2, b_c * -2
    else:
        gates = xi
    h_all = new(T, B, P)
    c = c0.clone()  # c_{t-1}, then c_t, in place
    c_cell = new(B, H) if keep_c is not None else c  # the cell's c̃_t
    squash = new(B, H)
    m_tmp = new(B, H) if w_hr is not None or keep_h is not None else None
    h_tmp = new(B, P) if w_hr is not None and keep_h is not None else None
    cg_tmp = new(B, H) if coupled else None
    w_if = torch.stack((w_ci, w_cf)).unsqueeze(0) if peephole and not coupled else None
    minus_one = xi.new_full((), -1.0)
    recurrent = step_matmul(w_hh, B, T)
    w_hr_t = w_hr.t() if w_hr is not None else None
    hp = h0
    for t, h in enumerate(h_all.unbind(0)):
        if layer_norm:
            raw_h = recurrent(hp, None)
            normed_h = _layer_norm(raw_h.view(B, k, H), (H,), None, None, LAYER_NORM_EPS)[0]
            a = gates[t].addcmul_(normed_h.view(B, G), g_hh)
        else:
            a = recurrent(hp, gates[t])
        o, f, g = a[:, :H], a[:, s - H : s], a[:, s:]
        if peephole:
            if coupled:
                f.addcmul_(c, w_cf)
            else:
                a[:, H:s].view(B, 2, H).addcmul_(c.unsqueeze(1), w_if)
            a[:, H:].sigmoid_()
        else:
            a.sigmoid_()
        torch.add(minus_one, g, alpha=2, out=g)  # g = 2σ(2a) - 1 = tanh(a)
        if coupled:  # c̃ = g + f (c_{t-1} - g)
            torch.sub(c, g, out=cg_tmp)
            torch.addcmul(g, f, cg_tmp, out=c_cell)
        else:
            torch.mul(f, c, out=c_cell)
            c_cell.addcmul_(a[:, H : 2 * H], g)
        if peephole:
            o.addcmul_(c_cell, w_co).sigmoid_()
        if layer_norm:
            normed_c = _layer_norm(c_cell, (H,), g_c2, b_c2, LAYER_NORM_EPS)[0]
            torch.sigmoid(normed_c, out=squash)
        else:
            torch.mul(c_cell, -2, out=squash).sigmoid_()
        m = m_tmp if m_tmp is not None else h
        torch.addcmul(o, o, squash, value=-2, out=m)  # o tanh(·) = o - 2 o squash
        if w_hr is not None:
            m = torch.mm(m, w_hr_t, out=h if keep_h is None else h_tmp)
        if keep_h is not None:
            torch.lerp(m, hp, keep_h[t], out=h)
        if keep_c is not None:
            torch.lerp(c_cell, c, keep_c[t], out=c)
        hp = h
    return h_all, c


class _LSTMRecurrence(torch.autograd.Function):
    """The recurrence with hand-written BPTT, in the internal gate order (o, i, f, g) / (o, f, g).

    Inputs (optional ones may be None): ``coupled``; without layer norm ``xi`` (T, B, G) the
    input pre-activations (candidate rows doubled) and ``w_ih = bias = g_ih = None``; with
    layer norm ``xi`` is ``x`` (T, B, I), ``w_ih`` (G, I), ``bias`` (G), ``g_ih`` (G);
    ``w_hh`` (G, P); ``h0`` (B, P); ``c0`` (B, H); ``w_hr`` (P, H); peepholes ``w_ci``,
    ``w_cf``, ``w_co`` (H); recurrent layer-norm gain ``g_hh`` (G); cell layer norm ``g_c``,
    ``b_c`` (H); ``keep_h`` (T, B, P), ``keep_c`` (T, B, H).
    Outputs: ``h`` (T, B, P) and ``c_T`` (B, H).
    """

    @staticmethod
    def forward(ctx, coupled, xi, w_ih, bias, g_ih, w_hh, h0, c0, w_hr, w_ci, w_cf, w_co, g_hh,
                g_c, b_c, keep_h, keep_c):  # fmt: skip
        T, B = xi.shape[:2]
        G, H, P = w_hh.shape[0], c0.shape[1], h0.shape[1]
        k = G // H
        peephole, layer_norm = w_co is not None, g_hh is not None
        eps = LAYER_NORM_EPS
        new = xi.new_empty

        # Buffers. gates holds the activations o, i, f, g (coupled: o, f, g); squash holds
        # σ(-2c̃) (σ(-2 LN_c(c̃)) with layer norm), so that tanh(·) = 1 - 2 squash.
        gates = new(T, B, G)
        h_all = new(T, B, P)
        c_seq = new(T + 1, B, H)  # c_0 and the carried c_t (mixed with keep_c)
        c_seq[0] = c0
        c_new = c_seq[1:] if keep_c is None else new(T, B, H)  # the cell's c̃_t
        squash = new(T, B, H)
        h_tmp = new(B, P) if keep_h is not None else None
        m_tmp = new(B, H) if w_hr is not None else None
        cg_tmp = new(B, H) if coupled else None
        minus_one = xi.new_full((), -1.0)

        # Per-step views, made once.
        a_t, h_t, cn_t, sq_t = (v.unbind(0) for v in (gates, h_all, c_new, squash))
        c_t = c_seq.unbind(0)  # c_t[t] is c_{t-1} of step t
        h_prev = (h0, *h_t[:-1])
        s = (k - 1) * H  # the candidate block starts here
        o_t = gates[..., :H].unbind(0)
        g_t = gates[..., s:].unbind(0)
        f_t = gates[..., s - H : s].unbind(0)
        i_t = None if coupled else gates[..., H : 2 * H].unbind(0)
        sig_t = gates[..., H:].unbind(0) if peephole else a_t  # o waits for c̃ with peephole
        if peephole and not coupled:
            pre_if_t = gates[..., H:s].view(T, B, 2, H).unbind(0)
            c_prev_3d = c_seq.view(T + 1, B, 1, H).unbind(0)
            w_if = torch.stack((w_ci, w_cf))
        recurrent = step_matmul(w_hh, B, T)  # h_{t-1} W_hhᵀ
        w_hr_t = w_hr.t() if w_hr is not None else None
        kh_t = keep_h.unbind(0) if keep_h is not None else None
        kc_t = keep_c.unbind(0) if keep_c is not None else None
        if layer_norm:
            # raw[t] = [W_ih x_t, W_hh h_{t-1}], adjacent so one layer-norm call covers both.
            raw = new(T, B, 2, G)
            torch.mm(xi.reshape(T * B, xi.shape[2]), w_ih.t(), out=raw.view(T * B, 2 * G)[:, :G])
            raw_t, raw_h_t = raw.view(T, B, 2 * k, H).unbind(0), raw[:, :, 1].unbind(0)
            normed_ab = []
            g_c2, b_c2 = g_c * -2, b_c * -2
        else:
            raw = None
            xi_t = xi.unbind(0)
        stats_ab, stats_c = [], []

        for t in range(T):
            hp, cp, a, cn, sq = h_prev[t], c_t[t], a_t[t], cn_t[t], sq_t[t]
            if not layer_norm:
                recurrent(hp, xi_t[t], out=a)
            else:
                recurrent(hp, out=raw_h_t[t])
                normed, mean, rstd = _layer_norm(raw_t[t], (H,), None, None, eps)
                normed = normed.view(B, 2, G)
                n_x, n_h = normed.unbind(1)
                if bias is None:
                    torch.mul(n_x, g_ih, out=a)
                else:
                    torch.addcmul(bias, n_x, g_ih, out=a)
                a.addcmul_(n_h, g_hh)
                normed_ab.append(normed)
                stats_ab.append((mean, rstd))
            if peephole:
                if coupled:
                    f_t[t].addcmul_(cp, w_cf)
                else:
                    pre_if_t[t].addcmul_(c_prev_3d[t], w_if)
            sig_t[t].sigmoid_()
            torch.add(minus_one, g_t[t], alpha=2, out=g_t[t])  # g = 2σ(2a) - 1 = tanh(a)
            if coupled:  # c̃ = g + f (c_{t-1} - g)
                torch.sub(cp, g_t[t], out=cg_tmp)
                torch.addcmul(g_t[t], f_t[t], cg_tmp, out=cn)
            else:
                torch.mul(f_t[t], cp, out=cn)
                cn.addcmul_(i_t[t], g_t[t])
            if peephole:
                o_t[t].addcmul_(cn, w_co).sigmoid_()
            if not layer_norm:
                torch.mul(cn, -2, out=sq).sigmoid_()
            else:
                normed, mean, rstd = _layer_norm(cn, (H,), g_c2, b_c2, eps)
                torch.sigmoid(normed, out=sq)
                stats_c.append((mean, rstd))
            # m = o tanh(·) = o - 2 o squash; h̃ = W_hr m or m
            m = m_tmp if w_hr is not None else h_tmp if keep_h is not None else h_t[t]
            torch.addcmul(o_t[t], o_t[t], sq, value=-2, out=m)
            if w_hr is not None:
                m = torch.mm(m, w_hr_t, out=h_t[t] if keep_h is None else h_tmp)
            if keep_h is not None:
                torch.lerp(m, hp, kh_t[t], out=h_t[t])
            if keep_c is not None:
                torch.lerp(cn, cp, kc_t[t], out=c_t[t + 1])

        def stack(stats):  # [(mean, rstd)] per step -> (T, …) mean, rstd
            if not stats:
                return None, None
            return torch.stack([m for m, _ in stats]), torch.stack([r for _, r in stats])

        ctx.coupled = coupled
        # The per-step normalised [W_ih x, W_hh h] (fresh tensors of this Function, never
        # visible outside) stay a list: stacking them would copy (T, B, 2G) for nothing.
        ctx.normed_ab = normed_ab if layer_norm else None
        ctx.save_for_backward(
            xi if layer_norm else None, w_ih, g_ih, w_hh, h0, c0, w_hr, w_ci, w_cf, w_co, g_hh,
            g_c, b_c, keep_h, keep_c, gates, h_all, c_seq,
            c_new if keep_c is not None else None, squash, raw, *stack(stats_ab), *stack(stats_c),
        )  # fmt: skip
        ctx.set_materialize_grads(False)
        return h_all, c_seq[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, d_h, d_c_last):
        (
            x, w_ih, g_ih, w_hh, h0, c0, w_hr, w_ci, w_cf, w_co, g_hh, g_c, b_c, keep_h, keep_c,
            gates, h_all, c_seq, c_new, squash, raw, mean_ab, rstd_ab, mean_c, rstd_c,
        ) = ctx.saved_tensors  # fmt: skip
        coupled = ctx.coupled
        normed_ab = ctx.normed_ab
        needs = ctx.needs_input_grad
        T, B, G = gates.shape
        H, P = c0.shape[1], h0.shape[1]
        k = G // H
        peephole, layer_norm = w_co is not None, g_hh is not None
        c_prev = c_seq[:-1]
        if c_new is None:
            c_new = c_seq[1:]
        if d_h is None:
            d_h = h_all.new_zeros(T, B, P)
        new = gates.new_empty

        # Factors that do not depend on the recurrence, in bulk over all T steps.
        s = (k - 1) * H
        o, g, f = gates[..., :H], gates[..., s:], gates[..., s - H : s]
        tanh_c = torch.rsub(squash, 1, alpha=2)  # tanh(c̃) or tanh(LN_c(c̃))
        # dL/dm -> dL/d(LN_c output or c̃) through tanh, and -> dL/da_o
        tanh_factor = _tanh_backward(o, tanh_c, grad_input=new(T, B, H))  # o (1 - tanh²)
        o_factor = _sigmoid_backward(tanh_c, o, grad_input=new(T, B, H))  # tanh o (1 - o)
        co_factor = None
        if peephole:  # dL/dc̃ gains dL/da_o w_co
            if g_c is None:
                tanh_factor.addcmul_(o_factor, w_co)
            else:
                co_factor = o_factor * w_co
        # dL/dc̃ -> [da_i, da_f, da_g, dL/dc_{t-1}] (coupled: [da_f, da_g, dL/dc_{t-1}]);
        # the candidate's pre-activation is doubled, hence d tanh(a)/d(2a) = (1 - g²) / 2.
        dc_factor = new(T, B, k, H)
        if coupled:
            _sigmoid_backward(c_prev - g, f, grad_input=dc_factor[:, :, 0])
            _tanh_backward(torch.rsub(f, 0.5, alpha=0.5), g, grad_input=dc_factor[:, :, 1])
            dc_factor[:, :, 2] = f
            if peephole:
                dc_factor[:, :, 2].addcmul_(dc_factor[:, :, 0], w_cf)
        else:
            i = gates[..., H : 2 * H]
            _sigmoid_backward(g, i, grad_input=dc_factor[:, :, 0])
            _sigmoid_backward(c_prev, f, grad_input=dc_factor[:, :, 1])
            _tanh_backward(i, g, grad_input=dc_factor[:, :, 2]).mul_(0.5)
            dc_factor[:, :, 3] = f
            if peephole:
                dc_factor[:, :, 3].addcmul_(dc_factor[:, :, 0], w_ci)
                dc_factor[:, :, 3].addcmul_(dc_factor[:, :, 1], w_cf)

        # Backward buffers: grads[t] = [da_o, da_i, da_f, da_g, dL/dc_{t-1} (own part)].
        grads = new(T, B, G + H)
        d_h_total = new(T, B, P)  # dL/dh_t, everything included
        d_h_cell = new(T, B, P) if keep_h is not None and w_hr is not None else None
        d_norm_c = new(T, B, H) if g_c is not None else None  # dL/d LN_c(c̃_t)
        dm_tmp = new(B, P if w_hr is None else H)
        dc_tmp = new(B, H)
        dc_tmp_3d = dc_tmp.unsqueeze(1)
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
        if layer_norm:
            dn_t, cn_t = d_norm_c.unbind(0), c_new.unbind(0)
            mc_t, rc_t = mean_c.unbind(0), rstd_c.unbind(0)
            cof_t = co_factor.unbind(0) if co_factor is not None else None
            raw_t = raw.view(T, B, 2 * k, H).unbind(0)
            mab_t, rab_t = mean_ab.unbind(0), rstd_ab.unbind(0)
            gr_a3 = grads[..., :G].unsqueeze(2).unbind(0)  # (B, 1, G) views
            d_raw = new(T, B, 2, G)  # dL/d[W_ih x_t, W_hh h_{t-1}]
            d_raw_t = d_raw.view(T, B, 2 * k, H).unbind(0)
            d_raw_h_t = d_raw[:, :, 1].unbind(0)
            gains = torch.stack((g_ih, g_hh)).unsqueeze(0)  # (1, 2, G)
            gain_grads = h0.new_zeros(B, 2, G)  # Σ_t dL/da_t ⊙ LN(·), summed over B at the end
            dn_ab = new(B, 2, G)
            dn_ab_rows = dn_ab.view(B, 2 * k, H)

        d_h_total[T - 1] = d_h[T - 1]
        recurrent_back = step_matmul(w_hh.t(), B, T)  # dL/da_t W_hh
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
            if not layer_norm:
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
            torch.mul(df_t[t], dc_tmp_3d if dcn is dc_tmp else dcn.unsqueeze(1), out=gr_rest[t])
            if keep_c is not None and dc is not None:
                gr_c[t].addcmul_(dc, kc_t[t])
            dc = gr_c[t]
            da = gr_a[t]
            if layer_norm:
                torch.mul(gr_a3[t], gains, out=dn_ab)
                gain_grads.addcmul_(gr_a3[t], normed_ab[t])
                dr = _layer_norm_backward(
                    dn_ab_rows, raw_t[t], (H,), mab_t[t], rab_t[t], None, None, _INPUT_GRAD_ONLY
                )[0]
                d_raw_t[t].copy_(dr)
                da = d_raw_h_t[t]
            if t > 0:
                recurrent_back(da, dh_t[t - 1], out=dht_t[t - 1])
                if keep_h is not None:
                    dht_t[t - 1].addcmul_(dh, kh_t[t])
            else:
                dh0 = recurrent_back(da)
                if keep_h is not None:
                    dh0.addcmul_(dh, kh_t[0])
        dc0 = dc.clone()

        # Weight gradients in bulk.
        d_a = grads[..., :G]
        d_xi = d_w_ih = d_bias = d_g_ih = d_g_hh = None
        d_w_hh = d_w_hr = d_ci = d_cf = d_co = d_g_c = d_b_c = None
        if layer_norm:
            d_rx = d_raw[:, :, 0].reshape(T * B, G)
            if needs[1]:
                d_xi = (d_rx @ w_ih).view(T, B, w_ih.shape[1])
            if needs[2]:
                d_w_ih = d_rx.t() @ x.reshape(T * B, x.shape[2])
            if needs[3]:
                d_bias = _sum_tb(d_a)
            d_g_ih, d_g_hh = gain_grads.sum(0).unbind(0)
            d_rec = d_raw[:, :, 1]
        else:
            d_xi = d_a if needs[1] else None
            d_rec = d_a
        if needs[5]:
            d_w_hh = torch.addmm(  # Σ_t da_t^T h_{t-1}, h_{-1} = h0
                d_rec[0].t() @ h0, d_rec[1:].reshape(-1, G).t(), h_all[:-1].reshape(-1, P)
            )
        if w_hr is not None and needs[8]:
            d_cell_h = d_h_cell if d_h_cell is not None else d_h_total
            m = o * tanh_c
            d_w_hr = d_cell_h.reshape(T * B, P).t() @ m.reshape(T * B, H)
        if peephole:
            f_block = 1 if coupled else 2
            if needs[10]:
                d_cf = _sum_tb(grads[..., f_block * H : (f_block + 1) * H] * c_prev)
            if not coupled and needs[9]:
                d_ci = _sum_tb(grads[..., H : 2 * H] * c_prev)
            if needs[11]:
                d_co = _sum_tb(grads[..., :H] * c_new)
        if g_c is not None:
            if needs[13]:
                d_g_c = _sum_tb(d_norm_c * ((c_new - mean_c) * rstd_c))
            if needs[14]:
                d_b_c = _sum_tb(d_norm_c)
        return (
            None, d_xi, d_w_ih, d_bias, d_g_ih if needs[4] else None, d_w_hh,
            dh0 if needs[6] else None, dc0 if needs[7] else None, d_w_hr, d_ci, d_cf, d_co,
            d_g_hh if needs[12] else None, d_g_c, d_b_c, None, None,
        )  # fmt: skip


def _sum_tb(a: Tensor) -> Tensor:
    return a.sum((0, 1))


@lru_cache(maxsize=64)
def _candidate_doubling(k: int, H: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(G,) ones with 2 on the candidate block, the last in the internal order."""
    scale = torch.ones(k * H, device=device, dtype=dtype)
    scale[(k - 1) * H :] = 2
    return scale


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
