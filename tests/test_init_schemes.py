"""Named initialisers: scaled identity, forget bias, chrono; parameterised names and errors."""

from __future__ import annotations

import math

import pytest
import torch

import rnnkit
from rnnkit import init
from rnnkit.cells import ElmanCell, GRUCell, LSTMCell

H = 16


@pytest.fixture(autouse=True)
def _one_thread():
    """Many small operations: one thread is fastest, and spares a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _blocks(w):
    return w.detach().split(H, dim=0)


def test_scaled_identity_sets_every_recurrent_block():
    for layer in (
        rnnkit.RNN(3, H, init="scaled_identity:0.5"),
        rnnkit.LSTM(3, H, init=init.scaled_identity(0.5)),
        rnnkit.GRU(3, H, init="scaled_identity:0.5"),
    ):
        for block in _blocks(layer.weight_hh_l0):
            torch.testing.assert_close(block, 0.5 * torch.eye(H))
        assert torch.all(layer.bias_ih_l0 == 0) and torch.all(layer.bias_hh_l0 == 0)
    one = rnnkit.RNN(3, H, init="scaled_identity:1")
    torch.testing.assert_close(one.weight_hh_l0.detach(), torch.eye(H))


def test_forget_bias_on_lstm_and_gru_update_gate():
    lstm = rnnkit.LSTM(3, H, init="forget_bias:2.5")
    i, f, g, o = lstm.bias_ih_l0.detach().split(H)
    assert torch.all(f == 2.5) and torch.all(i == 0) and torch.all(o == 0)
    assert torch.all(lstm.bias_hh_l0 == 0)
    for block in _blocks(lstm.weight_hh_l0):  # the rest is per-gate orthogonal
        torch.testing.assert_close(block @ block.t(), torch.eye(H), atol=1e-5, rtol=0)
    gru = rnnkit.GRU(3, H, init=init.forget_bias(-1.0))
    r, z, n = gru.bias_ih_l0.detach().split(H)
    assert torch.all(z == -1.0) and torch.all(r == 0) and torch.all(n == 0)
    coupled = rnnkit.LSTM(3, H, coupled=True, init="forget_bias:3")
    assert torch.all(coupled.bias_ih_l0.detach().split(H)[0] == 3)


def test_chrono_draws_log_uniform_forget_bias_and_opposite_input_bias():
    torch.manual_seed(0)
    t_max = 100.0
    lstm = rnnkit.LSTM(3, 512, init=f"chrono:{t_max:g}")
    i, f, g, o = lstm.bias_ih_l0.detach().split(512)
    assert f.min() >= 0 and f.max() <= math.log(t_max - 1)
    torch.testing.assert_close(i, -f)
    assert torch.all(g == 0) and torch.all(o == 0) and torch.all(lstm.bias_hh_l0 == 0)
    # exp(b_f) is uniform on [1, T_max - 1]: mean (T_max)/2, and spread over the range
    assert f.exp().mean().item() == pytest.approx(t_max / 2, rel=0.1)
    assert f.exp().min() < 5 and f.exp().max() > t_max - 5
    # name and factory are the same initialiser
    torch.manual_seed(1)
    a = rnnkit.LSTM(3, 8, init="chrono:50").state_dict()
    torch.manual_seed(1)
    b = rnnkit.LSTM(3, 8, init=init.chrono(50)).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_chrono_on_gru_and_coupled_lstm_sets_only_the_forget_gate():
    gru = rnnkit.GRU(3, H, init="chrono:20")
    r, z, n = gru.bias_ih_l0.detach().split(H)
    assert torch.all(z >= 0) and torch.all(z <= math.log(19)) and z.std() > 0
    assert torch.all(r == 0) and torch.all(n == 0)
    coupled = rnnkit.LSTM(3, H, coupled=True, init="chrono:20")
    f, g, o = coupled.bias_ih_l0.detach().split(H)
    assert torch.all(f > 0) and torch.all(g == 0) and torch.all(o == 0)


def test_cells_accept_the_new_names():
    cell = LSTMCell(3, H)
    cell.reset_parameters("chrono:30")
    assert cell.bias_ih.detach().split(H)[1].min() >= 0
    elman = ElmanCell(3, H)
    elman.reset_parameters("scaled_identity:0.9")
    torch.testing.assert_close(elman.weight_hh.detach(), 0.9 * torch.eye(H))
    GRUCell(3, H).reset_parameters("forget_bias:1")


@pytest.mark.parametrize(
    "make, name, message",
    [
        (lambda n: rnnkit.RNN(3, H, init=n), "chrono:10", "needs an LSTM or GRU cell"),
        (lambda n: rnnkit.RNN(3, H, init=n), "forget_bias:1", "needs an LSTM or GRU cell"),
        (lambda n: rnnkit.LSTM(3, H, init=n), "chrono", "needs a value: write it as 'chrono:"),
        (lambda n: rnnkit.LSTM(3, H, init=n), "chrono:2", "chrono needs t_max > 2"),
        (lambda n: rnnkit.LSTM(3, H, init=n), "chrono:abc", "'abc' is not a number"),
        (lambda n: rnnkit.LSTM(3, H, bias=False, init=n), "chrono:10", "needs bias=True"),
        (lambda n: rnnkit.GRU(3, H, init=n), "xavier", "init must be one of"),
        (lambda n: rnnkit.RNN(3, H, init=n), "scaled_identity:inf", "finite number"),
    ],
)
def test_bad_initialiser_names(make, name, message):
    with pytest.raises(ValueError, match=message):
        make(name)


def test_names_lists_plain_and_parameterised():
    names = init.names()
    for plain in ("rnnkit", "torch", "identity", "orthogonal"):
        assert plain in names
    for factory in ("scaled_identity:VALUE", "forget_bias:VALUE", "chrono:VALUE"):
        assert factory in names
    assert init.resolve("orthogonal") is init.INITIALIZERS["orthogonal"]
    assert init.chrono(10).__name__ == "chrono:10"
