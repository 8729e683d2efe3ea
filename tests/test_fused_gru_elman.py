"""The fused GRU and Elman backends compute reference.scan's function: values and gradients."""

from __future__ import annotations

import pytest
import torch

from rnnkit.backends.fused_elman import ElmanScan, elman_scan
from rnnkit.backends.fused_gru import GRUResetAfterScan, GRUResetBeforeScan, gru_scan
from rnnkit.backends.reference import scan
from rnnkit.cells import ElmanCell, GRUCell, HiddenState

DTYPE = torch.float64
T, B, I, H = 6, 3, 4, 5
NONLINEARITIES = ["tanh", "relu", "leaky_relu", "elu", "sigmoid"]
KEEP_MODES = [None, "entry-none", "binary", "fractional", "lengths", "broadcast-fractional"]


def random_weights(cell, generator):
    """Non-default weights (biases included) that require grad."""
    return {
        name: (0.6 * torch.randn(p.shape, generator=generator, dtype=DTYPE)).requires_grad_()
        for name, p in cell.weights().items()
    }


def make_keep(mode, generator, t=T, b=B):
    if mode is None:
        return None
    if mode == "entry-none":
        return (None,)
    if mode == "binary":  # variable lengths / training-time zoneout
        return (torch.randint(0, 2, (t, b, H), generator=generator).to(DTYPE),)
    if mode == "fractional":  # eval-time zoneout; also differentiated
        return (torch.rand(t, b, H, generator=generator, dtype=DTYPE).requires_grad_(),)
    if mode == "broadcast-fractional":  # one keep value per (t, b), differentiated
        return (torch.rand(t, b, 1, generator=generator, dtype=DTYPE).requires_grad_(),)
    if mode == "lengths":  # a length mask shaped (T, B, 1)
        lengths = torch.tensor([t, max(t - 2, 0), 1][:b])
        return ((torch.arange(t)[:, None] >= lengths[None, :]).to(DTYPE).unsqueeze(-1),)
    raise AssertionError(mode)


def run_and_grad(scan_fn, cell, weights, x, h0, keep, generator_seed=7):
    """Outputs and the gradients of a loss that uses every output and the final state."""
    out, last = scan_fn(cell, weights, x, HiddenState(h0), keep)
    g = torch.Generator().manual_seed(generator_seed)
    loss = (out * torch.randn(out.shape, generator=g, dtype=DTYPE)).sum()
    loss = loss + (last.h * torch.randn(last.h.shape, generator=g, dtype=DTYPE)).sum()
    inputs = [x, h0, *weights.values()]
    if keep is not None and keep[0] is not None and keep[0].requires_grad:
        inputs.append(keep[0])
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    return out, last.h, grads


def assert_same_as_reference(fused_fn, cell, seed, keep_mode, t=T, b=B):
    g = torch.Generator().manual_seed(seed)
    weights = random_weights(cell, g)
    x = torch.randn(t, b, I, generator=g, dtype=DTYPE, requires_grad=True)
    h0 = torch.randn(b, H, generator=g, dtype=DTYPE, requires_grad=True)
    keep = make_keep(keep_mode, g, t, b)
    out_ref, last_ref, grads_ref = run_and_grad(scan, cell, weights, x, h0, keep)
    out, last, grads = run_and_grad(fused_fn, cell, weights, x, h0, keep)
    assert out.shape == (t, b, H)
    torch.testing.assert_close(out, out_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(last, last_ref, rtol=1e-10, atol=1e-12)
    names = ["x", "h0", *weights, "keep"]
    for name, got, want in zip(names, grads, grads_ref):
        assert got is not None and want is not None, name
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11, msg=f"grad of {name}")


@pytest.mark.parametrize("keep_mode", KEEP_MODES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_scan_equals_reference(reset_after, bias, keep_mode):
    cell = GRUCell(I, H, bias, reset_after=reset_after, dtype=DTYPE)
    assert_same_as_reference(gru_scan, cell, seed=11, keep_mode=keep_mode)


@pytest.mark.parametrize("keep_mode", KEEP_MODES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
def test_elman_scan_equals_reference(nonlinearity, bias, keep_mode):
    cell = ElmanCell(I, H, bias, nonlinearity=nonlinearity, dtype=DTYPE)
    assert_same_as_reference(elman_scan, cell, seed=12, keep_mode=keep_mode)


def cells():
    yield gru_scan, GRUCell(I, H, reset_after=True, dtype=DTYPE)
    yield gru_scan, GRUCell(I, H, reset_after=False, dtype=DTYPE)
    yield elman_scan, ElmanCell(I, H, nonlinearity="tanh", dtype=DTYPE)
    yield elman_scan, ElmanCell(I, H, nonlinearity="relu", dtype=DTYPE)


@pytest.mark.parametrize("keep_mode", [None, "fractional"])
@pytest.mark.parametrize("fused_fn,cell", list(cells()))
def test_batch_of_one(fused_fn, cell, keep_mode):
    assert_same_as_reference(fused_fn, cell, seed=13, keep_mode=keep_mode, b=1)


@pytest.mark.parametrize("fused_fn,cell", list(cells()))
def test_empty_sequence_returns_initial_state(fused_fn, cell):
    g = torch.Generator().manual_seed(14)
    weights = random_weights(cell, g)
    x = torch.randn(0, B, I, generator=g, dtype=DTYPE, requires_grad=True)
    h0 = torch.randn(B, H, generator=g, dtype=DTYPE, requires_grad=True)
    out, last = fused_fn(cell, weights, x, HiddenState(h0), None)
    assert out.shape == (0, B, H)
    torch.testing.assert_close(last.h, h0, rtol=0, atol=0)
    (dh0,) = torch.autograd.grad((3 * last.h).sum(), [h0])
    torch.testing.assert_close(dh0, torch.full_like(h0, 3.0))


@pytest.mark.parametrize("fused_fn,cell", list(cells()))
def test_only_final_state_or_only_outputs_used(fused_fn, cell):
    g = torch.Generator().manual_seed(15)
    weights = random_weights(cell, g)
    x = torch.randn(T, B, I, generator=g, dtype=DTYPE, requires_grad=True)
    h0 = torch.randn(B, H, generator=g, dtype=DTYPE, requires_grad=True)
    for pick in (lambda out, last: last.h.sum(), lambda out, last: out[2].sum()):
        want = torch.autograd.grad(pick(*scan(cell, weights, x, HiddenState(h0))), [x, h0])
        got = torch.autograd.grad(pick(*fused_fn(cell, weights, x, HiddenState(h0))), [x, h0])
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_keep_with_wrong_number_of_fields_is_rejected():
    cell = GRUCell(I, H, dtype=DTYPE)
    x = torch.randn(T, B, I, dtype=DTYPE)
    keep = (torch.zeros(T, B, H, dtype=DTYPE), torch.zeros(T, B, H, dtype=DTYPE))
    with pytest.raises(ValueError, match="keep must have one entry per state field"):
        gru_scan(cell, cell.weights(), x, cell.initial_state(B), keep)


# -- gradcheck of the hand-written backward passes (small sizes) ---------------------------


def function_inputs(gate_count, bias, keep, seed, t=4, b=2, h=3):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=0.8):
        return (scale * torch.randn(*shape, generator=g, dtype=DTYPE)).requires_grad_()

    gi = rand(t, b, gate_count * h)
    w_hh = rand(gate_count * h, h)
    b_hh = rand(gate_count * h) if bias else None
    h0 = rand(b, h)
    k = torch.rand(t, b, h, generator=g, dtype=DTYPE).requires_grad_() if keep else None
    return gi, w_hh, b_hh, h0, k


@pytest.mark.parametrize("keep", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("function", [GRUResetAfterScan, GRUResetBeforeScan])
def test_gradcheck_gru_functions(function, bias, keep):
    inputs = function_inputs(3, bias, keep, seed=21)
    assert torch.autograd.gradcheck(function.apply, inputs)


@pytest.mark.parametrize(
    "nonlinearity,bias,keep",
    [
        ("tanh", True, False),
        ("tanh", False, True),
        ("relu", True, True),
        ("leaky_relu", True, False),
        ("elu", False, True),
        ("elu", True, False),
        ("sigmoid", True, True),
    ],
)
def test_gradcheck_elman_function(nonlinearity, bias, keep):
    inputs = function_inputs(1, bias, keep, seed=22)
    assert torch.autograd.gradcheck(lambda *a: ElmanScan.apply(*a, nonlinearity), inputs)
