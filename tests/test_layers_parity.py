"""rnnkit layers against their torch.nn namesakes with copied weights, float64, every backend."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import rnnkit

DTYPE = torch.float64
BACKENDS = ["native", "fused", "reference"]
I, H, P = 3, 5, 2
LENGTHS = [4, 1, 6, 3]  # unsorted, B = 4, T = 6


def _pair(mode, num_layers, bidirectional, batch_first, proj_size, backend, nonlinearity="tanh"):
    kwargs = dict(num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first)
    if mode == "LSTM":
        kwargs["proj_size"] = proj_size
        ours, theirs = rnnkit.LSTM, torch.nn.LSTM
    elif mode == "GRU":
        ours, theirs = rnnkit.GRU, torch.nn.GRU
    else:
        kwargs["nonlinearity"] = nonlinearity
        ours, theirs = rnnkit.RNN, torch.nn.RNN
    reference = theirs(I, H, dtype=DTYPE, **kwargs)
    layer = ours(I, H, dtype=DTYPE, backend=backend, **kwargs)
    layer.load_state_dict(reference.state_dict())
    return layer, reference


def _run(module, x, h0, packed, batch_first):
    if packed:
        x = pack_padded_sequence(
            x, torch.tensor(LENGTHS), batch_first=batch_first, enforce_sorted=False
        )
    output, state = module(x, h0)
    state = state if isinstance(state, tuple) else (state,)
    return output, state


def _loss(output, state, seed=1):
    g = torch.Generator().manual_seed(seed)
    data = output.data if isinstance(output, PackedSequence) else output
    total = (data * torch.randn(data.shape, generator=g, dtype=DTYPE)).sum()
    for s in state:
        total = total + (s * torch.randn(s.shape, generator=g, dtype=DTYPE)).sum()
    return total


def _compare(
    mode, num_layers, bidirectional, batch_first, proj_size, packed, with_h0, backend, **kw
):
    torch.manual_seed(0)
    layer, reference = _pair(mode, num_layers, bidirectional, batch_first, proj_size, backend, **kw)
    T, B = 6, len(LENGTHS)
    x = torch.randn((B, T, I) if batch_first else (T, B, I), dtype=DTYPE)
    D = 2 if bidirectional else 1
    h0 = None
    if with_h0:
        h = torch.randn(num_layers * D, B, proj_size or H, dtype=DTYPE)
        h0 = (h, torch.randn(num_layers * D, B, H, dtype=DTYPE)) if mode == "LSTM" else h
    results = []
    for module in (layer, reference):
        xi = x.clone().requires_grad_()
        hi = None
        if h0 is not None:
            hi = (
                tuple(t.clone().requires_grad_() for t in h0)
                if mode == "LSTM"
                else h0.clone().requires_grad_()
            )
        output, state = _run(module, xi, hi, packed, batch_first)
        _loss(output, state).backward()
        grads = [p.grad for p in module.parameters()] + [xi.grad]
        if hi is not None:
            grads += [t.grad for t in (hi if isinstance(hi, tuple) else (hi,))]
        results.append((output, state, grads))
    (out_a, st_a, gr_a), (out_b, st_b, gr_b) = results
    if packed:
        assert isinstance(out_a, PackedSequence)
        assert torch.equal(out_a.batch_sizes, out_b.batch_sizes)
        assert torch.equal(out_a.sorted_indices, out_b.sorted_indices)
        out_a, out_b = out_a.data, out_b.data
    torch.testing.assert_close(out_a, out_b, rtol=1e-9, atol=1e-10)
    for a, b in zip(st_a, st_b):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    assert len(gr_a) == len(gr_b)
    for a, b in zip(gr_a, gr_b):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-9)


GRID = list(itertools.product([1, 2], [False, True], [False, True], [False, True], [False, True]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("proj_size", [0, P])
@pytest.mark.parametrize("num_layers,bidirectional,batch_first,packed,with_h0", GRID)
def test_lstm_matches_torch(
    backend, proj_size, num_layers, bidirectional, batch_first, packed, with_h0
):
    _compare("LSTM", num_layers, bidirectional, batch_first, proj_size, packed, with_h0, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("num_layers,bidirectional,batch_first,packed,with_h0", GRID)
def test_gru_matches_torch(backend, num_layers, bidirectional, batch_first, packed, with_h0):
    _compare("GRU", num_layers, bidirectional, batch_first, 0, packed, with_h0, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("num_layers,bidirectional,batch_first,packed,with_h0", GRID[::3])
def test_rnn_matches_torch(
    backend, nonlinearity, num_layers, bidirectional, batch_first, packed, with_h0
):
    _compare(
        "RNN",
        num_layers,
        bidirectional,
        batch_first,
        0,
        packed,
        with_h0,
        backend,
        nonlinearity=nonlinearity,
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_unbatched_input_matches_torch(backend):
    torch.manual_seed(0)
    layer, reference = _pair("LSTM", 2, True, False, 0, backend)
    x = torch.randn(5, I, dtype=DTYPE)
    (ya, (ha, ca)), (yb, (hb, cb)) = layer(x), reference(x)
    assert ya.shape == yb.shape == (5, 2 * H) and ha.shape == hb.shape == (4, H)
    for a, b in ((ya, yb), (ha, hb), (ca, cb)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN"])
def test_parameter_names_and_state_dict_round_trip(mode):
    torch.manual_seed(0)
    layer, reference = _pair(mode, 2, True, False, P if mode == "LSTM" else 0, "auto")
    ours = [(n, tuple(p.shape)) for n, p in layer.named_parameters()]
    theirs = [(n, tuple(p.shape)) for n, p in reference.named_parameters()]
    assert ours == theirs
    assert layer._flat_weights_names == reference._flat_weights_names
    # and back: torch loads rnnkit's (re-initialised) weights
    layer.reset_parameters()
    reference.load_state_dict(layer.state_dict())
    for (_, a), (_, b) in zip(layer.named_parameters(), reference.named_parameters()):
        assert torch.equal(a, b)


def test_variant_parameters_have_their_own_names():
    layer = rnnkit.LSTM(I, H, bidirectional=True, peephole=True, layer_norm=True)
    names = [n for n, _ in layer.named_parameters()]
    for expected in (
        "weight_ci_l0",
        "weight_cf_l0",
        "weight_co_l0_reverse",
        "layer_norm_ih_weight_l0",
        "layer_norm_hh_weight_l0_reverse",
        "layer_norm_c_weight_l0",
        "layer_norm_c_bias_l0",
    ):
        assert expected in names
    coupled = rnnkit.LSTM(I, H, coupled=True, peephole=True)
    assert coupled.weight_ih_l0.shape == (3 * H, I)
    assert "weight_ci_l0" not in dict(coupled.named_parameters())


def test_auto_picks_native_for_vanilla_and_fused_for_variants():
    assert rnnkit.LSTM(I, H, proj_size=P, weight_drop=0.2).resolved_backend() == "native"
    assert rnnkit.GRU(I, H).resolved_backend() == "native"
    assert rnnkit.IRNN(I, H).resolved_backend() == "native"
    assert rnnkit.LSTM(I, H, peephole=True).resolved_backend() == "fused"
    assert rnnkit.GRU(I, H, reset_after=False).resolved_backend() == "fused"
    assert rnnkit.RNN(I, H, nonlinearity="elu").resolved_backend() == "fused"
    assert rnnkit.LSTM(I, H, zoneout=0.1).resolved_backend() == "fused"
