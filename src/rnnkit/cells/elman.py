"""Elman (vanilla) recurrent cell."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.cells.base import HiddenState, RecurrentCell

# Looked up by name at each step, so a cell holds only its name and pickles (torch.save of a
# whole model) without functions.
NONLINEARITIES = {
    "tanh": torch.tanh,
    "relu": F.relu,
    "leaky_relu": F.leaky_relu,  # negative slope 0.01
    "elu": F.elu,  # alpha 1
    "sigmoid": torch.sigmoid,
}


class ElmanCell(RecurrentCell):
    r"""Elman recurrent cell (``torch.nn.RNNCell`` with more nonlinearities).

    .. math::
        h_t = \phi(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})

    with :math:`\phi` one of ``tanh``, ``relu``, ``leaky_relu`` (slope 0.01), ``elu`` (alpha 1),
    ``sigmoid``. ReLU with identity ``W_hh`` and zero bias is the IRNN (Le et al. 2015).

    Shapes: B batch, I ``input_size``, H ``hidden_size``.
        - ``x_t``: (B, I); ``state``: ``HiddenState(h=(B, H))``; ``y_t = h_t``: (B, H).
        - Parameters: ``weight_ih`` (H, I), ``weight_hh`` (H, H), ``bias_ih`` (H), ``bias_hh`` (H).

    Example::

        >>> cell = ElmanCell(8, 16, nonlinearity="relu")
        >>> y, state = cell(torch.randn(4, 8))
        >>> y.shape, state.h.shape
        (torch.Size([4, 16]), torch.Size([4, 16]))
    """

    state_type = HiddenState
    gate_blocks = ("hidden",)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        *,
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
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(
                f"nonlinearity must be one of {', '.join(NONLINEARITIES)}; got {nonlinearity!r}"
            )
        self.nonlinearity = nonlinearity
        self._finish_init()

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        H, I = self.hidden_size, self.input_size
        shapes = {"weight_ih": (H, I), "weight_hh": (H, H)}
        if self.bias:
            shapes.update(bias_ih=(H,), bias_hh=(H,))
        return shapes

    def parameter_roles(self) -> dict[str, str]:
        roles = {"weight_ih": "input", "weight_hh": "recurrent"}
        if self.bias:
            roles.update(bias_ih="bias", bias_hh="bias")
        return roles

    def native_kernel(self) -> Callable | None:
        # torch.nn.RNN has kernels for tanh and relu only.
        return {"tanh": torch.rnn_tanh, "relu": torch.rnn_relu}.get(self.nonlinearity)

    def native_blocker(self) -> str | None:
        return None if self.native_kernel() else f"nonlinearity={self.nonlinearity!r}"

    def onnx_blocker(self) -> str | None:
        from rnnkit.backends.onnx_ops import ACTIVATIONS

        if self.nonlinearity not in ACTIVATIONS:
            return f"nonlinearity={self.nonlinearity!r}"
        return None

    def onnx_recurrence(self, weights: Mapping[str, Tensor]):
        """ONNX's ``RNN`` with the cell's nonlinearity as its activation."""
        from rnnkit.backends.onnx_ops import ACTIVATIONS, OnnxRecurrence

        w_ih, w_hh = weights["weight_ih"], weights["weight_hh"]
        zeros = w_ih.new_zeros(self.hidden_size)
        b_ih = weights["bias_ih"] if self.bias else zeros
        b_hh = weights["bias_hh"] if self.bias else zeros
        activation = {"activation": ACTIVATIONS[self.nonlinearity]}
        return OnnxRecurrence("RNN", w_ih, w_hh, torch.cat([b_ih, b_hh]), attributes=activation)

    def fused_kernel(self) -> Callable:
        from rnnkit.backends.fused_elman import elman_scan

        return elman_scan

    def step(self, x: Tensor, state: HiddenState, weights: Mapping[str, Tensor]):
        pre = x @ weights["weight_ih"].t() + state.h @ weights["weight_hh"].t()
        if self.bias:
            pre = pre + weights["bias_ih"] + weights["bias_hh"]
        h = NONLINEARITIES[self.nonlinearity](pre)
        return h, HiddenState(h)

    def options_repr(self) -> str:
        return "" if self.nonlinearity == "tanh" else f", nonlinearity={self.nonlinearity!r}"
