r"""ONNX's own recurrent operators (``LSTM``, ``GRU``, ``RNN``) as the lowering of rnnkit layers.

ONNX has one node per recurrent layer that runs the whole sequence, with per-sequence lengths
(``sequence_lens``), both directions and, for the LSTM, peepholes (``P``). Runtimes execute it
with their own fused kernels, and model tools recognise it. Every configuration those operators
can express lowers to them when :func:`rnnkit.export.export_onnx` writes a model; the rest
(layer norm, ``proj_size``, zoneout, Elman nonlinearities other than tanh and relu, families
without an operator) keeps the traced scan of :mod:`rnnkit.backends.exportable`.

A cell says whether and how it maps with :meth:`~rnnkit.cells.RecurrentCell.onnx_recurrence`:
an :class:`OnnxRecurrence` with the weights in the operator's layout. The operators in
ONNX's notation (gate blocks ``iofc`` for the LSTM, ``zrh`` for the GRU)::

    LSTM  i = σ(W_i x + R_i h + Wb_i + Rb_i + P_i ⊙ c)    f likewise with P_f
          c̃ = tanh(W_c x + R_c h + Wb_c + Rb_c)       c' = f ⊙ c + i ⊙ c̃
          o = σ(W_o x + R_o h + Wb_o + Rb_o + P_o ⊙ c')  h' = o ⊙ tanh(c')
    GRU   z = σ(W_z x + R_z h + Wb_z + Rb_z)             r likewise
          h̃ = tanh(W_h x + R_h (r ⊙ h) + Rb_h + Wb_h)      (linear_before_reset = 0)
          h̃ = tanh(W_h x + r ⊙ (R_h h + Rb_h) + Wb_h)      (linear_before_reset = 1)
          h' = (1 - z) ⊙ h̃ + z ⊙ h
    RNN   h' = f(W x + R h + Wb + Rb)                     f: Tanh or Relu

rnnkit's coupled LSTM (``i = 1 - f``) maps exactly without ONNX's ``input_forget`` (whose
meaning runtimes do not agree on): its input block is the negated forget block, since
``σ(-a) = 1 - σ(a)``.

In the exported program each layer is one call of a torch custom operator
(``torch.ops.rnnkit.onnx_lstm`` …) with exactly the ONNX operator's semantics — implemented
here in readable torch, which is what an ``ExportedProgram`` runs and what the tests compare
against the layers — and :func:`translations` tells the ONNX exporter to write it as the ONNX
node. Shapes as ONNX: ``x`` (T, B, I); ``w`` (D, G·H, I); ``r`` (D, G·H, H); ``b`` (D, 2·G·H);
``p`` (D, 3H); ``lengths`` (B,) int32 or None; states (D, B, H); ``y`` (T, D, B, H).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

DIRECTIONS = {1: "forward", 2: "bidirectional"}
ACTIVATIONS = {"tanh": "Tanh", "relu": "Relu"}

_lowering = False


@contextlib.contextmanager
def lowering():
    """Within this context an exported layer lowers to ONNX's operators where it can."""
    global _lowering
    previous, _lowering = _lowering, True
    try:
        yield
    finally:
        _lowering = previous


@dataclass
class OnnxRecurrence:
    """One (layer, direction) in an ONNX recurrent operator's layout.

    ``op``: ``"LSTM"``, ``"GRU"`` or ``"RNN"``; ``w`` (G·H, I), ``r`` (G·H, H), ``b`` (2·G·H:
    ``Wb`` then ``Rb``), ``p`` (3H, LSTM peepholes ``iof``) or None; ``attributes``: the
    operator's other attributes (``linear_before_reset``, ``activation``)."""

    op: str
    w: Tensor
    r: Tensor
    b: Tensor
    p: Tensor | None = None
    attributes: dict = field(default_factory=dict)


def blocker(layer) -> str | None:
    """Why ``layer`` cannot lower to an ONNX operator (None: it can)."""
    if layer.training:
        return "training mode"
    if any(layer.zoneout):
        return "zoneout"
    for cell in layer._cells:
        reason = cell.onnx_blocker()
        if reason:
            return reason
    return None


def lowers(layer) -> bool:
    """True inside :func:`lowering` for a layer that ONNX's operators express."""
    return _lowering and blocker(layer) is None


def forward(layer, x: Tensor, state: tuple[Tensor, ...], lengths: Tensor | None):
    """The layer as one ONNX operator call per stacked layer; ``x`` (T, B, I) time-major.
    Returns ``(output (T, B, D·H), final state tuple)`` as the other backends do."""
    T, B = x.shape[0], x.shape[1]
    D = layer.num_directions
    valid = None
    sequence_lens = None
    if lengths is not None:
        valid = (torch.arange(T).unsqueeze(1) < lengths.unsqueeze(0)).to(x.device, x.dtype)
        valid = valid.unsqueeze(2)
        sequence_lens = lengths.to(device=x.device, dtype=torch.int32)
    direction = DIRECTIONS[D]
    finals = []
    for index, cell in enumerate(layer._cells):
        layer_input = x
        parts = [cell.onnx_recurrence(layer.layer_weights(index, d)) for d in range(D)]
        w, r, b = (torch.stack([getattr(p, k) for p in parts]) for k in ("w", "r", "b"))
        rows = slice(index * D, (index + 1) * D)
        initial = [s[rows] for s in state]
        first = parts[0]
        H = cell.hidden_size
        if first.op == "LSTM":
            p = None if first.p is None else torch.stack([part.p for part in parts])
            y, *final = torch.ops.rnnkit.onnx_lstm(
                x, w, r, b, sequence_lens, initial[0], initial[1], p, direction, H
            )
        elif first.op == "GRU":
            lbr = first.attributes["linear_before_reset"]
            y, *final = torch.ops.rnnkit.onnx_gru(
                x, w, r, b, sequence_lens, initial[0], direction, H, lbr
            )
        else:
            activation = first.attributes["activation"]
            y, *final = torch.ops.rnnkit.onnx_rnn(
                x, w, r, b, sequence_lens, initial[0], direction, H, activation
            )
        x = y.permute(0, 2, 1, 3).reshape(T, B, D * H)
        finals.append(tuple(final))
        x = layer._between_layers(x, index, valid, layer_input)
    return x, tuple(torch.cat(f, 0) for f in zip(*finals))


# -- the operators, in readable torch ---------------------------------------------------------
def _reverse(x: Tensor, lengths: Tensor) -> Tensor:
    """Each sequence of a (T, B, F) tensor reversed within its length; padding stays."""
    t = torch.arange(x.shape[0], device=x.device).unsqueeze(1)
    L = lengths.long().unsqueeze(0)
    index = torch.where(t < L, L - 1 - t, t)
    return x.gather(0, index.unsqueeze(2).expand_as(x))


def _run_directions(x: Tensor, lengths: Tensor | None, initial: Sequence[Tensor], step):
    """``step(d, x_t, state) -> state`` over time for each direction d of the (D, B, ·)
    ``initial`` fields, as ONNX runs it: the reverse direction reads each sequence backwards
    from its last valid step; past a length the state holds and the output is zero.
    Returns ``(y (T, D, B, H), final fields (D, B, ·))``."""
    T, B = x.shape[0], x.shape[1]
    if lengths is None:
        lengths = torch.full((B,), T, dtype=torch.int32, device=x.device)
    active = torch.arange(T, device=x.device).unsqueeze(1) < lengths.long().unsqueeze(0)
    active = active.to(x.dtype).unsqueeze(2)  # (T, B, 1)
    ys, finals = [], []
    for d in range(initial[0].shape[0]):
        sequence = x if d == 0 else _reverse(x, lengths)
        state = tuple(s[d] for s in initial)
        out = []
        for t in range(T):
            new = step(d, sequence[t], state)
            k = active[t]
            state = tuple(k * n + (1 - k) * s for n, s in zip(new, state))
            out.append(state[0] * k)
        y = torch.stack(out)
        ys.append(y if d == 0 else _reverse(y, lengths))
        finals.append(state)
    return torch.stack(ys, 1), [torch.stack(f) for f in zip(*finals)]


def _outputs_like(x: Tensor, h0: Tensor, hidden_size: int) -> Tensor:
    """An empty ``y`` (T, D, B, H) for the operators' fake (shape-only) implementations."""
    return x.new_empty(x.shape[0], h0.shape[0], h0.shape[1], hidden_size)


@torch.library.custom_op("rnnkit::onnx_lstm", mutates_args=())
def onnx_lstm(
    x: Tensor,
    w: Tensor,
    r: Tensor,
    b: Tensor,
    lengths: Tensor | None,
    h0: Tensor,
    c0: Tensor,
    p: Tensor | None,
    direction: str,
    hidden_size: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """ONNX ``LSTM`` (``input_forget = 0``, default activations)."""
    H = hidden_size

    def step(d, x_t, state):
        h, c = state
        a = x_t @ w[d].t() + h @ r[d].t() + b[d, : 4 * H] + b[d, 4 * H :]
        a_i, a_o, a_f, a_c = a.split(H, dim=1)
        if p is not None:
            a_i = a_i + p[d, :H] * c
            a_f = a_f + p[d, 2 * H :] * c
        c_new = a_f.sigmoid() * c + a_i.sigmoid() * a_c.tanh()
        if p is not None:
            a_o = a_o + p[d, H : 2 * H] * c_new
        return a_o.sigmoid() * c_new.tanh(), c_new

    y, (h, c) = _run_directions(x, lengths, (h0, c0), step)
    return y, h, c


@onnx_lstm.register_fake
def _(x, w, r, b, lengths, h0, c0, p, direction, hidden_size):
    return _outputs_like(x, h0, hidden_size), torch.empty_like(h0), torch.empty_like(c0)


@torch.library.custom_op("rnnkit::onnx_gru", mutates_args=())
def onnx_gru(
    x: Tensor,
    w: Tensor,
    r: Tensor,
    b: Tensor,
    lengths: Tensor | None,
    h0: Tensor,
    direction: str,
    hidden_size: int,
    linear_before_reset: int,
) -> tuple[Tensor, Tensor]:
    """ONNX ``GRU`` (default activations)."""
    H = hidden_size

    def step(d, x_t, state):
        (h,) = state
        wb, rb = b[d, : 3 * H], b[d, 3 * H :]
        a_x = x_t @ w[d].t() + wb
        r_z, r_r, r_h = r[d].split(H, dim=0)
        x_z, x_r, x_h = a_x.split(H, dim=1)
        z = (x_z + h @ r_z.t() + rb[:H]).sigmoid()
        reset = (x_r + h @ r_r.t() + rb[H : 2 * H]).sigmoid()
        if linear_before_reset:
            candidate = (x_h + reset * (h @ r_h.t() + rb[2 * H :])).tanh()
        else:
            candidate = (x_h + (reset * h) @ r_h.t() + rb[2 * H :]).tanh()
        return ((1 - z) * candidate + z * h,)

    y, (h,) = _run_directions(x, lengths, (h0,), step)
    return y, h


@onnx_gru.register_fake
def _(x, w, r, b, lengths, h0, direction, hidden_size, linear_before_reset):
    return _outputs_like(x, h0, hidden_size), torch.empty_like(h0)


@torch.library.custom_op("rnnkit::onnx_rnn", mutates_args=())
def onnx_rnn(
    x: Tensor,
    w: Tensor,
    r: Tensor,
    b: Tensor,
    lengths: Tensor | None,
    h0: Tensor,
    direction: str,
    hidden_size: int,
    activation: str,
) -> tuple[Tensor, Tensor]:
    """ONNX ``RNN`` with one activation (``Tanh`` or ``Relu``) for every direction."""
    H = hidden_size
    f = torch.tanh if activation == "Tanh" else torch.relu

    def step(d, x_t, state):
        (h,) = state
        return (f(x_t @ w[d].t() + h @ r[d].t() + b[d, :H] + b[d, H:]),)

    y, (h,) = _run_directions(x, lengths, (h0,), step)
    return y, h


@onnx_rnn.register_fake
def _(x, w, r, b, lengths, h0, direction, hidden_size, activation):
    return _outputs_like(x, h0, hidden_size), torch.empty_like(h0)


# -- what the ONNX exporter writes for them ----------------------------------------------------
def translations() -> dict:
    """``custom_translation_table`` for :func:`torch.onnx.export`: each operator above as the
    ONNX node of the same name (onnxscript picks the node's version from the export opset)."""
    from onnxscript import opset18 as op

    def lstm(x, w, r, b, lengths, h0, c0, p, direction: str, hidden_size: int):
        return op.LSTM(x, w, r, b, lengths, h0, c0, p, direction=direction,
                       hidden_size=hidden_size)  # fmt: skip

    def gru(x, w, r, b, lengths, h0, direction: str, hidden_size: int, linear_before_reset: int):
        return op.GRU(x, w, r, b, lengths, h0, direction=direction, hidden_size=hidden_size,
                      linear_before_reset=linear_before_reset)  # fmt: skip

    def rnn(x, w, r, b, lengths, h0, direction: str, hidden_size: int, activation: str):
        directions = 2 if direction == "bidirectional" else 1
        return op.RNN(x, w, r, b, lengths, h0, direction=direction, hidden_size=hidden_size,
                      activations=[activation] * directions)  # fmt: skip

    return {
        torch.ops.rnnkit.onnx_lstm.default: lstm,
        torch.ops.rnnkit.onnx_gru.default: gru,
        torch.ops.rnnkit.onnx_rnn.default: rnn,
    }
