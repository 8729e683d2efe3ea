"""The fused LSTM scan equals the reference scan (values and gradients) for every cell option."""

from __future__ import annotations

import itertools

import pytest
import torch

from rnnkit.backends.fused_lstm import _internal_order, _LSTMRecurrence, lstm_scan
from rnnkit.backends.reference import scan
from rnnkit.cells import LSTMCell
from rnnkit.cells.base import LSTMState

DOUBLE = torch.float64
I, H, PROJ = 3, 4, 2
OPTIONS = list(itertools.product([False, True], repeat=4))  # peephole, coupled, layer_norm, bias


def make(peephole=False, coupled=False, layer_norm=False, bias=True, proj_size=0,
         forget_bias=0.0, seed=0):  # fmt: skip
    """A float64 cell with random (non-default) weights that all require grad."""
    torch.manual_seed(seed)
    cell = LSTMCell(
        I, H, bias, peephole=peephole, coupled=coupled, layer_norm=layer_norm,
        proj_size=proj_size, forget_bias=forget_bias, create_parameters=False,
    )  # fmt: skip
    weights = {}
    for name, shape in cell.parameter_shapes().items():
        w = torch.randn(shape, dtype=DOUBLE) * 0.6
        if name.startswith("layer_norm") and name.endswith("weight"):
            w = w + 1.0
        weights[name] = w.requires_grad_()
    return cell, weights


def inputs(cell, T=6, B=3, keep="none", seed=1):
    gen = torch.Generator().manual_seed(seed)
    P = cell.output_size

    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=DOUBLE)

    x = rand(T, B, I).requires_grad_()
    state = LSTMState(rand(B, P).requires_grad_(), rand(B, H).requires_grad_())
    binary = {s: torch.randint(0, 2, (T, B, s), generator=gen).to(DOUBLE) for s in (P, H)}
    fraction = {s: torch.rand(T, B, s, generator=gen, dtype=DOUBLE) for s in (P, H)}
    keeps = {
        "none": None,
        "binary": (binary[P], binary[H]),
        "fraction": (fraction[P], fraction[H]),
        "h only": (fraction[P], None),
        "c only": (None, binary[H]),
    }
    return x, state, keeps[keep]


def values_and_grads(fn, cell, weights, x, state, keep):
    """Outputs and the gradients of a loss that uses h, h_T and c_T with distinct weights."""
    h, (h_T, c_T) = fn(cell, weights, x, state, keep)
    gen = torch.Generator().manual_seed(7)
    loss = (
        (h * torch.randn(h.shape, generator=gen, dtype=DOUBLE)).sum()
        + (h_T * torch.randn(h_T.shape, generator=gen, dtype=DOUBLE)).sum()
        + (c_T * torch.randn(c_T.shape, generator=gen, dtype=DOUBLE)).sum()
    )
    leaves = [x, state.h, state.c, *weights.values()]
    names = ["x", "h0", "c0", *weights]
    grads = torch.autograd.grad(loss, leaves)
    return {"h": h, "h_T": h_T, "c_T": c_T, **{f"d{n}": g for n, g in zip(names, grads)}}


def assert_same(cell, weights, x, state, keep):
    expected = values_and_grads(scan, cell, weights, x, state, keep)
    actual = values_and_grads(lstm_scan, cell, weights, x, state, keep)
    assert expected.keys() == actual.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-10, atol=1e-10,
                                   msg=lambda m, name=name: f"{name}: {m}")  # fmt: skip


@pytest.mark.parametrize("proj_size", [0, PROJ])
@pytest.mark.parametrize("peephole, coupled, layer_norm, bias", OPTIONS)
def test_matches_reference_for_every_option(peephole, coupled, layer_norm, bias, proj_size):
    forget_bias = 0.7 if (peephole + coupled + layer_norm + bias) % 2 else 0.0
    cell, weights = make(peephole, coupled, layer_norm, bias, proj_size, forget_bias)
    for keep in ("none", "binary", "fraction", "h only", "c only"):
        x, state, k = inputs(cell, keep=keep)
        assert_same(cell, weights, x, state, k)


@pytest.mark.parametrize("T, B", [(1, 1), (4, 1), (1, 5)])
def test_single_step_and_single_sequence(T, B):
    cell, weights = make(peephole=True, layer_norm=True, proj_size=PROJ)
    x, state, keep = inputs(cell, T=T, B=B, keep="fraction")
    assert_same(cell, weights, x, state, keep)


def test_variable_lengths_hold_the_last_valid_state():
    cell, weights = make(peephole=True, coupled=True)
    T, B = 5, 3
    x, state, _ = inputs(cell, T=T, B=B)
    lengths = torch.tensor([5, 2, 0])
    past_end = (torch.arange(T)[:, None] >= lengths[None, :]).to(DOUBLE)[..., None]
    keep = (past_end.expand(T, B, H), past_end.expand(T, B, H))
    h, (h_T, c_T) = lstm_scan(cell, weights, x, state, keep)
    torch.testing.assert_close(h_T[1], h[1, 1])
    torch.testing.assert_close(h_T[2], state.h[2])
    torch.testing.assert_close(c_T[2], state.c[2])
    assert_same(cell, weights, x, state, keep)


def test_gradient_of_final_cell_state_alone():
    cell, weights = make(layer_norm=True, proj_size=PROJ)
    x, state, keep = inputs(cell, keep="binary")
    for fn in (scan, lstm_scan):
        _, (_, c_T) = fn(cell, weights, x, state, keep)
        grads = torch.autograd.grad(c_T.sum(), [x, state.c, weights["weight_hh"]])
        if fn is scan:
            expected = grads
    for a, e in zip(grads, expected):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10)


def test_empty_sequence_returns_the_initial_state():
    cell, weights = make(proj_size=PROJ)
    x = torch.zeros(0, 3, I, dtype=DOUBLE)
    state = LSTMState(torch.randn(3, PROJ, dtype=DOUBLE), torch.randn(3, H, dtype=DOUBLE))
    h, final = lstm_scan(cell, weights, x, state)
    assert h.shape == (0, 3, PROJ)
    assert final is state


def test_float32_and_no_grad():
    cell = LSTMCell(I, H, peephole=True, layer_norm=True)
    x = torch.randn(4, 2, I)
    state = cell.initial_state(2)
    with torch.no_grad():
        h, (h_T, c_T) = lstm_scan(cell, cell.weights(), x, state)
        expected, (_, c_ref) = scan(cell, cell.weights(), x, state)
    assert h.dtype == torch.float32
    torch.testing.assert_close(h, expected)
    torch.testing.assert_close(c_T, c_ref)


def test_internal_gate_order():
    order = _internal_order(4, 2, torch.device("cpu"))
    assert order.tolist() == [6, 7, 0, 1, 2, 3, 4, 5]  # (i, f, g, o) -> (o, i, f, g)
    order = _internal_order(3, 2, torch.device("cpu"))
    assert order.tolist() == [4, 5, 0, 1, 2, 3]  # (f, g, o) -> (o, f, g)


GRADCHECK_CASES = {
    "vanilla": dict(),
    "peephole + keep": dict(peephole=True, keep=True),
    "coupled + peephole + proj": dict(coupled=True, peephole=True, proj=True),
    "layer_norm + keep": dict(layer_norm=True, keep=True),
    "layer_norm without bias": dict(layer_norm=True, bias=False),
    "everything": dict(peephole=True, layer_norm=True, proj=True, keep=True),
    "coupled + layer_norm + keep": dict(coupled=True, layer_norm=True, keep=True),
}


@pytest.mark.parametrize("case", GRADCHECK_CASES)
def test_gradcheck_recurrence(case):
    """gradcheck of the autograd.Function itself, every differentiable input at once."""
    opt = GRADCHECK_CASES[case]
    coupled, peephole = opt.get("coupled", False), opt.get("peephole", False)
    layer_norm, proj, keep = opt.get("layer_norm", False), opt.get("proj", False), opt.get("keep")
    torch.manual_seed(3)
    T, B, Hs = 3, 2, 3
    P = 2 if proj else Hs
    G = (3 if coupled else 4) * Hs

    def rand(*shape, shift=0.0):
        return (torch.randn(*shape, dtype=DOUBLE) * 0.5 + shift).requires_grad_()

    if layer_norm:  # x, W_ih, bias, input-side gain
        inputs = (rand(T, B, I), rand(G, I), rand(G) if opt.get("bias", True) else None,
                  rand(G, shift=1.0))  # fmt: skip
    else:  # input pre-activations
        inputs = (rand(T, B, G), None, None, None)
    args = (
        *inputs,
        rand(G, P),
        rand(B, P),
        rand(B, Hs),
        rand(P, Hs) if proj else None,
        rand(Hs) if peephole and not coupled else None,
        rand(Hs) if peephole else None,
        rand(Hs) if peephole else None,
        rand(G, shift=1.0) if layer_norm else None,
        rand(Hs, shift=1.0) if layer_norm else None,
        rand(Hs) if layer_norm else None,
        torch.rand(T, B, P, dtype=DOUBLE) if keep else None,
        torch.rand(T, B, Hs, dtype=DOUBLE) if keep else None,
    )

    def recurrence(*a):
        return _LSTMRecurrence.apply(coupled, *a)

    assert torch.autograd.gradcheck(recurrence, args)


def test_bad_input_is_named():
    cell, weights = make(proj_size=PROJ)
    x, state, _ = inputs(cell, T=2, B=3)
    with pytest.raises(ValueError, match=r"x must be \(T, B, 3\), got \(2, 3, 5\)"):
        lstm_scan(cell, weights, torch.zeros(2, 3, 5, dtype=DOUBLE), state)
    with pytest.raises(ValueError, match=r"state.c must be \(3, 4\), got \(3, 2\)"):
        lstm_scan(cell, weights, x, LSTMState(state.h, state.h))
    with pytest.raises(ValueError, match=r"keep_h must broadcast to \(2, 3, 2\)"):
        lstm_scan(cell, weights, x, state, (torch.zeros(2, 3, 4), None))
    with pytest.raises(ValueError, match="keep must be None or"):
        lstm_scan(cell, weights, x, state, (None,))
    with pytest.raises(TypeError, match="lstm_scan runs an LSTMCell"):
        lstm_scan(torch.nn.GRUCell(3, 4), weights, x, state)
