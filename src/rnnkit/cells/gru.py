"""Gated recurrent unit, in both published formulations."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from rnnkit.cells.base import HiddenState, RecurrentCell


class GRUCell(RecurrentCell):
    r"""GRU cell; gate blocks in torch's order r, z, n.

    ``reset_after=True`` (torch / cuDNN; default)::

        r_t = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
        z_t = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
        n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn))
        h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}

    ``reset_after=False`` (Cho et al. 2014): the reset gate scales the state *before* the
    recurrent matmul, ``n_t = tanh(W_in x_t + b_in + W_hn (r_t ⊙ h_{t-1}) + b_hn)``.

    Shapes: B batch, I ``input_size``, H ``hidden_size``.
        - ``x_t``: (B, I); ``state``: ``HiddenState(h=(B, H))``; ``y_t = h_t``: (B, H).
        - Parameters: ``weight_ih`` (3H, I), ``weight_hh`` (3H, H), ``bias_ih`` (3H),
          ``bias_hh`` (3H) — the same names and shapes as ``torch.nn.GRUCell``.

    Example::

        >>> cell = GRUCell(8, 16, reset_after=False)
        >>> y, state = cell(torch.randn(4, 8))
        >>> y.shape
        torch.Size([4, 16])
    """

    state_type = HiddenState
    gate_blocks = ("reset", "update", "candidate")
    sigmoid_gates = ("reset", "update")
    # h_t = (1 - z_t) n_t + z_t h_{t-1}: the update gate z keeps the previous state.
    forget_gate = "update"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        reset_after: bool = True,
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
        self.reset_after = bool(reset_after)
        self._finish_init()

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        H, I = self.hidden_size, self.input_size
        shapes = {"weight_ih": (3 * H, I), "weight_hh": (3 * H, H)}
        if self.bias:
            shapes.update(bias_ih=(3 * H,), bias_hh=(3 * H,))
        return shapes

    def parameter_roles(self) -> dict[str, str]:
        roles = {"weight_ih": "input", "weight_hh": "recurrent"}
        if self.bias:
            roles.update(bias_ih="bias", bias_hh="bias")
        return roles

    def native_kernel(self) -> Callable:
        return torch.gru

    def native_blocker(self) -> str | None:
        return None if self.reset_after else "reset_after=False"

    def onnx_blocker(self) -> str | None:
        return None

    def onnx_recurrence(self, weights: Mapping[str, Tensor]):
        """ONNX's ``GRU``: blocks ``zrh``; ``reset_after`` is ``linear_before_reset``."""
        from rnnkit.backends.onnx_ops import OnnxRecurrence

        H = self.hidden_size
        w_ih, w_hh = weights["weight_ih"], weights["weight_hh"]
        zeros = w_ih.new_zeros(3 * H)
        b_ih = weights["bias_ih"] if self.bias else zeros
        b_hh = weights["bias_hh"] if self.bias else zeros

        def zrh(a: Tensor) -> Tensor:
            return torch.cat([a[H : 2 * H], a[:H], a[2 * H :]])  # r, z, n -> z, r, n

        b = torch.cat([zrh(b_ih), zrh(b_hh)])
        lbr = {"linear_before_reset": int(self.reset_after)}
        return OnnxRecurrence("GRU", zrh(w_ih), zrh(w_hh), b, attributes=lbr)

    def fused_kernel(self) -> Callable:
        from rnnkit.backends.fused_gru import gru_scan

        return gru_scan

    def gates(self, x: Tensor, state: HiddenState, weights: Mapping[str, Tensor]):
        """``{"reset": r_t, "update": z_t, "candidate": n_t}``, (B, H) each."""
        h = state.h
        gi = x @ weights["weight_ih"].t()
        if self.bias:
            gi = gi + weights["bias_ih"]
        i_r, i_z, i_n = gi.chunk(3, dim=1)
        w_hh = weights["weight_hh"]
        b_hh = weights.get("bias_hh") if self.bias else None
        if self.reset_after:
            gh = h @ w_hh.t()
            if b_hh is not None:
                gh = gh + b_hh
            h_r, h_z, h_n = gh.chunk(3, dim=1)
            r = (i_r + h_r).sigmoid()
            z = (i_z + h_z).sigmoid()
            n = (i_n + r * h_n).tanh()
        else:
            H = self.hidden_size
            gh = h @ w_hh[: 2 * H].t()
            if b_hh is not None:
                gh = gh + b_hh[: 2 * H]
            h_r, h_z = gh.chunk(2, dim=1)
            r = (i_r + h_r).sigmoid()
            z = (i_z + h_z).sigmoid()
            h_n = (r * h) @ w_hh[2 * H :].t()
            if b_hh is not None:
                h_n = h_n + b_hh[2 * H :]
            n = (i_n + h_n).tanh()
        return {"reset": r, "update": z, "candidate": n}

    def step(self, x: Tensor, state: HiddenState, weights: Mapping[str, Tensor]):
        gates = self.gates(x, state, weights)
        z, n = gates["update"], gates["candidate"]
        h_new = n + z * (state.h - n)  # (1 - z) n + z h
        return h_new, HiddenState(h_new)

    def options_repr(self) -> str:
        return "" if self.reset_after else ", reset_after=False"
