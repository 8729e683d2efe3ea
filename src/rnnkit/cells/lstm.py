"""Long short-term memory cell with the variants the literature uses, as options of one cell."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.cells.base import LSTMState, RecurrentCell, _check_size

LAYER_NORM_EPS = 1e-5


def block_layer_norm(a: Tensor, gain: Tensor, blocks: int) -> Tensor:
    """Normalise each of ``blocks`` equal slices of the last dim separately, then scale by ``gain``.

    ``a``: (..., blocks*H); ``gain``: (blocks*H,). No shift: the cell's bias plays that role.
    """
    shape = a.shape
    a = a.reshape(*shape[:-1], blocks, shape[-1] // blocks)
    a = F.layer_norm(a, a.shape[-1:], eps=LAYER_NORM_EPS)
    return a.reshape(shape) * gain


class LSTMCell(RecurrentCell):
    r"""LSTM cell; any combination of peephole, coupled gates, layer norm, projection.

    Gate blocks in torch's order i, f, g, o (``coupled=True`` drops i: f, g, o)::

        a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh          (pre-activations, G = 4H or 3H)
        i_t = σ(a_i + w_ci ⊙ c_{t-1})                          (coupled: i_t = 1 - f_t)
        f_t = σ(a_f + forget_bias + w_cf ⊙ c_{t-1})
        g_t = tanh(a_g)
        c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
        o_t = σ(a_o + w_co ⊙ c_t)
        h_t = W_hr (o_t ⊙ tanh(c_t))                           (W_hr only with proj_size > 0)

    Options:
        peephole: diagonal weights ``w_ci, w_cf`` from c_{t-1} and ``w_co`` from c_t
            (Gers & Schmidhuber 2000); without peephole these terms are absent.
        coupled: coupled input and forget gate (CIFG, Greff et al. 2017): ``i = 1 - f``,
            no input-gate weights, so ``weight_ih`` is (3H, I).
        layer_norm: Ba et al. 2016 — ``W_ih x`` and ``W_hh h`` are each normalised per gate
            block (own gains, the biases shift), and ``h_t = o_t ⊙ tanh(LN(c_t))``; the carried
            ``c_t`` stays unnormalised.
        proj_size: P > 0 projects h_t to P features (as ``torch.nn.LSTM``).
        forget_bias: a constant added to the forget pre-activation at every step (TensorFlow's
            ``forget_bias``; 0 by default — the default *init* already sets the bias to 1).

    Shapes: B batch, I ``input_size``, H ``hidden_size``, P ``proj_size`` or H, G gate rows.
        - ``x_t``: (B, I); ``state``: ``LSTMState(h=(B, P), c=(B, H))``; ``y_t = h_t``: (B, P).
        - Parameters: ``weight_ih`` (G, I), ``weight_hh`` (G, P), ``bias_ih`` (G),
          ``bias_hh`` (G), ``weight_hr`` (P, H); peephole ``weight_ci``, ``weight_cf``,
          ``weight_co`` (H); layer norm ``layer_norm_ih_weight``, ``layer_norm_hh_weight`` (G),
          ``layer_norm_c_weight``, ``layer_norm_c_bias`` (H).

    Example::

        >>> cell = LSTMCell(8, 16, peephole=True, layer_norm=True)
        >>> y, state = cell(torch.randn(4, 8))
        >>> y.shape, state.c.shape
        (torch.Size([4, 16]), torch.Size([4, 16]))
    """

    state_type = LSTMState
    sigmoid_gates = ("input", "forget", "output")
    forget_gate = "forget"
    default_forget_bias = 1.0  # Jozefowicz et al. 2015

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        proj_size: int = 0,
        peephole: bool = False,
        coupled: bool = False,
        layer_norm: bool = False,
        forget_bias: float = 0.0,
        create_parameters: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(
            input_size,
            hidden_size,
            bias,
            create_parameters=create_parameters,
            device=device,
            dtype=dtype,
        )
        self.proj_size = _check_size("proj_size", proj_size, minimum=0)
        if self.proj_size >= hidden_size:
            raise ValueError(
                f"proj_size must be smaller than hidden_size, got proj_size={proj_size} "
                f"and hidden_size={hidden_size}"
            )
        self.peephole = bool(peephole)
        self.coupled = bool(coupled)
        self.layer_norm = bool(layer_norm)
        self.forget_bias = float(forget_bias)
        self._finish_init()

    @property
    def output_size(self) -> int:
        return self.proj_size or self.hidden_size

    @property
    def gate_blocks(self) -> tuple[str, ...]:
        """torch's order i, f, g, o; coupled drops i."""
        blocks = ("input", "forget", "candidate", "output")
        return blocks[1:] if self.coupled else blocks

    @property
    def input_gate(self) -> str | None:
        return None if self.coupled else "input"

    def state_sizes(self) -> tuple[int, ...]:
        return (self.output_size, self.hidden_size)

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        H, I, P = self.hidden_size, self.input_size, self.output_size
        G = self.gate_count * H
        shapes = {"weight_ih": (G, I), "weight_hh": (G, P)}
        if self.bias:
            shapes.update(bias_ih=(G,), bias_hh=(G,))
        if self.proj_size:
            shapes["weight_hr"] = (P, H)
        if self.peephole:
            if not self.coupled:
                shapes["weight_ci"] = (H,)
            shapes.update(weight_cf=(H,), weight_co=(H,))
        if self.layer_norm:
            shapes.update(
                layer_norm_ih_weight=(G,),
                layer_norm_hh_weight=(G,),
                layer_norm_c_weight=(H,),
                layer_norm_c_bias=(H,),
            )
        return shapes

    def parameter_roles(self) -> dict[str, str]:
        roles = {"weight_ih": "input", "weight_hh": "recurrent"}
        for name in self.parameter_shapes():
            if name.startswith("bias"):
                roles[name] = "bias"
            elif name == "weight_hr":
                roles[name] = "projection"
            elif name.startswith("weight_c"):
                roles[name] = "peephole"
            elif name.startswith("layer_norm"):
                roles[name] = "gain" if name.endswith("_weight") else "shift"
        return roles

    def native_kernel(self) -> Callable:
        return torch.lstm

    def native_blocker(self) -> str | None:
        for option in ("peephole", "coupled", "layer_norm"):
            if getattr(self, option):
                return f"{option}=True"
        if self.forget_bias and not self.bias:
            return f"forget_bias={self.forget_bias} with bias=False"
        return None

    def native_weights(self, weights: Mapping[str, Tensor]) -> list[Tensor]:
        """torch's flat order, with ``forget_bias`` folded into the forget block of ``bias_ih``."""
        weights = dict(weights)
        if self.forget_bias:
            H, k = self.hidden_size, self.forget_gate_index
            shift = torch.zeros_like(weights["bias_ih"])
            shift[k * H : (k + 1) * H] = self.forget_bias
            weights["bias_ih"] = weights["bias_ih"] + shift
        return list(weights.values())

    def onnx_blocker(self) -> str | None:
        if self.layer_norm:
            return "layer_norm=True"
        if self.proj_size:
            return f"proj_size={self.proj_size}"
        return None

    def onnx_recurrence(self, weights: Mapping[str, Tensor]):
        """ONNX's ``LSTM``: blocks ``iofc``; ``forget_bias`` folded into ``Wb_f``; coupled as
        ``i = σ(-a_f) = 1 - f`` (the input block is the negated forget block, peephole too)."""
        from rnnkit.backends.onnx_ops import OnnxRecurrence

        H, G = self.hidden_size, self.gate_count * self.hidden_size
        w_ih, w_hh = weights["weight_ih"], weights["weight_hh"]
        b_ih = weights["bias_ih"] if self.bias else w_ih.new_zeros(G)
        b_hh = weights["bias_hh"] if self.bias else w_ih.new_zeros(G)
        if self.forget_bias:
            k = self.forget_gate_index
            b_ih = torch.cat([b_ih[: k * H], b_ih[k * H : (k + 1) * H] + self.forget_bias,
                              b_ih[(k + 1) * H :]])  # fmt: skip

        def iofc(a: Tensor) -> Tensor:
            blocks = [a[k * H : (k + 1) * H] for k in range(self.gate_count)]  # slices fold
            if self.coupled:
                f, g, o = blocks
                i = -f
            else:
                i, f, g, o = blocks
            return torch.cat([i, o, f, g])

        peephole = None
        if self.peephole:
            ci = -weights["weight_cf"] if self.coupled else weights["weight_ci"]
            peephole = torch.cat([ci, weights["weight_co"], weights["weight_cf"]])
        b = torch.cat([iofc(b_ih), iofc(b_hh)])
        return OnnxRecurrence("LSTM", iofc(w_ih), iofc(w_hh), b, peephole)

    def fused_kernel(self) -> Callable:
        from rnnkit.backends.fused_lstm import lstm_scan

        return lstm_scan

    def gates(self, x: Tensor, state: LSTMState, weights: Mapping[str, Tensor]):
        """``{"input": i_t, "forget": f_t, "candidate": g_t, "output": o_t}``, (B, H) each.

        Coupled: ``input`` is ``1 - f_t``. With peephole ``o_t`` reads ``c_t``, computed here.
        """
        c = state.c
        k = self.gate_count
        a_x = x @ weights["weight_ih"].t()
        a_h = state.h @ weights["weight_hh"].t()
        if self.layer_norm:
            a_x = block_layer_norm(a_x, weights["layer_norm_ih_weight"], k)
            a_h = block_layer_norm(a_h, weights["layer_norm_hh_weight"], k)
        a = a_x + a_h
        if self.bias:
            a = a + weights["bias_ih"] + weights["bias_hh"]
        if self.coupled:
            a_f, a_g, a_o = a.chunk(3, dim=1)
        else:
            a_i, a_f, a_g, a_o = a.chunk(4, dim=1)
        if self.forget_bias:
            a_f = a_f + self.forget_bias
        if self.peephole:
            a_f = a_f + weights["weight_cf"] * c
            if not self.coupled:
                a_i = a_i + weights["weight_ci"] * c
        f = a_f.sigmoid()
        i = 1 - f if self.coupled else a_i.sigmoid()
        g = a_g.tanh()
        if self.peephole:
            a_o = a_o + weights["weight_co"] * (f * c + i * g)
        return {"input": i, "forget": f, "candidate": g, "output": a_o.sigmoid()}

    def step(self, x: Tensor, state: LSTMState, weights: Mapping[str, Tensor]):
        gates = self.gates(x, state, weights)
        c_new = gates["forget"] * state.c + gates["input"] * gates["candidate"]
        c_out = c_new
        if self.layer_norm:
            c_out = F.layer_norm(
                c_new,
                c_new.shape[-1:],
                weights["layer_norm_c_weight"],
                weights["layer_norm_c_bias"],
                eps=LAYER_NORM_EPS,
            )
        h_new = gates["output"] * c_out.tanh()
        if self.proj_size:
            h_new = h_new @ weights["weight_hr"].t()
        return h_new, LSTMState(h_new, c_new)

    def options_repr(self) -> str:
        text = ""
        if self.proj_size:
            text += f", proj_size={self.proj_size}"
        for name in ("peephole", "coupled", "layer_norm"):
            if getattr(self, name):
                text += f", {name}=True"
        if self.forget_bias:
            text += f", forget_bias={self.forget_bias}"
        return text
