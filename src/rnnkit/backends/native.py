"""The ``native`` backend: torch's fused kernels (``torch.lstm``, ``torch.gru``, ``torch.rnn_*``).

The same calls ``torch.nn.LSTM`` makes, with the layer's own weights, so a vanilla layer runs at
exactly torch's speed. Options torch lacks but that only change the weights or the tensors
between layers are applied around the kernel: ``weight_drop`` (the dropped ``weight_hh`` is
passed in), ``forget_bias`` (folded into ``bias_ih``), ``variational_dropout`` (one kernel call
per layer with the masks in between) and ``learn_initial_state``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence


def _op(layer):
    if layer.mode == "LSTM":
        return torch.lstm
    if layer.mode == "GRU":
        return torch.gru
    return torch.rnn_relu if layer.cell.nonlinearity == "relu" else torch.rnn_tanh


def flat_weights(layer, only_layer: int | None = None) -> list[Tensor]:
    """Weights in torch's flat order (w_ih, w_hh, b_ih, b_hh, w_hr per layer and direction)."""
    flat = []
    for index, direction in layer._weight_names:
        if only_layer is not None and index != only_layer:
            continue
        weights = layer.layer_weights(index, direction)
        forget_bias = getattr(layer.cell, "forget_bias", 0.0)
        if forget_bias:
            H = layer.hidden_size
            k = layer.cell.forget_gate_index
            shift = torch.zeros_like(weights["bias_ih"])
            shift[k * H : (k + 1) * H] = forget_bias
            weights["bias_ih"] = weights["bias_ih"] + shift
        flat.extend(weights.values())
    return flat


def _run(layer, x, hx: tuple[Tensor, ...], lengths, packed, weights, num_layers, dropout):
    """One kernel call; ``x`` time-major padded (used when ``packed`` is None)."""
    op = _op(layer)
    state = tuple(s.contiguous() for s in hx)
    arg = state if layer.mode == "LSTM" else state[0]
    common = (layer.bias, num_layers, dropout, layer.training, layer.bidirectional)
    if packed is None and lengths is None:
        result = op(x, arg, weights, *common, False)
        return result[0], tuple(result[1:])
    if packed is None:
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    order, unorder = packed.sorted_indices, packed.unsorted_indices
    if order is not None:
        state = tuple(s.index_select(1, order) for s in state)
        arg = state if layer.mode == "LSTM" else state[0]
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
    """
    if not (layer.training and layer.variational_dropout):
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
    x = x * regularizers.sequence_mask(B, x.shape[2], layer.variational_dropout, x)
    D = layer.num_directions
    finals = []
    for index in range(layer.num_layers):
        rows = slice(index * D, (index + 1) * D)
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
        x = layer._between_layers(x, index, valid)
    return x, tuple(torch.cat(field, 0) for field in zip(*finals))
