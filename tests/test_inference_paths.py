"""The fused kernels' forward-only paths (no backward to record) compute reference.scan's values.

When autograd records nothing (``torch.no_grad``, ``inference_mode``, weights and inputs that do
not require grad) the fused LSTM and GRU scans skip their autograd Functions where torch's own
kernels compute the configuration (coupled LSTM gates through the negated forget block), the
other LSTMs run a forward-only loop that saves nothing, and every kernel's matmuls may go
through oneDNN. The loops run twice: compiled (:mod:`rnnkit.backends.cpu_kernels`) and as eager
operations.
"""

from __future__ import annotations

import contextlib
import itertools

import pytest
import torch

from rnnkit.backends import cpu_kernels, fused_elman, fused_gru, fused_lstm, kernel_parts
from rnnkit.backends.kernel_parts import input_projection, needs_backward
from rnnkit.backends.reference import scan
from rnnkit.cells import ElmanCell, GRUCell, HiddenState, LSTMCell
from rnnkit.cells.base import LSTMState

DOUBLE = torch.float64
T, B, I, H = 7, 3, 5, 6
MODES = {
    "no_grad": torch.no_grad,
    "inference_mode": torch.inference_mode,
    "frozen": contextlib.nullcontext,  # grad mode on, nothing requires grad
}


def random_weights(cell, seed):
    gen = torch.Generator().manual_seed(seed)
    weights = {}
    for name, p in cell.weights().items():
        w = 0.5 * torch.randn(p.shape, generator=gen, dtype=DOUBLE)
        weights[name] = w + 1.0 if name.startswith("layer_norm") and "weight" in name else w
    return weights


def keep_for(kind, sizes, seed):
    gen = torch.Generator().manual_seed(seed)
    if kind == "none":
        return None
    if kind == "lengths":  # a 0/1 mask, one value per (t, b)
        lengths = torch.tensor([T, 4, 1])
        mask = (torch.arange(T)[:, None] >= lengths[None, :]).to(DOUBLE).unsqueeze(-1)
        return tuple(mask.expand(T, B, s) for s in sizes)
    return tuple(torch.rand(T, B, s, generator=gen, dtype=DOUBLE) for s in sizes)  # zoneout


def forbid(monkeypatch, function):
    """Make ``function.forward`` raise: the path under test must not record a backward."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"{function.__name__} ran; a forward-only path was expected")

    monkeypatch.setattr(function, "forward", staticmethod(refuse))


@pytest.fixture(params=["compiled", "eager"])
def steps(request, monkeypatch):
    """Each forward-only loop compiled (:mod:`rnnkit.backends.cpu_kernels`), then eager. Yields
    the kind and the sequences the compiled loops ran (a list, appended to)."""
    ran = []
    if request.param == "eager":
        monkeypatch.setattr(cpu_kernels, "serves", lambda *tensors: False)
    elif cpu_kernels.library() is None:
        pytest.skip("no C++ compiler to build rnnkit's CPU kernels")
    for name in ("lstm_forward_only", "gru_forward_only"):
        compiled = getattr(cpu_kernels, name)

        def counted(*args, _compiled=compiled, **kwargs):
            ran.append(1)
            return _compiled(*args, **kwargs)

        monkeypatch.setattr(cpu_kernels, name, counted)
    return request.param, ran


LSTM_GRID = [
    dict(zip(("peephole", "coupled", "layer_norm", "proj_size", "forget_bias", "bias"), v))
    for v in itertools.product(
        [False, True], [False, True], [False, True], [0, 2], [0.0, 1.0], [True, False]
    )  # fmt: skip
]


@pytest.mark.parametrize("keep_kind", ["none", "lengths", "zoneout"])
@pytest.mark.parametrize("options", LSTM_GRID, ids=lambda o: ",".join(f"{v}" for v in o.values()))
def test_lstm_forward_only_matches_reference(monkeypatch, steps, options, keep_kind):
    cell = LSTMCell(I, H, **options).to(DOUBLE)
    weights = random_weights(cell, seed=3)
    gen = torch.Generator().manual_seed(4)
    P = cell.output_size
    x = torch.randn(T, B, I, generator=gen, dtype=DOUBLE)
    state = LSTMState(
        torch.randn(B, P, generator=gen, dtype=DOUBLE),
        torch.randn(B, H, generator=gen, dtype=DOUBLE),
    )
    keep = keep_for(keep_kind, (P, H), seed=5)
    expected, (h_ref, c_ref) = scan(cell, weights, x, state, keep)
    forbid(monkeypatch, fused_lstm._LSTMRecurrence)
    for mode, context in MODES.items():
        with context():
            h, (h_T, c_T) = fused_lstm.lstm_scan(cell, weights, x, state, keep)
        for name, got, want in (("h", h, expected), ("h_T", h_T, h_ref), ("c_T", c_T, c_ref)):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12, msg=f"{mode} {name}")
    assert state.c.equal(state.c.clone()) and x.grad is None
    torch_kernel = keep_kind == "none" and not (options["peephole"] or options["layer_norm"])
    kind, ran = steps
    assert len(ran) == (3 if kind == "compiled" and not torch_kernel else 0)


def test_lstm_forward_only_leaves_its_inputs_unchanged(steps):
    cell = LSTMCell(I, H, peephole=True, coupled=True).to(DOUBLE)
    weights = random_weights(cell, seed=0)
    x = torch.randn(T, B, I, dtype=DOUBLE)
    state = LSTMState(torch.randn(B, H, dtype=DOUBLE), torch.randn(B, H, dtype=DOUBLE))
    copies = [t.clone() for t in (x, *state, *weights.values())]
    with torch.no_grad():
        fused_lstm.lstm_scan(cell, weights, x, state)
    for before, after in zip(copies, (x, *state, *weights.values())):
        assert before.equal(after)


@pytest.mark.parametrize("keep_kind", ["none", "lengths", "zoneout"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    "cell_factory",
    [
        pytest.param(lambda b: GRUCell(I, H, b, reset_after=True), id="gru"),
        pytest.param(lambda b: GRUCell(I, H, b, reset_after=False), id="gru-reset_before"),
        pytest.param(lambda b: ElmanCell(I, H, b, nonlinearity="tanh"), id="tanh"),
        pytest.param(lambda b: ElmanCell(I, H, b, nonlinearity="relu"), id="relu"),
        pytest.param(lambda b: ElmanCell(I, H, b, nonlinearity="elu"), id="elu"),
    ],
)
def test_gru_and_elman_inference_match_reference(steps, cell_factory, bias, keep_kind):
    cell = cell_factory(bias).to(DOUBLE)
    weights = random_weights(cell, seed=1)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(T, B, I, generator=gen, dtype=DOUBLE)
    state = HiddenState(torch.randn(B, H, generator=gen, dtype=DOUBLE))
    keep = keep_for(keep_kind, (H,), seed=3)
    expected, last = scan(cell, weights, x, state, keep)
    kernel = fused_gru.gru_scan if isinstance(cell, GRUCell) else fused_elman.elman_scan
    for mode, context in MODES.items():
        with context():
            h, final = kernel(cell, weights, x, state, keep)
        torch.testing.assert_close(h, expected, rtol=1e-12, atol=1e-12, msg=mode)
        torch.testing.assert_close(final.h, last.h, rtol=1e-12, atol=1e-12, msg=mode)
    no_loop = isinstance(cell, ElmanCell)  # the compiled loops serve every GRU
    kind, ran = steps
    assert len(ran) == (3 if kind == "compiled" and not no_loop else 0)


@pytest.mark.parametrize(
    "cell",
    [
        LSTMCell(I, H, coupled=True, forget_bias=1.0),
        LSTMCell(I, H, peephole=True),
        GRUCell(I, H),
        ElmanCell(I, H, nonlinearity="relu"),
    ],
    ids=["coupled", "peephole", "gru", "relu"],
)
def test_inference_under_cpu_bf16_autocast_runs_in_float32(cell):
    """torch's CPU bfloat16 kernels need AVX512-BF16; the recurrence stays in float32."""
    x = torch.randn(T, B, I)
    state = cell.initial_state(B)
    with torch.no_grad():
        want, _ = cell.fused_kernel()(cell, cell.weights(), x, state)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got, _ = cell.fused_kernel()(cell, cell.weights(), x, state)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0.05, atol=0.05)


def test_training_still_records_the_hand_written_backward():
    cell = LSTMCell(I, H, coupled=True).to(DOUBLE)
    weights = {n: w.requires_grad_() for n, w in random_weights(cell, seed=0).items()}
    x = torch.randn(T, B, I, dtype=DOUBLE)
    state = LSTMState(torch.zeros(B, H, dtype=DOUBLE), torch.zeros(B, H, dtype=DOUBLE))
    h, _ = fused_lstm.lstm_scan(cell, weights, x, state)
    assert "LSTMRecurrence" in type(h.grad_fn).__name__
    assert needs_backward(x, *weights.values())
    with torch.no_grad():
        assert not needs_backward(x, *weights.values())


@pytest.mark.parametrize("bias", [True, False])
def test_input_projection_matches_addmm(bias):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(300, 40, generator=gen)
    w = torch.randn(96, 40, generator=gen)
    b = torch.randn(96, generator=gen) if bias else None
    want = x @ w.t() if b is None else torch.addmm(b, x, w.t())
    with torch.no_grad():
        got = input_projection(x, w, b)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    grad_x = x.clone().requires_grad_()
    assert input_projection(grad_x, w, b).grad_fn is not None  # autograd keeps addmm


class _Counting:
    """oneDNN's linear op (``op`` and ``op.binary``), counting calls."""

    def __init__(self, op):
        self.op, self.calls = op, 0

    def __call__(self, *args):
        self.calls += 1
        return self.op(*args)

    def binary(self, *args):
        self.calls += 1
        return self.op.binary(*args)


@pytest.fixture
def onednn(monkeypatch):
    """oneDNN for every per-step product, whatever the size, its calls counted."""
    counting = _Counting(kernel_parts._ONEDNN_LINEAR)
    monkeypatch.setattr(kernel_parts, "_ONEDNN_LINEAR", counting)
    monkeypatch.setattr(kernel_parts, "STEP_MATMUL_MIN_WORK", 0)
    monkeypatch.setattr(kernel_parts, "STEP_MATMUL_MIN_STEPS", 0)
    return counting


@pytest.mark.skipif(kernel_parts._ONEDNN_LINEAR is None, reason="torch built without oneDNN")
@pytest.mark.parametrize(
    "options",
    [{"peephole": True}, {"layer_norm": True, "proj_size": 3}, {"peephole": True, "coupled": True}],
    ids=["peephole", "layer_norm-proj", "peephole-coupled"],
)
def test_lstm_forward_only_with_onednn_step_products_in_float32(onednn, steps, options):
    """The per-step products through oneDNN with a packed weight (forced at a small size)."""
    cell = LSTMCell(I, H, **options)
    gen = torch.Generator().manual_seed(0)
    T_long = 20
    x = torch.randn(T_long, B, I, generator=gen)
    state = cell.initial_state(B)
    keep = (None, torch.randint(0, 2, (T_long, B, H), generator=gen).float())
    with torch.no_grad():
        want, (_, c_want) = scan(cell, cell.weights(), x, state, keep)
        got, (_, c_got) = fused_lstm.lstm_scan(cell, cell.weights(), x, state, keep)
    kind, _ = steps
    if kind == "eager" or "proj_size" in options:  # the compiled sequences do their own matmuls
        assert onednn.calls >= T_long  # every step's product, and the input projection
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c_got, c_want, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(kernel_parts._ONEDNN_LINEAR is None, reason="torch built without oneDNN")
@pytest.mark.parametrize(
    "options",
    [{}, {"peephole": True, "proj_size": 3}, {"layer_norm": True}, {"coupled": True}],
    ids=["vanilla", "peephole-proj", "layer_norm", "coupled"],
)
def test_training_with_onednn_step_products_matches_reference_in_float32(onednn, options):
    """The hand-written BPTT with its per-step products through oneDNN (forced at a small size):
    values and gradients as the reference's autograd in float32."""
    cell = LSTMCell(I, H, **options)
    gen = torch.Generator().manual_seed(1)
    steps = 12
    x = torch.randn(steps, B, I, generator=gen, requires_grad=True)
    keep = (torch.randint(0, 2, (steps, B, cell.output_size), generator=gen).float(), None)
    weights = cell.weights()
    results = []
    for kernel in (scan, fused_lstm.lstm_scan):
        h, (h_T, c_T) = kernel(cell, weights, x, cell.initial_state(B), keep)
        loss = (h * torch.linspace(-1, 1, h.numel()).view_as(h)).sum() + c_T.square().sum()
        results.append([h, c_T, *torch.autograd.grad(loss, [x, *weights.values()])])
    assert onednn.calls >= 2 * steps  # forward and backward steps
    for want, got in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(kernel_parts._ONEDNN_LINEAR is None, reason="torch built without oneDNN")
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize(
    "cell",
    [GRUCell(I, H), GRUCell(I, H, reset_after=False), ElmanCell(I, H, nonlinearity="tanh")],
    ids=["gru", "gru-reset_before", "tanh"],
)
def test_gru_and_elman_training_with_onednn_step_products_in_float32(onednn, cell, masked):
    gen = torch.Generator().manual_seed(2)
    steps = 12
    x = torch.randn(steps, B, I, generator=gen, requires_grad=True)
    keep = (torch.randint(0, 2, (steps, B, H), generator=gen).float(),) if masked else None
    weights = cell.weights()
    results = []
    for kernel in (scan, cell.fused_kernel()):
        h, last = kernel(cell, weights, x, cell.initial_state(B), keep)
        loss = (h * torch.linspace(-1, 1, h.numel()).view_as(h)).sum() + last.h.square().sum()
        results.append([h, last.h, *torch.autograd.grad(loss, [x, *weights.values()])])
    assert onednn.calls >= 2 * steps
    for want, got in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
