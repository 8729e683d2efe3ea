"""Cells: torch parity for the vanilla forms and hand-computed steps for every variant."""

from __future__ import annotations

import math

import pytest
import torch

from rnnkit.cells import ElmanCell, GRUCell, HiddenState, LSTMCell, LSTMState

DTYPE = torch.float64


def _randomise(cell, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in cell.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
    return cell


def _sigmoid(a):
    return 1 / (1 + math.exp(-a))


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_elman_matches_torch_rnn_cell(nonlinearity):
    ours = _randomise(ElmanCell(3, 4, nonlinearity=nonlinearity, dtype=DTYPE))
    theirs = torch.nn.RNNCell(3, 4, nonlinearity=nonlinearity, dtype=DTYPE)
    theirs.load_state_dict(ours.state_dict())
    x, h = torch.randn(2, 3, dtype=DTYPE), torch.randn(2, 4, dtype=DTYPE)
    y, state = ours(x, HiddenState(h))
    torch.testing.assert_close(y, theirs(x, h))
    assert state.h is y


@pytest.mark.parametrize(
    "nonlinearity,fn",
    [
        ("leaky_relu", lambda a: a if a > 0 else 0.01 * a),
        ("elu", lambda a: a if a > 0 else math.exp(a) - 1),
        ("sigmoid", _sigmoid),
    ],
)
def test_elman_other_nonlinearities_by_hand(nonlinearity, fn):
    cell = ElmanCell(1, 1, nonlinearity=nonlinearity, dtype=DTYPE)
    with torch.no_grad():
        cell.weight_ih.fill_(2.0), cell.weight_hh.fill_(-1.5)
        cell.bias_ih.fill_(0.1), cell.bias_hh.fill_(-0.3)
    for x, h in ((0.7, 0.4), (-0.5, 0.9)):
        y, _ = cell(torch.tensor([[x]], dtype=DTYPE), torch.tensor([[h]], dtype=DTYPE))
        assert y.item() == pytest.approx(fn(2.0 * x - 1.5 * h + 0.1 - 0.3), abs=1e-12)


def test_lstm_matches_torch_lstm_cell():
    ours = _randomise(LSTMCell(3, 4, dtype=DTYPE))
    theirs = torch.nn.LSTMCell(3, 4, dtype=DTYPE)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, dtype=DTYPE)
    h, c = torch.randn(2, 4, dtype=DTYPE), torch.randn(2, 4, dtype=DTYPE)
    y, state = ours(x, LSTMState(h, c))
    h_ref, c_ref = theirs(x, (h, c))
    torch.testing.assert_close(y, h_ref)
    torch.testing.assert_close(state.c, c_ref)


def test_gru_reset_after_matches_torch_gru_cell():
    ours = _randomise(GRUCell(3, 4, dtype=DTYPE))
    theirs = torch.nn.GRUCell(3, 4, dtype=DTYPE)
    theirs.load_state_dict(ours.state_dict())
    x, h = torch.randn(2, 3, dtype=DTYPE), torch.randn(2, 4, dtype=DTYPE)
    torch.testing.assert_close(ours(x, HiddenState(h))[0], theirs(x, h))


def _scalar_lstm(**options):
    """A 1-unit LSTM with hand-picked weights: blocks i, f, g, o (or f, g, o when coupled)."""
    cell = LSTMCell(1, 1, dtype=DTYPE, **options)
    k = cell.gate_count
    values = {"weight_ih": [0.5, -0.4, 0.3, 0.2][-k:], "weight_hh": [0.1, 0.2, -0.3, 0.4][-k:]}
    with torch.no_grad():
        for name, v in values.items():
            getattr(cell, name).copy_(torch.tensor(v, dtype=DTYPE).view(k, 1))
        cell.bias_ih.copy_(torch.tensor([0.05, 0.1, -0.05, 0.0][-k:], dtype=DTYPE))
        cell.bias_hh.zero_()
        for name, v in (("weight_ci", 0.7), ("weight_cf", -0.6), ("weight_co", 0.9)):
            if hasattr(cell, name):
                getattr(cell, name).fill_(v)
    return cell


def test_peephole_step_by_hand():
    cell = _scalar_lstm(peephole=True)
    x, h, c = 0.8, -0.2, 0.5
    a = [
        0.5 * x + 0.1 * h + 0.05,
        -0.4 * x + 0.2 * h + 0.1,
        0.3 * x - 0.3 * h - 0.05,
        0.2 * x + 0.4 * h,
    ]
    i = _sigmoid(a[0] + 0.7 * c)
    f = _sigmoid(a[1] - 0.6 * c)
    g = math.tanh(a[2])
    c_new = f * c + i * g
    o = _sigmoid(a[3] + 0.9 * c_new)
    y, state = cell(
        torch.tensor([[x]], dtype=DTYPE),
        LSTMState(*(torch.tensor([[v]], dtype=DTYPE) for v in (h, c))),
    )
    assert state.c.item() == pytest.approx(c_new, abs=1e-12)
    assert y.item() == pytest.approx(o * math.tanh(c_new), abs=1e-12)


def test_coupled_step_by_hand():
    cell = _scalar_lstm(coupled=True, forget_bias=0.25)
    assert cell.weight_ih.shape == (3, 1)  # f, g, o: no input-gate weights
    x, h, c = -0.3, 0.6, 1.2
    a_f, a_g, a_o = -0.4 * x + 0.2 * h + 0.1, 0.3 * x - 0.3 * h - 0.05, 0.2 * x + 0.4 * h
    f = _sigmoid(a_f + 0.25)
    c_new = f * c + (1 - f) * math.tanh(a_g)
    y, state = cell(
        torch.tensor([[x]], dtype=DTYPE),
        LSTMState(*(torch.tensor([[v]], dtype=DTYPE) for v in (h, c))),
    )
    assert state.c.item() == pytest.approx(c_new, abs=1e-12)
    assert y.item() == pytest.approx(_sigmoid(a_o) * math.tanh(c_new), abs=1e-12)


def test_layer_norm_step_by_hand():
    torch.manual_seed(0)
    cell = _randomise(LSTMCell(3, 2, layer_norm=True, dtype=DTYPE))
    x, h, c = (torch.randn(1, n, dtype=DTYPE) for n in (3, 2, 2))

    def ln(v, eps=1e-5):  # normalise a list of numbers
        mean = sum(v) / len(v)
        var = sum((u - mean) ** 2 for u in v) / len(v)
        return [(u - mean) / math.sqrt(var + eps) for u in v]

    ax = (x @ cell.weight_ih.t())[0].tolist()
    ah = (h @ cell.weight_hh.t())[0].tolist()
    gx, gh = cell.layer_norm_ih_weight.tolist(), cell.layer_norm_hh_weight.tolist()
    b = (cell.bias_ih + cell.bias_hh).tolist()
    a = []
    for k in range(4):  # each gate block of 2 units normalised on its own
        s = slice(2 * k, 2 * k + 2)
        a += [
            u * gu + v * gv + bb
            for u, gu, v, gv, bb in zip(ln(ax[s]), gx[s], ln(ah[s]), gh[s], b[s])
        ]
    c0 = c[0].tolist()
    c_new = [_sigmoid(a[2 + j]) * c0[j] + _sigmoid(a[j]) * math.tanh(a[4 + j]) for j in range(2)]
    c_hat = [
        u * w + bb
        for u, w, bb in zip(
            ln(c_new), cell.layer_norm_c_weight.tolist(), cell.layer_norm_c_bias.tolist()
        )
    ]
    y_hand = [_sigmoid(a[6 + j]) * math.tanh(c_hat[j]) for j in range(2)]
    y, state = cell(x, LSTMState(h, c))
    assert state.c[0].tolist() == pytest.approx(c_new, abs=1e-12)
    assert y[0].tolist() == pytest.approx(y_hand, abs=1e-12)


def test_projection_applies_weight_hr():
    torch.manual_seed(0)
    cell = _randomise(LSTMCell(3, 4, proj_size=2, dtype=DTYPE))
    plain = LSTMCell(3, 4, dtype=DTYPE)
    with torch.no_grad():
        for name in ("weight_ih", "bias_ih", "bias_hh"):
            getattr(plain, name).copy_(getattr(cell, name))
    x, h, c = (
        torch.randn(2, 3, dtype=DTYPE),
        torch.randn(2, 2, dtype=DTYPE),
        torch.randn(2, 4, dtype=DTYPE),
    )
    y, state = cell(x, LSTMState(h, c))
    # the unprojected cell sees W_hh h as an input-side term: fold it into the bias per row
    a_h = h @ cell.weight_hh.t()
    with torch.no_grad():
        plain.weight_hh.zero_()
    outs = []
    for b in range(2):
        with torch.no_grad():
            plain.bias_hh.copy_(cell.bias_hh + a_h[b])
        yb, sb = plain(x[b : b + 1], LSTMState(torch.zeros(1, 4, dtype=DTYPE), c[b : b + 1]))
        torch.testing.assert_close(sb.c, state.c[b : b + 1])
        outs.append(yb @ cell.weight_hr.t())
    torch.testing.assert_close(y, torch.cat(outs))
    assert y.shape == (2, 2) and state.c.shape == (2, 4)


def test_gru_reset_before_by_hand():
    cell = GRUCell(1, 1, reset_after=False, dtype=DTYPE)
    with torch.no_grad():
        cell.weight_ih.copy_(torch.tensor([[0.5], [-0.4], [0.3]], dtype=DTYPE))
        cell.weight_hh.copy_(torch.tensor([[0.1], [0.2], [-0.7]], dtype=DTYPE))
        cell.bias_ih.copy_(torch.tensor([0.05, 0.1, -0.05], dtype=DTYPE))
        cell.bias_hh.copy_(torch.tensor([0.0, 0.0, 0.2], dtype=DTYPE))
    x, h = 0.9, -0.6
    r = _sigmoid(0.5 * x + 0.1 * h + 0.05)
    z = _sigmoid(-0.4 * x + 0.2 * h + 0.1)
    n = math.tanh(0.3 * x - 0.05 + (-0.7) * (r * h) + 0.2)  # reset before the matmul
    y, _ = cell(torch.tensor([[x]], dtype=DTYPE), HiddenState(torch.tensor([[h]], dtype=DTYPE)))
    assert y.item() == pytest.approx((1 - z) * n + z * h, abs=1e-12)
    reset_after = GRUCell(1, 1, dtype=DTYPE)
    reset_after.load_state_dict(cell.state_dict())
    y_after, _ = reset_after(
        torch.tensor([[x]], dtype=DTYPE), HiddenState(torch.tensor([[h]], dtype=DTYPE))
    )
    assert y_after.item() != pytest.approx(y.item())  # the two formulations differ


def test_initial_state_and_unbatched_step():
    cell = LSTMCell(3, 4, proj_size=2)
    state = cell.initial_state(5, dtype=DTYPE)
    assert isinstance(state, LSTMState)
    assert state.h.shape == (5, 2) and state.c.shape == (5, 4) and state.h.dtype == DTYPE
    y, new = cell(torch.randn(3))
    assert y.shape == (2,) and new.c.shape == (4,)


def test_cell_bad_input_messages():
    cell = LSTMCell(3, 4)
    with pytest.raises(ValueError, match=r"input has 5 features, expected input_size=3"):
        cell(torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"expected input of shape \(B, 3\)"):
        cell(torch.randn(2, 2, 3))
    with pytest.raises(ValueError, match=r"state.c has shape \(2, 3\), expected \(2, 4\)"):
        cell(torch.randn(2, 3), LSTMState(torch.zeros(2, 4), torch.zeros(2, 3)))
    with pytest.raises(TypeError, match=r"state.h has dtype torch.float64"):
        cell(torch.randn(2, 3), LSTMState(torch.zeros(2, 4, dtype=DTYPE), torch.zeros(2, 4)))
    with pytest.raises(ValueError, match=r"proj_size must be smaller than hidden_size"):
        LSTMCell(3, 4, proj_size=4)
    with pytest.raises(ValueError, match=r"nonlinearity must be one of tanh, relu"):
        ElmanCell(3, 4, nonlinearity="softplus")
    with pytest.raises(ValueError, match=r"hidden_size must be >= 1, got 0"):
        GRUCell(3, 0)
    with pytest.raises(TypeError, match=r"input_size must be an int"):
        GRUCell(3.0, 4)


# -- what each cell declares ---------------------------------------------------------------------
DESCRIBED = [
    (ElmanCell, {}),
    (ElmanCell, {"nonlinearity": "elu", "bias": False}),
    (GRUCell, {}),
    (GRUCell, {"reset_after": False}),
    (LSTMCell, {}),
    (LSTMCell, {"proj_size": 2, "peephole": True, "layer_norm": True}),
    (LSTMCell, {"coupled": True, "peephole": True}),
]


@pytest.mark.parametrize("cls, options", DESCRIBED)
def test_every_parameter_has_a_role_and_gate_blocks_match_the_shapes(cls, options):
    cell = cls(3, 5, **options)
    roles = cell.parameter_roles()
    assert list(roles) == list(cell.parameter_shapes())
    (input_weight,) = cell.parameter_names("input")
    assert cell.parameter_shapes()[input_weight][0] == cell.gate_count * cell.hidden_size
    assert cell.gate_count == len(cell.gate_blocks)
    if cell.forget_gate is not None:
        assert cell.gate_blocks[cell.forget_gate_index] == cell.forget_gate


@pytest.mark.parametrize("cls, options", DESCRIBED)
def test_step_is_built_on_the_gates(cls, options):
    torch.manual_seed(0)
    cell = cls(3, 5, dtype=DTYPE, **options)
    x = torch.randn(2, 3, dtype=DTYPE)
    state = cell.initial_state(2, dtype=DTYPE)
    state = cell.state_type(*(torch.randn_like(s) for s in state))
    gates = cell.gates(x, state, cell.weights())
    assert set(gates) == (
        set() if cls is ElmanCell else set(cell.gate_blocks) | {*cell.sigmoid_gates}
    )
    assert set(cell.sigmoid_gates) <= set(gates)
    if isinstance(cell, GRUCell):
        z, n = gates["update"], gates["candidate"]
        torch.testing.assert_close(cell(x, state)[0], (1 - z) * n + z * state.h)


def test_native_kernels_and_blockers():
    assert LSTMCell(3, 5, proj_size=2).native_kernel() is torch.lstm
    assert LSTMCell(3, 5, forget_bias=1.0).native_blocker() is None
    assert LSTMCell(3, 5, forget_bias=1.0, bias=False).native_blocker() == (
        "forget_bias=1.0 with bias=False"
    )
    assert LSTMCell(3, 5, layer_norm=True).native_blocker() == "layer_norm=True"
    assert GRUCell(3, 5).native_kernel() is torch.gru
    assert GRUCell(3, 5, reset_after=False).native_blocker() == "reset_after=False"
    assert ElmanCell(3, 5, nonlinearity="relu").native_kernel() is torch.rnn_relu
    assert ElmanCell(3, 5).native_kernel() is torch.rnn_tanh
    assert ElmanCell(3, 5, nonlinearity="elu").native_kernel() is None
    assert ElmanCell(3, 5, nonlinearity="elu").native_blocker() == "nonlinearity='elu'"
    for cls, options in DESCRIBED:
        assert cls(3, 5, **options).fused_kernel() is not None


def test_native_weights_fold_the_forget_bias():
    cell = LSTMCell(3, 5, forget_bias=0.5)
    flat = cell.native_weights(cell.weights())
    shift = flat[2] - cell.bias_ih
    expected = torch.zeros(20)
    expected[5:10] = 0.5  # the forget block, gate order i, f, g, o
    torch.testing.assert_close(shift.detach(), expected)
    assert len(flat) == 4
