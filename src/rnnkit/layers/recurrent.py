"""Stacked, optionally bidirectional recurrent layers: drop-ins for ``torch.nn.RNN/LSTM/GRU``.

A layer owns its parameters under torch's names (``weight_ih_l0``, ``weight_hh_l1_reverse``,
``weight_hr_l0``, …) so ``load_state_dict`` works both ways with its ``torch.nn`` namesake, and
runs one cell per (layer, direction) through a backend (see :mod:`rnnkit.backends`).

Layers ask the cell what they need — its state fields (``cell.state_type``), which parameters
are recurrent (``cell.parameter_names("recurrent")`` for DropConnect) — so any
:class:`rnnkit.cells.RecurrentCell` runs in :class:`RecurrentLayer`. The built-in families are
registered by name in :mod:`rnnkit.layers.registry`; :func:`make_layer` reads it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnkit import backends, regularizers
from rnnkit.backends import native, onnx_ops
from rnnkit.cells import ElmanCell, GRUCell, LSTMCell
from rnnkit.cells.base import _check_size
from rnnkit.init import initialize

# CELL_LAYERS is re-exported for callers that read the table from here (rnnkit.tasks.base).
from rnnkit.layers.registry import CELL_LAYERS as CELL_LAYERS
from rnnkit.layers.registry import cell_family, register_cell_family


class RecurrentLayer(nn.Module):
    r"""Base of :class:`RNN`, :class:`LSTM` and :class:`GRU`: stacks any cell; see their docstrings.

    ``make_cell(layer_input, create_parameters=False, device=..., dtype=...)`` builds the cell
    of one layer (its input size is ``input_size`` for layer 0, else ``D*P``); the layer stores
    the parameters under torch's names. A subclass sets ``family_options``: the names of the
    keyword options its family adds (for the registry, :mod:`rnnkit.layers.registry`), and
    ``mode``: ``torch.nn``'s mode string where torch has the layer (informational; nothing
    dispatches on it).

    Shapes (torch's legend): T sequence length, B batch, I ``input_size``, H ``hidden_size``,
    P ``proj_size`` or H, D 2 if bidirectional else 1, L ``num_layers``.
        - input: (T, B, I), (B, T, I) with ``batch_first``, (T, I) unbatched, or a
          PackedSequence.
        - output: (T, B, D*P) (or batch-first / unbatched / PackedSequence like the input);
          positions past a sequence's length are zero.
        - h_n: (L*D, B, P); c_n (LSTM): (L*D, B, H). Index ``l*D + d``: layer l, direction d.

    Residual stacks (``residual=True``; Wu et al. 2016, GNMT): every layer from the second on
    adds its input to its output, ``x^{(l+1)} = f_l(x^{(l)}) + x^{(l)}`` for l ≥ 1, before
    the padding is zeroed and the dropout between layers; layers from the second on read and
    write D*P features, so the sum needs no projection, and layer 0 (which reads
    ``input_size`` features) has none. The final states are the cells' own, unchanged. Deep
    stacks then train where plain ones stall: the gradient reaches the bottom layer through the
    identity paths.

    Final states with variable lengths (PackedSequence or ``lengths=``): the forward direction's
    state after each sequence's last valid step; the backward direction's state after it has
    read the sequence back to its first step — exactly ``torch.nn``'s convention.
    """

    mode: str | None = None
    family_options: tuple[str, ...] = ()

    def __init__(
        self,
        make_cell: Callable[..., nn.Module],
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        *,
        init: str | Callable = "rnnkit",
        backend: str = "auto",
        variational_dropout: float = 0.0,
        weight_drop: float = 0.0,
        zoneout: float | tuple[float, float] = 0.0,
        learn_initial_state: bool = False,
        residual: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.input_size = _check_size("input_size", input_size)
        self.hidden_size = _check_size("hidden_size", hidden_size)
        self.num_layers = _check_size("num_layers", num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = regularizers.check_probability("dropout", dropout, allow_one=True)
        self.bidirectional = bool(bidirectional)
        self.proj_size = _check_size("proj_size", proj_size, minimum=0)
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero "
                f"dropout expects num_layers greater than 1, but got dropout={dropout} and "
                f"num_layers={num_layers}",
                stacklevel=3,
            )
        self.backend = backends.check_backend(backend)
        self.init = init
        self.variational_dropout = regularizers.check_probability(
            "variational_dropout", variational_dropout
        )
        self.weight_drop = regularizers.check_probability("weight_drop", weight_drop)
        self.learn_initial_state = bool(learn_initial_state)
        self.residual = bool(residual)

        D = self.num_directions
        cells = []
        for layer in range(self.num_layers):
            layer_input = self.input_size if layer == 0 else self.output_size * D
            cells.append(make_cell(layer_input, create_parameters=False, **factory))
        # Cells hold the configuration and the step math; parameters live on the layer.
        self._cells = tuple(cells)
        if cells[0].output_size != self.output_size:
            raise ValueError(
                f"{type(self).__name__}: the cell's output_size is {cells[0].output_size}, "
                f"the layer's is {self.output_size} (pass proj_size to the layer too)"
            )
        self.zoneout_option = zoneout
        self.zoneout = self._parse_zoneout(zoneout)
        self._weight_names: dict[tuple[int, int], dict[str, str]] = {}
        for layer, cell in enumerate(cells):
            for direction in range(D):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                names = {}
                for name, shape in cell.parameter_shapes().items():
                    names[name] = name + suffix
                    self.register_parameter(
                        name + suffix, nn.Parameter(torch.empty(shape, **factory))
                    )
                self._weight_names[(layer, direction)] = names
        if self.learn_initial_state:
            rows = self.num_layers * D
            for field, size in zip(cells[0].state_type._fields, cells[0].state_sizes()):
                self.register_parameter(
                    f"initial_{field}", nn.Parameter(torch.zeros(rows, size, **factory))
                )
        self.reset_parameters()

    # -- configuration ---------------------------------------------------------------------
    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """Per-direction output features P (``proj_size`` or ``hidden_size``)."""
        return self.proj_size or self.hidden_size

    @property
    def cell(self):
        """The first layer's cell: its options describe every layer."""
        return self._cells[0]

    def _parse_zoneout(self, zoneout) -> tuple[float, ...]:
        fields = len(self._state_fields())
        values = zoneout if isinstance(zoneout, (tuple, list)) else (zoneout,) * fields
        if len(values) != fields:
            raise ValueError(
                f"zoneout must be a float or a tuple of {fields} floats "
                f"({', '.join(self._state_fields())}), got {zoneout!r}"
            )
        return tuple(regularizers.check_probability("zoneout", float(v)) for v in values)

    def _state_fields(self) -> tuple[str, ...]:
        return self.cell.state_type._fields

    def reset_parameters(self, init: str | Callable | None = None) -> None:
        """(Re)initialise every (layer, direction) with ``init`` (default: the layer's own)."""
        init = self.init if init is None else init
        for layer, direction in self._weight_names:
            initialize(self._cells[layer], self.cell_weights(layer, direction), init)
        if self.learn_initial_state:
            with torch.no_grad():
                for field in self._state_fields():
                    getattr(self, f"initial_{field}").zero_()

    def cell_weights(self, layer: int, direction: int = 0) -> dict[str, Tensor]:
        """Parameters of one (layer, direction) under the cell's names (``weight_ih``, …)."""
        names = self._weight_names[(layer, direction)]
        return {name: getattr(self, full) for name, full in names.items()}

    def flatten_parameters(self) -> None:
        """No-op, for compatibility with ``torch.nn`` (weights are used as they are)."""

    @property
    def _flat_weights_names(self) -> list[str]:
        return [full for names in self._weight_names.values() for full in names.values()]

    @property
    def _flat_weights(self) -> list[Tensor]:
        return [getattr(self, name) for name in self._flat_weights_names]

    @property
    def all_weights(self) -> list[list[Tensor]]:
        return [list(self.cell_weights(l, d).values()) for (l, d) in self._weight_names]

    def resolved_backend(self) -> str:
        """The backend that runs this layer (``auto`` decided; raises if an explicit one can't)."""
        return backends.resolve(self)

    def backend_note(self) -> str | None:
        """One line on why ``auto`` did not pick ``native``; None when it did or when explicit.

        Example::

            >>> rnnkit.LSTM(4, 8, peephole=True).backend_note()
            "backend='auto' runs 'fused': torch's kernels cannot serve peephole=True"
        """
        return backends.resolve_with_note(self)[1]

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        text += self.cell.options_repr()
        defaults = {
            "num_layers": 1,
            "bias": True,
            "batch_first": False,
            "dropout": 0.0,
            "bidirectional": False,
            "backend": "auto",
            "init": "rnnkit",
            "variational_dropout": 0.0,
            "weight_drop": 0.0,
            "learn_initial_state": False,
            "residual": False,
        }
        for name, default in defaults.items():
            value = getattr(self, name)
            if value != default:
                text += f", {name}={value!r}"
        if any(self.zoneout):
            text += f", zoneout={self.zoneout_option!r}"
        return text

    # -- forward -----------------------------------------------------------------------------
    def forward(self, input, hx=None, lengths: Tensor | None = None):
        """Run the layer; same arguments and returns as ``torch.nn``'s, plus ``lengths``.

        Args:
            input: see the shape legend; a PackedSequence gives variable lengths.
            hx: initial state — ``h_0`` (RNN, GRU) or ``(h_0, c_0)`` (LSTM); zeros (or the
                learned initial state) when omitted.
            lengths: optional (B,) valid lengths for a padded ``input`` (not with a
                PackedSequence): outputs past each length are zero and the final state is the
                one at each sequence's last valid step.
        """
        name = type(self).__name__
        packed = isinstance(input, PackedSequence)
        if packed:
            if lengths is not None:
                raise ValueError(
                    f"{name}: pass lengths only with a padded input, not a PackedSequence"
                )
            x, lengths = pad_packed_sequence(input)
            unbatched = False
        else:
            if not isinstance(input, Tensor):
                raise TypeError(
                    f"{name}: input must be a Tensor or PackedSequence, got {type(input).__name__}"
                )
            if input.dim() not in (2, 3):
                raise ValueError(
                    f"{name}: expected input of rank 3 ({'B, T' if self.batch_first else 'T, B'}, "
                    f"{self.input_size}) or rank 2 (T, {self.input_size}) unbatched, "
                    f"got rank {input.dim()} with shape {tuple(input.shape)}"
                )
            unbatched = input.dim() == 2
            x = input.unsqueeze(1) if unbatched else input
            if self.batch_first and not unbatched:
                x = x.transpose(0, 1)
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"{name}: input has {x.shape[-1]} features in its last dimension, expected "
                f"input_size={self.input_size}"
            )
        if not x.is_floating_point():
            raise TypeError(f"{name}: input must be floating point, got {x.dtype}")
        T, B = x.shape[0], x.shape[1]
        if lengths is not None and not packed:
            lengths = self._check_lengths(lengths, T, B)
        state = self._initial_state(hx, B, x, unbatched)

        backend = self.resolved_backend()
        if torch.compiler.is_exporting():
            # torch's kernels and the eager loops unroll over time; the exported program
            # must serve any T (see rnnkit.backends.exportable), and an ONNX file takes ONNX's
            # own recurrent operators where they express the layer (rnnkit.backends.onnx_ops).
            backend = "onnx" if onnx_ops.lowers(self) else "export"
        if backend == "onnx":
            output, final = onnx_ops.forward(self, x, state, lengths)
        elif backend == "native":
            output, final = native.forward(self, x, state, lengths, input if packed else None)
        else:
            output, final = self._forward_scan(x, state, lengths, backend)

        if packed:
            output = _repack(output, lengths, input)
        else:
            if self.batch_first and not unbatched:
                output = output.transpose(0, 1)
            if unbatched:
                output = output.squeeze(1)
                final = tuple(s.squeeze(1) for s in final)
        # torch's convention: a tuple for a multi-field state (LSTM's (h, c)), else the tensor.
        return output, (final if len(final) > 1 else final[0])

    def _check_lengths(self, lengths, T: int, B: int) -> Tensor | None:
        name = type(self).__name__
        lengths = torch.as_tensor(lengths)
        if lengths.dim() != 1 or lengths.shape[0] != B or lengths.is_floating_point():
            raise ValueError(
                f"{name}: lengths must be a 1-D integer tensor of size B={B}, got "
                f"{lengths.dtype} of shape {tuple(lengths.shape)}"
            )
        lengths = lengths.to("cpu", torch.int64)
        if torch.compiler.is_exporting():
            return lengths  # values are data in an exported program: checked in eager runs
        if B and (lengths.min() < 1 or lengths.max() > T):
            raise ValueError(
                f"{name}: lengths must lie in [1, T={T}], got min {int(lengths.min())} "
                f"and max {int(lengths.max())}"
            )
        return lengths

    def _initial_state(self, hx, B: int, x: Tensor, unbatched: bool) -> tuple[Tensor, ...]:
        """hx checked and made batched: a tuple of (L*D, B, ·) tensors, one per state field."""
        name = type(self).__name__
        rows = self.num_layers * self.num_directions
        fields = self._state_fields()
        sizes = self.cell.state_sizes()
        if hx is None:
            if self.learn_initial_state:
                return tuple(
                    getattr(self, f"initial_{f}").to(x.dtype).unsqueeze(1).expand(rows, B, s)
                    for f, s in zip(fields, sizes)
                )
            zeros = x.new_zeros(rows, B, sizes[0])
            return tuple(x.new_zeros(rows, B, s) if s != sizes[0] else zeros for s in sizes)
        if len(fields) > 1:
            if not isinstance(hx, (tuple, list)) or len(hx) != len(fields):
                expected = ", ".join(f"{f}_0" for f in fields)
                raise TypeError(f"{name}: hx must be a tuple ({expected}), got {type(hx).__name__}")
        else:
            if not isinstance(hx, Tensor):
                raise TypeError(f"{name}: hx must be a Tensor h_0, got {type(hx).__name__}")
            hx = (hx,)
        checked = []
        for f, s, size in zip(fields, hx, sizes):
            if not isinstance(s, Tensor):
                raise TypeError(f"{name}: {f}_0 must be a Tensor, got {type(s).__name__}")
            expected = (rows, size) if unbatched else (rows, B, size)
            if tuple(s.shape) != expected:
                raise ValueError(
                    f"{name}: expected {f}_0 of shape {expected} (num_layers*num_directions, "
                    f"{'' if unbatched else 'batch, '}{'hidden' if f == 'c' else 'output'} size), "
                    f"got {tuple(s.shape)}"
                )
            if s.dtype != x.dtype:
                raise TypeError(f"{name}: {f}_0 has dtype {s.dtype} but input has dtype {x.dtype}")
            if s.device != x.device:
                raise ValueError(f"{name}: {f}_0 is on {s.device} but input is on {x.device}")
            checked.append(s.unsqueeze(1) if unbatched else s)
        return tuple(checked)

    def layer_weights(self, layer: int, direction: int) -> dict[str, Tensor]:
        """One (layer, direction)'s weights for this forward: with DropConnect while training."""
        weights = self.cell_weights(layer, direction)
        if self.weight_drop and self.training:
            for recurrent in self._cells[layer].parameter_names("recurrent"):
                weights[recurrent] = regularizers.drop_connect(
                    weights[recurrent], self.weight_drop, True
                )
        return weights

    def _keep(self, T: int, B: int, lengths: Tensor | None, x: Tensor):
        """Per-field keep tensors for the scan (lengths and zoneout), or None."""
        if lengths is None and not any(self.zoneout):
            return None
        hold = None
        if lengths is not None:
            hold = torch.arange(T).unsqueeze(1) >= lengths.unsqueeze(0)  # (T, B): past the end
            hold = hold.to(device=x.device, dtype=x.dtype).unsqueeze(2)
        keep = []
        for p, size in zip(self.zoneout, self.cell.state_sizes()):
            k = regularizers.zoneout_keep((T, B, size), p, self.training, x) if p else None
            if hold is not None:
                k = hold.expand(T, B, size) if k is None else torch.maximum(k, hold)
            keep.append(k)
        return tuple(keep)

    def _forward_scan(self, x: Tensor, state: tuple[Tensor, ...], lengths, backend: str):
        scan = backends.scan_function(backend)
        T, B = x.shape[0], x.shape[1]
        D = self.num_directions
        valid = None
        if lengths is not None:
            valid = (torch.arange(T).unsqueeze(1) < lengths.unsqueeze(0)).to(x.device, x.dtype)
            valid = valid.unsqueeze(2)
        if self.variational_dropout and self.training:
            x = x * regularizers.sequence_mask(B, x.shape[2], self.variational_dropout, x)
        finals: list[tuple[Tensor, ...]] = []
        for layer, cell in enumerate(self._cells):
            layer_input = x
            outputs = []
            for direction in range(D):
                row = layer * D + direction
                state0 = cell.state_type(*(s[row] for s in state))
                sequence = x if direction == 0 else reverse_padded(x, lengths)
                keep = self._keep(T, B, lengths, x)
                y, final = scan(cell, self.layer_weights(layer, direction), sequence, state0, keep)
                outputs.append(y if direction == 0 else reverse_padded(y, lengths))
                finals.append(tuple(final))
            x = outputs[0] if D == 1 else torch.cat(outputs, dim=2)
            x = self._between_layers(x, layer, valid, layer_input)
        final_state = tuple(torch.stack(field, 0) for field in zip(*finals))
        return x, final_state

    def _between_layers(
        self, x: Tensor, layer: int, valid: Tensor | None, layer_input: Tensor
    ) -> Tensor:
        """The residual connection, zero padding, then the output regularisers of ``layer``
        (shared by all backends); ``layer_input`` is what ``layer`` read."""
        if self.residual and layer > 0:
            x = x + layer_input
        if valid is not None:
            x = x * valid
        if self.training and self.variational_dropout:
            x = x * regularizers.sequence_mask(x.shape[1], x.shape[2], self.variational_dropout, x)
        if self.training and self.dropout and layer < self.num_layers - 1:
            x = F.dropout(x, self.dropout, training=True)
        return x


def reverse_padded(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of a (T, B, F) tensor within its length; padding stays in place."""
    if lengths is None:
        return x.flip(0)
    T = x.shape[0]
    t = torch.arange(T).unsqueeze(1)
    index = torch.where(t < lengths.unsqueeze(0), lengths.unsqueeze(0) - 1 - t, t)  # (T, B)
    index = index.to(x.device).unsqueeze(2).expand_as(x)
    return x.gather(0, index)


def _repack(output: Tensor, lengths: Tensor, like: PackedSequence) -> PackedSequence:
    """Pack a (T, B, ·) output in the same layout (batch order, batch sizes) as ``like``."""
    if isinstance(output, PackedSequence):
        return output
    order = like.sorted_indices
    if order is not None:
        output = output.index_select(1, order.to(output.device))
        lengths = lengths.index_select(0, order.cpu())
    data = pack_padded_sequence(output, lengths, enforce_sorted=True).data
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)


class RNN(RecurrentLayer):
    r"""Elman RNN layer, a drop-in for ``torch.nn.RNN``.

    .. math:: h_t = \phi(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})

    ``nonlinearity`` may be ``tanh`` (default), ``relu``, ``leaky_relu``, ``elu`` or ``sigmoid``
    (torch's kernels serve the first two). Arguments, shapes and returns as
    :class:`RecurrentLayer`; extra keyword arguments ``init``, ``backend``,
    ``variational_dropout``, ``weight_drop``, ``zoneout``, ``learn_initial_state``.

    Example::

        >>> rnn = rnnkit.RNN(10, 20, num_layers=2, nonlinearity="relu", init="identity")
        >>> output, h_n = rnn(torch.randn(5, 3, 10))
        >>> output.shape, h_n.shape
        (torch.Size([5, 3, 20]), torch.Size([2, 3, 20]))
    """

    mode = "RNN"
    family_options = ("nonlinearity",)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        device=None,
        dtype=None,
        **options,
    ) -> None:
        def make_cell(layer_input, **kw):
            return ElmanCell(layer_input, hidden_size, bias, nonlinearity=nonlinearity, **kw)

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
    def nonlinearity(self) -> str:
        return self.cell.nonlinearity


class IRNN(RNN):
    """IRNN (Le et al. 2015): a ReLU Elman RNN with identity ``W_hh`` and zero biases at init.

    ``IRNN(input_size, hidden_size, ...)`` is ``RNN(..., nonlinearity="relu", init="identity")``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, **options) -> None:
        options.setdefault("init", "identity")
        options.setdefault("nonlinearity", "relu")
        super().__init__(input_size, hidden_size, num_layers, **options)


class LSTM(RecurrentLayer):
    r"""LSTM layer, a drop-in for ``torch.nn.LSTM``, with every variant as an option.

    Each (layer, direction) runs :class:`rnnkit.cells.LSTMCell` (gate order i, f, g, o)::

        c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t,    h_t = W_hr (o_t ⊙ tanh(c_t))

    Extra keyword arguments: the cell options ``peephole``, ``coupled``, ``layer_norm``,
    ``forget_bias``; and ``init`` (``"rnnkit"``: orthogonal recurrent weights and forget-gate
    bias 1; ``"torch"``; ``"identity"``; …), ``backend``, ``variational_dropout``,
    ``weight_drop``, ``zoneout`` (a float, or ``(z_h, z_c)``), ``learn_initial_state``.
    Variant parameters get their own names (``weight_ci_l0``, ``layer_norm_ih_weight_l0``, …).

    Example::

        >>> lstm = rnnkit.LSTM(10, 20, num_layers=2, batch_first=True, peephole=True)
        >>> output, (h_n, c_n) = lstm(torch.randn(3, 5, 10))
        >>> output.shape, h_n.shape
        (torch.Size([3, 5, 20]), torch.Size([2, 3, 20]))
    """

    mode = "LSTM"
    family_options = ("peephole", "coupled", "layer_norm", "proj_size", "forget_bias")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        *,
        peephole: bool = False,
        coupled: bool = False,
        layer_norm: bool = False,
        forget_bias: float = 0.0,
        device=None,
        dtype=None,
        **options,
    ) -> None:
        def make_cell(layer_input, **kw):
            return LSTMCell(
                layer_input,
                hidden_size,
                bias,
                proj_size=proj_size,
                peephole=peephole,
                coupled=coupled,
                layer_norm=layer_norm,
                forget_bias=forget_bias,
                **kw,
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
            proj_size,
            device=device,
            dtype=dtype,
            **options,
        )


class GRU(RecurrentLayer):
    r"""GRU layer, a drop-in for ``torch.nn.GRU``; ``reset_after=False`` gives Cho et al. 2014.

    Each (layer, direction) runs :class:`rnnkit.cells.GRUCell` (gate order r, z, n)::

        n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn)),
        h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}

    Extra keyword arguments: ``reset_after``, ``init``, ``backend``, ``variational_dropout``,
    ``weight_drop``, ``zoneout``, ``learn_initial_state``.

    Example::

        >>> gru = rnnkit.GRU(10, 20, bidirectional=True)
        >>> output, h_n = gru(torch.randn(5, 3, 10))
        >>> output.shape, h_n.shape
        (torch.Size([5, 3, 40]), torch.Size([2, 3, 20]))
    """

    mode = "GRU"
    family_options = ("reset_after",)

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
        reset_after: bool = True,
        device=None,
        dtype=None,
        **options,
    ) -> None:
        def make_cell(layer_input, **kw):
            return GRUCell(layer_input, hidden_size, bias, reset_after=reset_after, **kw)

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


register_cell_family("lstm", LSTM)
register_cell_family("gru", GRU)
register_cell_family("rnn", RNN)
register_cell_family("irnn", IRNN)


def make_layer(cell: str, input_size: int, hidden_size: int, **options) -> RecurrentLayer:
    """Build a layer from a registered cell family: ``lstm``, ``gru``, ``rnn`` (Elman), ``irnn``, …

    ``options`` are the layer's keyword arguments (``num_layers``, ``batch_first``, variant
    flags, ``init``, ``backend``, regularisers, …). Families come from
    :mod:`rnnkit.layers.registry` (:func:`~rnnkit.layers.registry.register_cell_family`).

    Example::

        >>> make_layer("gru", 4, 8, num_layers=2)
        GRU(4, 8, num_layers=2)
    """
    return cell_family(cell)(input_size, hidden_size, **options)
