r"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"): gates that read only x_t.

Both cells drop the gates' dependence on ``h_{t-1}``, so one step is the diagonal linear
recurrence ``h_t = a_t ⊙ h_{t-1} + b_t`` with ``a_t``, ``b_t`` functions of ``x_t`` alone. A whole
sequence is then one input matmul for all steps and a parallel scan
(:mod:`rnnkit.backends.scans`) — the cells' ``sequence_scan``, which ``backend="fused"`` and
``"auto"`` run; ``backend="reference"`` runs :meth:`step` one step at a time, and streaming
(carrying ``h_n`` into the next call) works with either.

The paper's candidate activation keeps ``h`` positive so the scan can run in log space::

    g(v) = v + 1/2  (v ≥ 0),   σ(v)  (v < 0);      log g(v) = log(v + 1/2)  or  −softplus(−v)

(``positive_candidate=False`` gives the paper's linear-space form ``h̃_t = W_h x_t + b_h``,
scanned in linear space only).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.backends import scans
from rnnkit.backends.reference import stack_time
from rnnkit.cells.base import HiddenState, RecurrentCell


def g(v: Tensor) -> Tensor:
    """The paper's positive activation: ``v + 1/2`` for ``v ≥ 0``, ``σ(v)`` below (continuous).

    Computed as ``max(v + 1/2, σ(v))``: σ is convex below 0 and concave above, so it lies
    above its tangent ``1/2 + v/4`` (hence above ``v + 1/2``) for ``v < 0`` and below it for
    ``v > 0`` — the same function in three wide ops instead of a comparison and a select.
    """
    return torch.maximum(v + 0.5, v.sigmoid())


def log_g(v: Tensor) -> Tensor:
    """``log g(v)``, computed without forming ``g`` (each branch finite everywhere)."""
    return torch.where(v >= 0, (v.clamp_min(0) + 0.5).log(), -F.softplus(-v))


def minimal_scan(cell, weights: Mapping[str, Tensor], x: Tensor, state: HiddenState, keep=None):
    """The ``sequence_scan`` of :class:`MinGRUCell` and :class:`MinLSTMCell`.

    Same contract as :func:`rnnkit.backends.reference.scan`. With ``keep`` (lengths, zoneout)
    each step becomes ``h_t = k h_{t-1} + (1 - k)(a h_{t-1} + b)``, i.e. ``a ← k + (1 - k) a``,
    ``b ← (1 - k) b``: still a linear recurrence, so the same scan serves it.
    """
    T = x.shape[0]
    if T == 0:
        return stack_time([], x, cell.output_size), state
    k = None if keep is None else keep[0]
    if k is not None:
        k = k.detach().to(x.dtype)
    pre = cell.preactivations(x, weights)  # (T, B, k*H), one matmul for all steps
    method = scans.choose_method(cell.scan, T, cell.positive_candidate)
    if method == "log":
        log_a, log_b = cell.log_coefficients(pre)
        if k is not None:
            log_keep = torch.log1p(-k)  # -inf where the state is held
            log_a = torch.logaddexp(k.log(), log_keep + log_a)
            log_b = log_keep + log_b
        h = scans.log_space_scan(log_a, log_b, state.h)
    else:
        a, b = cell.coefficients(pre)
        if k is not None:
            a = a + k * (1 - a)
            b = b * (1 - k)
        h = scans.chunked_scan(a, b, state.h)
    return h, HiddenState(h[-1])


class _MinimalCell(RecurrentCell):
    """Shared parts: one input weight, an optional bias, no recurrent weight, the scan."""

    state_type = HiddenState
    sequence_scan = staticmethod(minimal_scan)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        positive_candidate: bool = True,
        scan: str = "auto",
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
        self.positive_candidate = bool(positive_candidate)
        scans.choose_method(scan, 1, self.positive_candidate)  # validates the option
        self.scan = scan
        self._finish_init()

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        G = self.gate_count * self.hidden_size
        shapes = {"weight_ih": (G, self.input_size)}
        if self.bias:
            shapes["bias_ih"] = (G,)
        return shapes

    def parameter_roles(self) -> dict[str, str]:
        return {"weight_ih": "input", "bias_ih": "bias"} if self.bias else {"weight_ih": "input"}

    def preactivations(self, x: Tensor, weights: Mapping[str, Tensor]) -> Tensor:
        """``W_ih x + b_ih`` for x (…, I) — one step (B, I) or a whole sequence (T, B, I)."""
        w = weights["weight_ih"]
        if self.bias:
            if x.dim() == 2:
                return torch.addmm(weights["bias_ih"], x, w.t())
            return torch.addmm(weights["bias_ih"], x.reshape(-1, x.shape[-1]), w.t()).view(
                *x.shape[:-1], w.shape[0]
            )
        return x @ w.t()

    def candidate(self, v: Tensor) -> Tensor:
        return g(v) if self.positive_candidate else v

    def coefficients(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        """``(a, b)`` of ``h_t = a ⊙ h_{t-1} + b`` from the pre-activations (any leading dims)."""
        raise NotImplementedError

    def log_coefficients(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        """``(log a, log b)``, computed stably in log space (positive candidate only)."""
        raise NotImplementedError

    def step(self, x: Tensor, state: HiddenState, weights: Mapping[str, Tensor]):
        a, b = self.coefficients(self.preactivations(x, weights))
        h = torch.addcmul(b, a, state.h)
        return h, HiddenState(h)

    def options_repr(self) -> str:
        text = "" if self.positive_candidate else ", positive_candidate=False"
        return text + ("" if self.scan == "auto" else f", scan={self.scan!r}")


class MinGRUCell(_MinimalCell):
    r"""minGRU cell (Feng et al. 2024, "Were RNNs All We Needed?", arXiv:2410.01201).

    Gate blocks ``update`` z, ``candidate`` h̃ — neither reads ``h_{t-1}``::

        z_t = σ(W_z x_t + b_z)
        h̃_t = g(W_h x_t + b_h)                 (positive_candidate=False: W_h x_t + b_h)
        h_t = (1 − z_t) ⊙ h_{t−1} + z_t ⊙ h̃_t

    with ``g`` the positive activation of :mod:`rnnkit.cells.minimal`. As the linear recurrence
    ``h_t = a_t h_{t-1} + b_t``: ``a = 1 − z``, ``b = z ⊙ h̃``; in log space
    ``log a = −softplus(a_z)``, ``log b = −softplus(−a_z) + log g(a_h)``.

    Options:
        positive_candidate: the paper's log-space form (default) or its linear-space form.
        scan: ``"auto"`` (the faster at the sequence's length; :func:`~rnnkit.backends.scans.
            choose_method`), ``"log"`` (Heinsen 2023) or ``"chunked"`` — the whole-sequence scan
            of the ``fused``/``auto`` backends; all compute the same function.

    Shapes: B batch, I ``input_size``, H ``hidden_size``.
        - ``x_t``: (B, I); ``state``: ``HiddenState(h=(B, H))``; ``y_t = h_t``: (B, H).
        - Parameters: ``weight_ih`` (2H, I) rows [z; h], ``bias_ih`` (2H). No recurrent weight.

    Example::

        >>> cell = MinGRUCell(8, 16)
        >>> y, state = cell(torch.randn(4, 8))
        >>> y.shape, bool((y > 0).all())
        (torch.Size([4, 16]), True)
    """

    gate_blocks = ("update", "candidate")
    sigmoid_gates = ("update",)
    # z scales what is written and 1 − z the previous state: no block is a forget gate whose
    # bias means "remember" (forget-bias initialisers refuse the cell rather than invert it).
    forget_gate = None

    def gates(self, x: Tensor, state: HiddenState, weights: Mapping[str, Tensor]):
        """``{"update": z_t, "candidate": h̃_t}``, (B, H) each."""
        a_z, a_h = self.preactivations(x, weights).chunk(2, dim=-1)
        return {"update": a_z.sigmoid(), "candidate": self.candidate(a_h)}

    def coefficients(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        a_z, a_h = pre.chunk(2, dim=-1)
        z = a_z.sigmoid()
        return 1 - z, z * self.candidate(a_h)

    def log_coefficients(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        a_z, a_h = pre.chunk(2, dim=-1)
        return -F.softplus(a_z), -F.softplus(-a_z) + log_g(a_h)


class MinLSTMCell(_MinimalCell):
    r"""minLSTM cell (Feng et al. 2024, "Were RNNs All We Needed?", arXiv:2410.01201).

    Gate blocks in LSTM order ``input`` i, ``forget`` f, ``candidate`` h̃ — none reads
    ``h_{t-1}``::

        f_t = σ(W_f x_t + b_f),   i_t = σ(W_i x_t + b_i)
        f'_t, i'_t = f_t / (f_t + i_t), i_t / (f_t + i_t)      (normalize=True; else f, i)
        h̃_t = g(W_h x_t + b_h)                                 (positive_candidate=False: linear)
        h_t = f'_t ⊙ h_{t−1} + i'_t ⊙ h̃_t

    The normalised gates make the step a convex mix (the paper's time-independent scale); in
    log space, with ``d = softplus(−a_f) − softplus(−a_i)``: ``log f' = −softplus(d)``,
    ``log i' = −softplus(−d)``.

    Options: ``normalize`` as above; ``positive_candidate`` and ``scan`` as :class:`MinGRUCell`.

    Shapes: B batch, I ``input_size``, H ``hidden_size``.
        - ``x_t``: (B, I); ``state``: ``HiddenState(h=(B, H))``; ``y_t = h_t``: (B, H).
        - Parameters: ``weight_ih`` (3H, I) rows [i; f; h], ``bias_ih`` (3H).

    Example::

        >>> cell = MinLSTMCell(8, 16)
        >>> gates = cell.gates(torch.randn(4, 8), cell.initial_state(4), cell.weights())
        >>> torch.allclose(gates["input"] + gates["forget"], torch.ones(4, 16))
        True
    """

    gate_blocks = ("input", "forget", "candidate")
    sigmoid_gates = ("input", "forget")
    forget_gate = "forget"
    input_gate = "input"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *,
                 normalize: bool = True, **options) -> None:  # fmt: skip
        self.normalize = bool(normalize)
        super().__init__(input_size, hidden_size, bias, **options)

    def _gates(self, pre: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        a_i, a_f, a_h = pre.chunk(3, dim=-1)
        i, f = a_i.sigmoid(), a_f.sigmoid()
        if self.normalize:
            total = f + i
            i, f = i / total, f / total
        return i, f, self.candidate(a_h)

    def gates(self, x: Tensor, state: HiddenState, weights: Mapping[str, Tensor]):
        """``{"input": i'_t, "forget": f'_t, "candidate": h̃_t}``, (B, H) each."""
        i, f, h = self._gates(self.preactivations(x, weights))
        return {"input": i, "forget": f, "candidate": h}

    def coefficients(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        i, f, h = self._gates(pre)
        return f, i * h

    def log_coefficients(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        a_i, a_f, a_h = pre.chunk(3, dim=-1)
        if self.normalize:
            d = F.softplus(-a_f) - F.softplus(-a_i)
            log_f, log_i = -F.softplus(d), -F.softplus(-d)
        else:
            log_f, log_i = -F.softplus(-a_f), -F.softplus(-a_i)
        return log_f, log_i + log_g(a_h)

    def options_repr(self) -> str:
        return ("" if self.normalize else ", normalize=False") + super().options_repr()
