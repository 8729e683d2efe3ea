"""Layer behaviour beyond torch parity: variants across backends, lengths, regularisers, errors."""

from __future__ import annotations

import pytest
import torch

import rnnkit
from rnnkit.cells import LSTMState

DTYPE = torch.float64
I, H = 3, 4
LENGTHS = torch.tensor([5, 2, 4])  # B = 3, T = 5

LSTM_VARIANTS = [
    dict(peephole=True),
    dict(coupled=True),
    dict(layer_norm=True),
    dict(forget_bias=1.0),
    dict(peephole=True, coupled=True),
    dict(peephole=True, layer_norm=True, proj_size=2),
    dict(coupled=True, layer_norm=True, forget_bias=0.5),
    dict(peephole=True, coupled=True, layer_norm=True, proj_size=2, forget_bias=1.0),
    dict(peephole=True, bias=False, proj_size=2),
]
LAYERS = (
    [(rnnkit.LSTM, options) for options in LSTM_VARIANTS]
    + [(rnnkit.LSTM, {}), (rnnkit.GRU, {}), (rnnkit.GRU, dict(reset_after=False))]
    + [(rnnkit.RNN, dict(nonlinearity=n)) for n in ("tanh", "relu", "leaky_relu", "elu", "sigmoid")]
    + [(rnnkit.GRU, dict(reset_after=False, bias=False))]
)


def _ids(case):
    cls, options = case
    return cls.__name__ + "-" + ("-".join(f"{k}={v}" for k, v in options.items()) or "vanilla")


def _randomise(layer, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.4)
    return layer


def _outputs_and_grads(layer, x, lengths, hx):
    x = x.clone().requires_grad_()
    output, state = layer(x, hx, lengths=lengths)
    state = state if isinstance(state, tuple) else (state,)
    g = torch.Generator().manual_seed(3)
    loss = (output * torch.randn(output.shape, generator=g, dtype=DTYPE)).sum()
    for s in state:
        loss = loss + (s * torch.randn(s.shape, generator=g, dtype=DTYPE)).sum()
    loss.backward()
    return [output, *state], [x.grad] + [p.grad for p in layer.parameters()]


@pytest.mark.parametrize("case", LAYERS, ids=_ids)
@pytest.mark.parametrize("with_lengths", [False, True])
def test_fused_equals_reference(case, with_lengths):
    cls, options = case
    results = []
    for backend in ("fused", "reference"):
        torch.manual_seed(0)
        layer = _randomise(
            cls(I, H, num_layers=2, bidirectional=True, backend=backend, dtype=DTYPE, **options)
        )
        x = torch.randn(5, 3, I, dtype=DTYPE)
        results.append(_outputs_and_grads(layer, x, LENGTHS if with_lengths else None, None))
    (va, ga), (vb, gb) = results
    for a, b in zip(va + ga, vb + gb):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("case", LAYERS[:4] + LAYERS[-6:-4], ids=_ids)
def test_layer_equals_hand_stepped_cell(case):
    """A bidirectional layer with lengths equals stepping its cells over each sequence by hand."""
    cls, options = case
    torch.manual_seed(0)
    layer = _randomise(cls(I, H, bidirectional=True, backend="reference", dtype=DTYPE, **options))
    x = torch.randn(5, 3, I, dtype=DTYPE)
    output, state = layer(x, lengths=LENGTHS)
    h_n = state[0] if isinstance(state, tuple) else state
    cell = layer.cell
    P = cell.output_size
    for b, n in enumerate(LENGTHS.tolist()):
        for direction, steps in ((0, range(n)), (1, reversed(range(n)))):
            weights = layer.cell_weights(0, direction)
            s = cell.initial_state(1, dtype=DTYPE)
            for t in steps:
                y, s = cell.step(x[t, b : b + 1], s, weights)
                torch.testing.assert_close(output[t, b, direction * P : (direction + 1) * P], y[0])
            torch.testing.assert_close(h_n[direction, b], s.h[0])
        assert torch.all(output[n:, b] == 0)  # padding is zero


@pytest.mark.parametrize("backend", ["native", "fused", "reference"])
def test_bidirectional_final_states(backend):
    """h_n: forward's state at each last valid step, backward's after reading back to step 0."""
    torch.manual_seed(0)
    layer = rnnkit.GRU(I, H, bidirectional=True, backend=backend, dtype=DTYPE)
    x = torch.randn(5, 3, I, dtype=DTYPE)
    for lengths in (None, LENGTHS):
        output, h_n = layer(x, lengths=lengths)
        last = (lengths if lengths is not None else torch.full((3,), 5)) - 1
        for b in range(3):
            torch.testing.assert_close(h_n[0, b], output[last[b], b, :H])
            torch.testing.assert_close(h_n[1, b], output[0, b, H:])


def test_lengths_match_packed_sequence():
    torch.manual_seed(0)
    layer = rnnkit.LSTM(I, H, num_layers=2, bidirectional=True, batch_first=True, dtype=DTYPE)
    x = torch.randn(3, 5, I, dtype=DTYPE)
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        x, LENGTHS, batch_first=True, enforce_sorted=False
    )
    out_packed, (h_p, c_p) = layer(packed)
    out_padded, (h_l, c_l) = layer(x, lengths=LENGTHS)
    unpacked, _ = torch.nn.utils.rnn.pad_packed_sequence(out_packed, batch_first=True)
    torch.testing.assert_close(unpacked, out_padded)
    torch.testing.assert_close(h_p, h_l)
    torch.testing.assert_close(c_p, c_l)


def test_learned_initial_state_gets_gradients():
    layer = rnnkit.LSTM(I, H, num_layers=2, learn_initial_state=True, peephole=True)
    assert layer.initial_h.shape == (2, H) and layer.initial_c.shape == (2, H)
    output, _ = layer(torch.randn(4, 2, I))
    output.sum().backward()
    assert layer.initial_h.grad is not None and layer.initial_h.grad.abs().sum() > 0
    assert layer.initial_c.grad.abs().sum() > 0


@pytest.mark.parametrize("backend", ["native", "fused", "reference"])
def test_variational_dropout_masks_are_fixed_across_time(backend):
    # W_ih = I, W_hh = 0, b = 0, relu: h_t = relu(mask_in * x_t) * mask_out
    layer = rnnkit.RNN(8, 8, nonlinearity="relu", variational_dropout=0.5, backend=backend)
    with torch.no_grad():
        layer.weight_ih_l0.copy_(torch.eye(8)), layer.weight_hh_l0.zero_()
        layer.bias_ih_l0.zero_(), layer.bias_hh_l0.zero_()
    x = torch.ones(6, 400, 8)
    torch.manual_seed(0)
    output, _ = layer(x)
    assert torch.equal(output, output[:1].expand_as(output))  # one mask per sequence
    assert (output == 0).float().mean().item() == pytest.approx(0.75, abs=0.02)  # two masks
    assert output.mean().item() == pytest.approx(1.0, abs=0.05)  # expectation kept
    assert not torch.equal(output[0, 0], output[0, 1])  # masks differ between sequences
    layer.eval()
    torch.testing.assert_close(layer(x)[0], x)  # off in eval


@pytest.mark.parametrize("backend", ["native", "fused", "reference"])
def test_weight_drop_is_one_mask_per_forward(backend):
    # relu, W_ih = 0 except the first step's input, W_hh = I dropped: h_2 != 0 iff h_1 != 0
    layer = rnnkit.RNN(64, 64, nonlinearity="relu", weight_drop=0.5, backend=backend, dtype=DTYPE)
    with torch.no_grad():
        layer.weight_ih_l0.copy_(torch.eye(64)), layer.weight_hh_l0.copy_(torch.eye(64))
        layer.bias_ih_l0.zero_(), layer.bias_hh_l0.zero_()
    x = torch.zeros(3, 1, 64, dtype=DTYPE)
    x[0] = 1.0
    torch.manual_seed(0)
    output, _ = layer(x)
    h1, h2 = output[1, 0], output[2, 0]
    assert torch.equal(h1 != 0, h2 != 0)  # the same dropped W_hh at every step
    assert 10 < int((h1 == 0).sum()) < 54
    torch.testing.assert_close(h2[h2 != 0], torch.full_like(h2[h2 != 0], 4.0))  # (1/(1-p))^2
    layer.eval()
    torch.testing.assert_close(layer(x)[0], torch.ones(3, 1, 64, dtype=DTYPE))


@pytest.mark.parametrize("backend", ["fused", "reference"])
def test_zoneout_keeps_or_updates_each_unit_and_uses_expectation_in_eval(backend):
    torch.manual_seed(0)
    layer = rnnkit.LSTM(I, H, zoneout=(0.3, 0.6), backend=backend, dtype=DTYPE)
    x = torch.randn(6, 50, I, dtype=DTYPE)
    _randomise(layer)
    cell, weights = layer.cell, layer.cell_weights(0)
    torch.manual_seed(1)
    output, _ = layer(x)
    # from a zero state each unit at step 0 either kept 0 (p = 0.3) or took the cell's value
    _, new = cell.step(x[0], cell.initial_state(50, dtype=DTYPE), weights)
    kept = output[0] == 0
    assert torch.all(kept | torch.isclose(output[0], new.h))
    assert kept.float().mean().item() == pytest.approx(0.3, abs=0.1)
    output_again, _ = layer(x)
    assert not torch.equal(output, output_again)  # fresh masks every forward
    layer.eval()
    output, (h_n, c_n) = layer(x)
    state = cell.initial_state(50, dtype=DTYPE)
    for t in range(6):
        _, new = cell.step(x[t], state, weights)
        state = LSTMState(0.3 * state.h + 0.7 * new.h, 0.6 * state.c + 0.4 * new.c)
        torch.testing.assert_close(output[t], state.h)
    torch.testing.assert_close(c_n[0], state.c)


def test_regularisers_do_not_change_eval_output():
    torch.manual_seed(0)
    plain = rnnkit.LSTM(I, H, num_layers=2, dropout=0.3)
    regular = rnnkit.LSTM(I, H, num_layers=2, dropout=0.3, variational_dropout=0.4, weight_drop=0.5)
    regular.load_state_dict(plain.state_dict())
    plain.eval(), regular.eval()
    x = torch.randn(5, 2, I)
    torch.testing.assert_close(plain(x)[0], regular(x)[0])


def test_identity_init_is_irnn():
    layer = rnnkit.IRNN(I, H)
    assert layer.nonlinearity == "relu"
    assert torch.equal(layer.weight_hh_l0, torch.eye(H))
    assert torch.all(layer.bias_ih_l0 == 0) and torch.all(layer.bias_hh_l0 == 0)


def test_rnnkit_init_sets_forget_bias_and_orthogonal_blocks():
    layer = rnnkit.LSTM(I, H)
    b = layer.bias_ih_l0 + layer.bias_hh_l0
    assert torch.all(b[H : 2 * H] == 1) and torch.all(b[:H] == 0) and torch.all(b[2 * H :] == 0)
    for block in layer.weight_hh_l0.detach().split(H):
        torch.testing.assert_close(block @ block.t(), torch.eye(H), atol=1e-5, rtol=0)
    coupled = rnnkit.LSTM(I, H, coupled=True)
    assert torch.all(coupled.bias_ih_l0[:H] == 1)  # forget is the first block when coupled
    torch_init = rnnkit.LSTM(I, H, init="torch")
    assert torch_init.weight_hh_l0.abs().max() <= 1 / H**0.5


# -- bad input: every message pinned --------------------------------------------------------
def test_bad_input_messages():
    layer = rnnkit.LSTM(I, H, num_layers=2)
    with pytest.raises(ValueError, match=r"expected input of rank 3 \(T, B, 3\) or rank 2"):
        layer(torch.randn(2, 3, 4, I))
    with pytest.raises(
        ValueError, match=r"input has 7 features in its last dimension, expected input_size=3"
    ):
        layer(torch.randn(5, 2, 7))
    with pytest.raises(ValueError, match=r"expected h_0 of shape \(2, 2, 4\)"):
        layer(torch.randn(5, 2, I), (torch.zeros(1, 2, H), torch.zeros(2, 2, H)))
    with pytest.raises(
        TypeError, match=r"h_0 has dtype torch.float64 but input has dtype torch.float32"
    ):
        layer(torch.randn(5, 2, I), (torch.zeros(2, 2, H, dtype=DTYPE), torch.zeros(2, 2, H)))
    with pytest.raises(ValueError, match=r"h_0 is on meta but input is on cpu"):
        layer(torch.randn(5, 2, I), (torch.zeros(2, 2, H, device="meta"), torch.zeros(2, 2, H)))
    with pytest.raises(TypeError, match=r"hx must be a tuple \(h_0, c_0\)"):
        layer(torch.randn(5, 2, I), torch.zeros(2, 2, H))
    with pytest.raises(TypeError, match=r"input must be floating point"):
        layer(torch.ones(5, 2, I, dtype=torch.long))
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, T=5\]"):
        layer(torch.randn(5, 2, I), lengths=torch.tensor([6, 2]))
    with pytest.raises(ValueError, match=r"lengths must be a 1-D integer tensor of size B=2"):
        layer(torch.randn(5, 2, I), lengths=torch.tensor([5]))
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'peeophole'"):
        rnnkit.LSTM(I, H, peeophole=True)
    with pytest.raises(
        ValueError, match=r"backend must be one of auto, native, fused, reference; got 'cuda'"
    ):
        rnnkit.LSTM(I, H, backend="cuda")
    with pytest.raises(ValueError, match=r"backend='native' cannot serve peephole=True"):
        rnnkit.LSTM(I, H, peephole=True, backend="native")(torch.randn(5, 2, I))
    with pytest.raises(ValueError, match=r"backend='native' cannot serve reset_after=False"):
        rnnkit.GRU(I, H, reset_after=False, backend="native").resolved_backend()
    with pytest.raises(ValueError, match=r"backend='native' cannot serve nonlinearity='elu'"):
        rnnkit.RNN(I, H, nonlinearity="elu", backend="native").resolved_backend()
    with pytest.raises(ValueError, match=r"backend='native' cannot serve zoneout=0.1"):
        rnnkit.GRU(I, H, zoneout=0.1, backend="native").resolved_backend()
    with pytest.raises(
        ValueError, match=r"zoneout must be a float or a tuple of 2 floats \(h, c\)"
    ):
        rnnkit.LSTM(I, H, zoneout=(0.1, 0.2, 0.3))
    with pytest.raises(ValueError, match=r"weight_drop must be in \[0, 1\), got 1.5"):
        rnnkit.LSTM(I, H, weight_drop=1.5)
    with pytest.raises(ValueError, match=r"init must be one of .* got 'xavier'"):
        rnnkit.GRU(I, H, init="xavier")
    with pytest.raises(ValueError, match=r"num_layers must be >= 1, got 0"):
        rnnkit.GRU(I, H, num_layers=0)
    with pytest.raises(
        ValueError,
        match=r"cell must be one of lstm, gru, rnn, irnn, mingru, minlstm, slstm; got 'tcn'",
    ):
        rnnkit.make_layer("tcn", I, H)
    with pytest.warns(UserWarning, match=r"non-zero dropout expects num_layers greater than 1"):
        rnnkit.LSTM(I, H, dropout=0.5)


def test_make_layer_builds_each_cell():
    assert isinstance(rnnkit.make_layer("lstm", I, H, peephole=True), rnnkit.LSTM)
    irnn = rnnkit.make_layer("irnn", I, H, num_layers=2)
    assert isinstance(irnn, rnnkit.IRNN) and irnn.nonlinearity == "relu"
    assert rnnkit.make_layer("rnn", I, H).nonlinearity == "tanh"


def test_backend_note_says_why_auto_did_not_pick_native():
    assert rnnkit.LSTM(I, H).backend_note() is None
    assert rnnkit.LSTM(I, H, peephole=True).backend_note() == (
        "backend='auto' runs 'fused': torch's kernels cannot serve peephole=True"
    )
    assert rnnkit.GRU(I, H, zoneout=0.1).backend_note() == (
        "backend='auto' runs 'fused': torch's kernels cannot serve zoneout=0.1"
    )
    assert rnnkit.LSTM(I, H, peephole=True, backend="fused").backend_note() is None


def test_family_options_are_declared_by_each_layer():
    from rnnkit.layers import cell_families

    families = cell_families()
    assert families["lstm"].family_options == (
        "peephole",
        "coupled",
        "layer_norm",
        "proj_size",
        "forget_bias",
    )
    assert families["gru"].family_options == ("reset_after",)
    assert families["rnn"].family_options == families["irnn"].family_options == ("nonlinearity",)
