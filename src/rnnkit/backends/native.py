"""The ``native`` backend: torch's fused kernels (``torch.lstm``, ``torch.gru``, ``torch.rnn_*``).

The same calls ``torch.nn.LSTM`` makes, with the layer's own weights, so a vanilla layer runs at
exactly torch's speed. The kernel is the cell's
:meth:`~rnnkit.cells.RecurrentCell.native_kernel`, its weights in the order of
:meth:`~rnnkit.cells.RecurrentCell.native_weights`. Options torch lacks but that only change
the weights or the tensors between layers are applied around the kernel: ``weight_drop`` (the
dropped recurrent weight is passed in), ``forget_bias`` (folded into ``bias_ih`` by the LSTM
cell), ``variational_dropout`` and ``residual`` (one kernel call per layer with the masks or the
residual sum in between) and ``learn_initial_state``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence


def flat_weights(layer, only_layer: int | None = None) -> list[Tensor]:
    """Weights in torch's flat order (w_ih, w_hh, b_ih, b_hh, w_hr per layer and direction)."""
    flat = []
    for index, direction in layer._weight_names:
        if only_layer is not None and index != only_layer:
            continue
        cell = layer._cells[index]
        flat.extend(cell.native_weights(layer.layer_weights(index, direction)))
    return flat


def _state_argument(state: tuple[Tensor, ...]):
    # torch's kernels take a tuple for a multi-field state (LSTM's (h, c)), else the tensor.
    return state if len(state) > 1 else state[0]


def _run(layer, x, hx: tuple[Tensor, ...], lengths, packed, weights, num_layers, dropout):
    """One kernel call; ``x`` time-major padded (used when ``packed`` is None)."""
    op = layer.cell.native_kernel()
    state = tuple(s.contiguous() for s in hx)
    arg = _state_argument(state)
    common = (layer.bias, num_layers, dropout, layer.training, layer.bidirectional)
    if packed is None and lengths is None:
        result = op(x, arg, weights, *common, False)
        return result[0], tuple(result[1:])
    if packed is None:
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    order, unorder = packed.sorted_indices, packed.unsorted_indices
    if order is not None:
        state = tuple(s.index_select(1, order) for s in state)
        arg = _state_argument(state)
    result = op(packed.data, packed.batch_sizes, arg, weights, *common)
    output = PackedSequence(result[0], packed.batch_sizes, order, unorder)
    final = tuple(result[1:])
    if unorder is not None:
        final = tuple(s.index_select(1, unorder) for s in final)
    if x is not None:
        output, _ = pad_packed_sequence(output, total_length=x.shape[0])
    return output, final


def forward(layer, x: Tensor, state, lengths, packed: PackedSequence | None):
    """Run ``layer`` with torch's kernels; returns (output, final_state tuple).

    Returns a PackedSequence output when ``packed`` is given and no per-layer work is needed,
    else a (T, B, D*P) padded tensor.

    Under CPU autocast the kernels run in float32 with autocast off: oneDNN's bfloat16 LSTM
    exists only on CPUs with AVX512-BF16 ("could not create a primitive descriptor" elsewhere),
    and the recurrence stays in float32 as in the fused backend
    (:func:`rnnkit.backends.kernel_parts.apply_in_float32`).
    """
    data = packed.data if packed is not None else x
    if data.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return forward(
                layer,
                x.float(),
                tuple(s.float() for s in state),
                lengths,
                packed.float() if packed is not None else None,
            )
    per_layer = (layer.training and layer.variational_dropout) or (
        layer.residual and layer.num_layers > 1
    )
    if not per_layer:
        return _run(
            layer,
            None if packed is not None else x,
            state,
            lengths,
            packed,
            flat_weights(layer),
            layer.num_layers,
            layer.dropout,
        )
    from rnnkit import regularizers

    valid = None
    T, B = x.shape[0], x.shape[1]
    if lengths is not None:
        valid = (torch.arange(T).unsqueeze(1) < lengths.unsqueeze(0)).to(x.device, x.dtype)
        valid = valid.unsqueeze(2)
    if layer.training and layer.variational_dropout:
        x = x * regularizers.sequence_mask(B, x.shape[2], layer.variational_dropout, x)
    D = layer.num_directions
    finals = []
    for index in range(layer.num_layers):
        rows = slice(index * D, (index + 1) * D)
        layer_input = x
        x, final = _run(
            layer,
            x,
            tuple(s[rows] for s in state),
            lengths,
            None,
            flat_weights(layer, index),
            1,
            0.0,
        )
        finals.append(final)
        x = layer._between_layers(x, index, valid, layer_input)
    return x, tuple(torch.cat(field, 0) for field in zip(*finals))
