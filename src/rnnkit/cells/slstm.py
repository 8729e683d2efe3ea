r"""sLSTM (Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory", arXiv:2405.04517).

An LSTM with an exponential input gate, a sigmoid or exponential forget gate, a normaliser
state ``n`` and a stabiliser state ``m`` that keeps the exponentials finite, and recurrent
weights that are block-diagonal over ``num_heads`` heads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.cells.base import RecurrentCell, _check_size

FORGET_GATES = ("sigmoid", "exp")


class SLSTMState(NamedTuple):
    """State of an sLSTM cell, (B, H) each: ``h`` output, ``c`` cell, ``n`` normaliser,
    ``m`` stabiliser (a log-scale: ``c`` and ``n`` are stored divided by ``e^m``)."""

    h: Tensor
    c: Tensor
    n: Tensor
    m: Tensor


class SLSTMCell(RecurrentCell):
    r"""sLSTM cell (Beck et al. 2024, xLSTM, §2.2 and App. A); gate blocks i, f, z, o.

    Pre-activations with block-diagonal recurrent weights ``R`` (``num_heads`` heads of
    ``d = H / num_heads`` units; head k of ``h_{t-1}`` feeds only head k of every gate)::

        ĩ_t, f̃_t, z̃_t, õ_t = W x_t + R h_{t-1} + b
        log i_t = ĩ_t                                   (exponential input gate)
        log f_t = log σ(f̃_t)   or   f̃_t                 (forget_gate="sigmoid" | "exp")
        m_t  = max(log f_t + m_{t-1}, log i_t)          (stabiliser; m_t = ĩ_t while n_{t-1} = 0)
        i'_t = exp(log i_t − m_t),   f'_t = exp(log f_t + m_{t-1} − m_t)
        c_t  = f'_t ⊙ c_{t-1} + i'_t ⊙ tanh(z̃_t)
        n_t  = f'_t ⊙ n_{t-1} + i'_t
        h_t  = σ(õ_t) ⊙ c_t / n_t

    ``c`` and ``n`` are the paper's cell and normaliser states scaled by ``e^{-m_t}``; ``h``
    does not depend on ``m`` (it cancels in ``c / n``), which only keeps every exponential
    ≤ 1. While ``n_{t-1} = 0`` (the zero initial state) the stabiliser starts at ``ĩ_t``, so
    ``i'_t = 1`` and ``n_t ≥ 1`` from then on (as the xLSTM reference code does), and ``f'_t``
    is clamped to ≤ 1 (it multiplies the zero state there) — ``h`` stays finite for any input;
    ``|h_t| ≤ 1`` since ``|c_t| ≤ n_t``.

    Init (``init="rnnkit"``): input weights Glorot per gate, each head's recurrent block
    orthogonal, biases zero except the forget gate's, ``linspace(3, 6)`` over each head's units
    — the xLSTM paper's forget-bias initialisation, long memory from the start.

    Shapes: B batch, I ``input_size``, H ``hidden_size``, d = H / ``num_heads``.
        - ``x_t``: (B, I); ``state``: ``SLSTMState(h, c, n, m)``, (B, H) each; ``y_t = h_t``.
        - Parameters: ``weight_ih`` (4H, I); ``weight_hh`` (4H, d), rows ``[g·H + k·d, …)``
          the (d, d) block of gate g and head k; ``bias_ih`` (4H).

    Example::

        >>> cell = SLSTMCell(8, 16, num_heads=4, forget_gate="exp")
        >>> y, state = cell(torch.randn(4, 8) * 100)
        >>> y.shape, state._fields, bool(torch.isfinite(y).all())
        (torch.Size([4, 16]), ('h', 'c', 'n', 'm'), True)
    """

    state_type = SLSTMState
    gate_blocks = ("input", "forget", "candidate", "output")
    forget_gate = "forget"
    input_gate = "input"
    FORGET_BIAS_RANGE = (3.0, 6.0)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        num_heads: int = 1,
        forget_gate: str = "sigmoid",
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
        self.num_heads = _check_size("num_heads", num_heads)
        if hidden_size % self.num_heads:
            raise ValueError(
                f"num_heads must divide hidden_size, got num_heads={num_heads} and "
                f"hidden_size={hidden_size}"
            )
        if forget_gate not in FORGET_GATES:
            raise ValueError(
                f"forget_gate must be one of {', '.join(FORGET_GATES)}; got {forget_gate!r}"
            )
        self.forget_gate_activation = forget_gate
        self._finish_init()

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def sigmoid_gates(self) -> tuple[str, ...]:
        return ("forget", "output") if self.forget_gate_activation == "sigmoid" else ("output",)

    def state_sizes(self) -> tuple[int, ...]:
        return (self.hidden_size,) * 4

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        H, I = self.hidden_size, self.input_size
        shapes = {"weight_ih": (4 * H, I), "weight_hh": (4 * H, self.head_size)}
        if self.bias:
            shapes["bias_ih"] = (4 * H,)
        return shapes

    def parameter_roles(self) -> dict[str, str]:
        roles = {"weight_ih": "input", "weight_hh": "recurrent"}
        if self.bias:
            roles["bias_ih"] = "bias"
        return roles

    def recurrent_blocks(self, w: Tensor) -> list[Tensor]:
        """The square (d, d) blocks of ``weight_hh``, one per (gate, head)."""
        return list(w.split(self.head_size, dim=0))

    def initial_forget_bias(self, like: Tensor) -> Tensor:
        """``linspace(3, 6)`` over each head's units (Beck et al. 2024)."""
        low, high = self.FORGET_BIAS_RANGE
        head = torch.linspace(low, high, self.head_size, dtype=like.dtype, device=like.device)
        return head.repeat(self.num_heads)

    def recurrent(self, h: Tensor, w_hh: Tensor) -> Tensor:
        """``R h`` for the block-diagonal R stored as ``w_hh`` (4H, d): (B, H) -> (B, 4H)."""
        B, k, d = h.shape[0], self.num_heads, self.head_size
        if k == 1:
            return h @ w_hh.t()
        r = torch.einsum("bki,gkoi->bgko", h.view(B, k, d), w_hh.view(4, k, d, d))
        return r.reshape(B, 4 * self.hidden_size)

    def log_gates(self, x: Tensor, state: SLSTMState, weights: Mapping[str, Tensor]):
        """``(log i, log f, z̃, õ)`` pre-stabilisation, (B, H) each."""
        a = x @ weights["weight_ih"].t() + self.recurrent(state.h, weights["weight_hh"])
        if self.bias:
            a = a + weights["bias_ih"]
        a_i, a_f, a_z, a_o = a.chunk(4, dim=1)
        log_f = a_f if self.forget_gate_activation == "exp" else F.logsigmoid(a_f)
        return a_i, log_f, a_z, a_o

    def stabilise(self, log_i: Tensor, log_f: Tensor, state: SLSTMState):
        """``(m_t, i'_t, f'_t)`` from the log gates and the previous stabiliser."""
        m_prev = state.m
        m = torch.where(state.n == 0, log_i, torch.maximum(log_f + m_prev, log_i))
        # log f + m_{t-1} − m_t ≤ 0 by the max, except while n_{t-1} = 0, where f' only scales
        # the zero state: clamping keeps e^{·} from overflowing to inf (inf · 0 = NaN).
        return m, (log_i - m).exp(), (log_f + m_prev - m).clamp_max(0).exp()

    def gates(self, x: Tensor, state: SLSTMState, weights: Mapping[str, Tensor]):
        """``{"input": i'_t, "forget": f'_t, "candidate": tanh(z̃_t), "output": σ(õ_t)}``:
        the stabilised gates that multiply the (scaled) state, (B, H) each."""
        log_i, log_f, a_z, a_o = self.log_gates(x, state, weights)
        _, i, f = self.stabilise(log_i, log_f, state)
        return {"input": i, "forget": f, "candidate": a_z.tanh(), "output": a_o.sigmoid()}

    def step(self, x: Tensor, state: SLSTMState, weights: Mapping[str, Tensor]):
        log_i, log_f, a_z, a_o = self.log_gates(x, state, weights)
        m, i, f = self.stabilise(log_i, log_f, state)
        c = f * state.c + i * a_z.tanh()
        n = f * state.n + i
        h = a_o.sigmoid() * c / n
        return h, SLSTMState(h, c, n, m)

    def fused_kernel(self) -> Callable:
        from rnnkit.backends.fused_slstm import slstm_scan

        return slstm_scan

    def options_repr(self) -> str:
        text = "" if self.num_heads == 1 else f", num_heads={self.num_heads}"
        if self.forget_gate_activation != "sigmoid":
            text += f", forget_gate={self.forget_gate_activation!r}"
        return text
