"""Layers of the recurrences trained in parallel or with exponential gating: minGRU, minLSTM
(Feng et al. 2024) and sLSTM (Beck et al. 2024) — the same constructor and forward contract as
:class:`rnnkit.GRU` / :class:`rnnkit.LSTM`, registered as the families ``mingru``, ``minlstm``
and ``slstm``.
"""

from __future__ import annotations

import inspect

from rnnkit.cells.minimal import MinGRUCell, MinLSTMCell
from rnnkit.cells.slstm import SLSTMCell
from rnnkit.layers.recurrent import RecurrentLayer
from rnnkit.layers.registry import cell_families, register_cell_family

# The keyword options RecurrentLayer itself takes after the torch arguments.
_LAYER_OPTIONS = tuple(
    name
    for name, p in inspect.signature(RecurrentLayer.__init__).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in ("device", "dtype")
)


def check_options(layer_name: str, options: dict, *, refused: dict[str, str] | None = None):
    """Refuse an option the family does not have (``peephole`` on minGRU) with a ValueError
    naming it and the families that do have it; ``refused``: layer options this family cannot
    honour, with the reason."""
    for option, value in options.items():
        if refused and option in refused and value:
            raise ValueError(f"{layer_name} does not support {option}={value!r}: {refused[option]}")
        if option in _LAYER_OPTIONS:
            continue
        takers = [name for name, cls in cell_families().items() if option in cls.family_options]
        where = f" (an option of {', '.join(takers)})" if takers else ""
        raise ValueError(
            f"{layer_name} has no option {option!r}{where}; its options are "
            f"{', '.join(_LAYER_OPTIONS)} and the standard torch arguments"
        )
    return {k: v for k, v in options.items() if not (refused and k in refused)}


_NO_RECURRENT_WEIGHT = "the cell has no recurrent weight to drop (its gates read only x_t)"


class MinGRU(RecurrentLayer):
    r"""minGRU layer (Feng et al. 2024), stacked and optionally bidirectional, like :class:`GRU`.

    Each (layer, direction) runs :class:`rnnkit.cells.minimal.MinGRUCell`::

        z_t = σ(W_z x_t + b_z),   h̃_t = g(W_h x_t + b_h),   h_t = (1 − z_t) ⊙ h_{t−1} + z_t ⊙ h̃_t

    The gates read only ``x_t``, so ``backend="auto"``/``"fused"`` run the whole sequence as a
    parallel scan (log-space, Heinsen 2023, or chunked linear-space; ``scan=``), while
    ``backend="reference"`` steps. Arguments, shapes and returns as :class:`GRU` (``h0`` in,
    ``h_n`` out, PackedSequence and ``lengths=``: padded steps keep the state); extra keyword
    arguments ``positive_candidate``, ``scan``, ``init``, ``backend``,
    ``variational_dropout``, ``zoneout``, ``learn_initial_state``. Parameters per layer:
    ``weight_ih_l{k}`` (2H, ·), ``bias_ih_l{k}`` (2H).

    Example::

        >>> mingru = rnnkit.MinGRU(10, 20, num_layers=2, bidirectional=True)
        >>> output, h_n = mingru(torch.randn(5, 3, 10))
        >>> output.shape, h_n.shape, mingru.resolved_backend()
        (torch.Size([5, 3, 40]), torch.Size([4, 3, 20]), 'fused')
    """

    family_options = ("positive_candidate", "scan")
    cell_class = MinGRUCell

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        positive_candidate: bool = True,
        scan: str = "auto",
        device=None,
        dtype=None,
        **options,
    ) -> None:
        options = check_options(type(self).__name__, options, refused=self._refused())
        cell_options = {"positive_candidate": positive_candidate, "scan": scan}
        cell_options.update(self._cell_options())

        def make_cell(layer_input, **kw):
            return self.cell_class(layer_input, hidden_size, bias, **cell_options, **kw)

        super().__init__(
            make_cell,
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            device=device,
            dtype=dtype,
            **options,
        )

    def _refused(self) -> dict[str, str]:
        return {"weight_drop": _NO_RECURRENT_WEIGHT, "proj_size": "the cell has no projection"}

    def _cell_options(self) -> dict:
        return {}


class MinLSTM(MinGRU):
    r"""minLSTM layer (Feng et al. 2024), stacked and optionally bidirectional, like :class:`LSTM`.

    Each (layer, direction) runs :class:`rnnkit.cells.minimal.MinLSTMCell`::

        f'_t, i'_t = f_t / (f_t + i_t), i_t / (f_t + i_t)    (f, i sigmoid gates of x_t)
        h_t = f'_t ⊙ h_{t−1} + i'_t ⊙ g(W_h x_t + b_h)

    The state is ``h`` alone (no cell state): the layer returns ``(output, h_n)`` like
    :class:`GRU`. Extra keyword arguments: ``normalize`` (the normalised gates, default True),
    and those of :class:`MinGRU`. Parameters per layer: ``weight_ih_l{k}`` (3H, ·) rows
    [i; f; h], ``bias_ih_l{k}`` (3H).

    Example::

        >>> minlstm = rnnkit.MinLSTM(10, 20, batch_first=True)
        >>> output, h_n = minlstm(torch.randn(3, 5, 10), lengths=torch.tensor([5, 2, 4]))
        >>> output.shape, h_n.shape
        (torch.Size([3, 5, 20]), torch.Size([1, 3, 20]))
    """

    family_options = ("normalize", "positive_candidate", "scan")
    cell_class = MinLSTMCell

    def __init__(self, input_size: int, hidden_size: int, *args, normalize: bool = True,
                 **options) -> None:  # fmt: skip
        self._normalize = bool(normalize)
        super().__init__(input_size, hidden_size, *args, **options)

    def _cell_options(self) -> dict:
        return {"normalize": self._normalize}


register_cell_family("mingru", MinGRU)
register_cell_family("minlstm", MinLSTM)


class SLSTM(RecurrentLayer):
    r"""sLSTM layer (Beck et al. 2024, xLSTM), stacked and optionally bidirectional, like
    :class:`LSTM`.

    Each (layer, direction) runs :class:`rnnkit.cells.slstm.SLSTMCell`: exponential input gate,
    sigmoid or exponential forget gate, normaliser ``n`` and stabiliser ``m``, block-diagonal
    recurrent weights over ``num_heads`` heads::

        c_t = f'_t ⊙ c_{t-1} + i'_t ⊙ tanh(z̃_t),   n_t = f'_t ⊙ n_{t-1} + i'_t,
        h_t = σ(õ_t) ⊙ c_t / n_t

    The state is the cell's full ``(h, c, n, m)``: ``hx`` is a 4-tuple of (L*D, B, H) tensors
    (or None) and the layer returns ``(output, (h_n, c_n, n_n, m_n))``; carrying it into the
    next call continues the sequence exactly. Arguments, shapes and returns otherwise as
    :class:`LSTM` (PackedSequence, ``lengths=``: padded steps keep the state). Extra keyword
    arguments ``num_heads`` (must divide ``hidden_size``), ``forget_gate``
    (``"sigmoid"`` | ``"exp"``), ``init``, ``backend``, ``variational_dropout``,
    ``weight_drop``, ``zoneout``, ``learn_initial_state``. Parameters per layer:
    ``weight_ih_l{k}`` (4H, ·), ``weight_hh_l{k}`` (4H, H / num_heads), ``bias_ih_l{k}`` (4H).

    Example::

        >>> slstm = rnnkit.SLSTM(10, 20, num_heads=4, batch_first=True)
        >>> output, (h_n, c_n, n_n, m_n) = slstm(torch.randn(3, 5, 10))
        >>> output.shape, m_n.shape
        (torch.Size([3, 5, 20]), torch.Size([1, 3, 20]))
    """

    family_options = ("num_heads", "forget_gate")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        num_heads: int = 1,
        forget_gate: str = "sigmoid",
        device=None,
        dtype=None,
        **options,
    ) -> None:
        options = check_options(
            type(self).__name__, options, refused={"proj_size": "the cell has no projection"}
        )

        def make_cell(layer_input, **kw):
            return SLSTMCell(
                layer_input, hidden_size, bias, num_heads=num_heads, forget_gate=forget_gate, **kw
            )

        super().__init__(
            make_cell,
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            device=device,
            dtype=dtype,
            **options,
        )

    @property
    def num_heads(self) -> int:
        return self.cell.num_heads


register_cell_family("slstm", SLSTM)
