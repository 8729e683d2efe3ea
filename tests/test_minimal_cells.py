"""minGRU and minLSTM: the parallel scans (log-space and chunked) equal the step loop in float64
— values, final states and gradients of every parameter, the input and h0 — over layers {1, 2}
× bidirectional × batch_first × lengths/packed × h0; carried state; bad options."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

import rnnkit
from rnnkit.backends import scans
from rnnkit.cells.minimal import MinGRUCell, MinLSTMCell, g, log_g
from rnnkit.layers import cell_family, make_layer

DTYPE = torch.float64
I, H, T, B = 3, 2, 5, 3
LENGTHS = torch.tensor([5, 2, 4])


def _pair(family, scan, **options):
    torch.manual_seed(0)
    fast = make_layer(family, I, H, dtype=DTYPE, scan=scan, **options)
    reference = make_layer(family, I, H, dtype=DTYPE, backend="reference", **options)
    reference.load_state_dict(fast.state_dict())
    return fast, reference


def _run(layer, x, h0, mode):
    x = x.clone().requires_grad_(True)
    h0 = None if h0 is None else h0.clone().requires_grad_(True)
    if mode == "packed":
        inp = pack_padded_sequence(x, LENGTHS, batch_first=layer.batch_first, enforce_sorted=False)
        output, h_n = layer(inp, h0)
        assert isinstance(output, PackedSequence)
        output = pad_packed_sequence(output, batch_first=layer.batch_first, total_length=T)[0]
    else:
        output, h_n = layer(x, h0, lengths=LENGTHS if mode == "lengths" else None)
    weights = torch.linspace(-1, 1, output.numel(), dtype=DTYPE).view_as(output)
    (output * weights).sum().add(h_n.square().sum()).backward()
    grads = [x.grad] + ([] if h0 is None else [h0.grad])
    grads += [p.grad for _, p in sorted(layer.named_parameters())]
    return output, h_n, grads


GRID = list(
    itertools.product(
        ["mingru", "minlstm"],
        [1, 2],
        [False, True],  # bidirectional
        [False, True],  # batch_first
        ["full", "lengths", "packed"],
        [False, True],  # h0 given
    )
)


@pytest.mark.parametrize("family, layers, bidirectional, batch_first, mode, with_h0", GRID)
def test_default_backend_equals_reference(family, layers, bidirectional, batch_first, mode,
                                          with_h0):  # fmt: skip
    options = {"num_layers": layers, "bidirectional": bidirectional, "batch_first": batch_first}
    fast, reference = _pair(family, "auto", **options)
    assert fast.resolved_backend() == "fused"
    g = torch.Generator().manual_seed(1)
    shape = (B, T, I) if batch_first else (T, B, I)
    x = torch.randn(*shape, generator=g, dtype=DTYPE)
    D = 2 if bidirectional else 1
    h0 = torch.randn(layers * D, B, H, generator=g, dtype=DTYPE) if with_h0 else None
    got, want = _run(fast, x, h0, mode), _run(reference, x, h0, mode)
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(got[1], want[1])
    assert len(got[2]) == len(want[2])
    for a, b in zip(got[2], want[2]):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("family", ["mingru", "minlstm"])
@pytest.mark.parametrize("scan", ["log", "chunked"])
def test_both_scans_equal_reference_with_lengths_and_h0(family, scan):
    fast, reference = _pair(family, scan, num_layers=2, bidirectional=True)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(T, B, I, generator=g, dtype=DTYPE)
    h0 = torch.randn(4, B, H, generator=g, dtype=DTYPE)  # any sign: the h0 term stays linear
    got, want = _run(fast, x, h0, "lengths"), _run(reference, x, h0, "lengths")
    for a, b in zip([got[0], got[1], *got[2]], [want[0], want[1], *want[2]]):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("scan", ["log", "chunked"])
def test_zoneout_in_eval_runs_through_the_scan(scan):
    fast, reference = _pair("minlstm", scan, zoneout=0.3)
    fast.eval(), reference.eval()
    x = torch.randn(T, B, I, dtype=DTYPE)
    torch.testing.assert_close(fast(x)[0], reference(x)[0])


@pytest.mark.parametrize("family", ["mingru", "minlstm"])
def test_linear_candidate_uses_the_chunked_scan(family):
    fast, reference = _pair(family, "auto", positive_candidate=False)
    x = torch.randn(T, B, I, dtype=DTYPE)
    torch.testing.assert_close(fast(x)[0], reference(x)[0])
    with pytest.raises(ValueError, match=r"scan='log' needs a positive candidate"):
        make_layer(family, I, H, positive_candidate=False, scan="log")


def test_normalised_minlstm_gates_sum_to_one_and_unnormalised_differs():
    torch.manual_seed(0)
    cell = MinLSTMCell(I, H, dtype=DTYPE)
    x = torch.randn(B, I, dtype=DTYPE)
    gates = cell.gates(x, cell.initial_state(B), cell.weights())
    torch.testing.assert_close(gates["input"] + gates["forget"], torch.ones(B, H, dtype=DTYPE))
    fast, reference = _pair("minlstm", "log", normalize=False)
    x = torch.randn(T, B, I, dtype=DTYPE)
    torch.testing.assert_close(fast(x)[0], reference(x)[0])


@pytest.mark.parametrize("family", ["mingru", "minlstm"])
@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_state_carried_across_two_calls_equals_one_call(family, backend):
    torch.manual_seed(0)
    layer = make_layer(family, I, H, num_layers=2, batch_first=True, dtype=DTYPE, backend=backend)
    x = torch.randn(B, 8, I, dtype=DTYPE)
    whole, h_whole = layer(x)
    first, h_mid = layer(x[:, :3])
    second, h_end = layer(x[:, 3:], h_mid)
    torch.testing.assert_close(torch.cat([first, second], 1), whole)
    torch.testing.assert_close(h_end, h_whole)


def test_candidate_activation_is_the_papers_g_and_positive():
    v = torch.linspace(-6, 6, 101, dtype=DTYPE)
    expected = torch.where(v >= 0, v + 0.5, torch.sigmoid(v))
    torch.testing.assert_close(g(v), expected)
    torch.testing.assert_close(log_g(v), expected.log())
    torch.manual_seed(0)
    output, _ = rnnkit.MinGRU(I, H, dtype=DTYPE)(torch.randn(T, B, I, dtype=DTYPE) * 5)
    assert (output > 0).all()


def test_scans_agree_with_a_loop_and_the_chunked_backward_is_exact():
    gen = torch.Generator().manual_seed(3)
    a = torch.rand(11, 2, 3, generator=gen, dtype=DTYPE)
    b = torch.rand(11, 2, 3, generator=gen, dtype=DTYPE)
    h0 = torch.randn(2, 3, generator=gen, dtype=DTYPE)
    h, loop = h0, []
    for t in range(11):
        h = a[t] * h + b[t]
        loop.append(h)
    loop = torch.stack(loop)
    torch.testing.assert_close(scans.log_space_scan(a.log(), b.log(), h0), loop)
    for size in (1, 3, 4, 11, 16):
        torch.testing.assert_close(scans.chunked_scan(a, b, h0, size), loop)
    inputs = tuple(t.clone().requires_grad_(True) for t in (a, b - 0.5, h0))
    assert torch.autograd.gradcheck(lambda a, b, h0: scans.chunked_scan(a, b, h0, 4), inputs)


def test_layer_api_matches_gru():
    layer = rnnkit.MinGRU(I, H, num_layers=2, bidirectional=True)
    names = {n: tuple(p.shape) for n, p in layer.named_parameters()}
    assert names == {
        "weight_ih_l0": (2 * H, I),
        "bias_ih_l0": (2 * H,),
        "weight_ih_l0_reverse": (2 * H, I),
        "bias_ih_l0_reverse": (2 * H,),
        "weight_ih_l1": (2 * H, 2 * H),
        "bias_ih_l1": (2 * H,),
        "weight_ih_l1_reverse": (2 * H, 2 * H),
        "bias_ih_l1_reverse": (2 * H,),
    }
    assert tuple(rnnkit.MinLSTM(I, H, bias=False).weight_ih_l0.shape) == (3 * H, I)
    output, h_n = layer(torch.randn(T, I))  # unbatched
    assert output.shape == (T, 2 * H) and h_n.shape == (4, H)
    assert cell_family("mingru") is rnnkit.MinGRU and cell_family("minlstm") is rnnkit.MinLSTM
    assert repr(rnnkit.MinLSTM(I, H, normalize=False, scan="log")) == (
        "MinLSTM(3, 2, normalize=False, scan='log')"
    )
    layer = rnnkit.MinGRU(I, H, init="torch", dtype=DTYPE)
    assert layer.weight_ih_l0.abs().max() <= H**-0.5


def test_options_the_cell_does_not_have_are_refused_by_name():
    with pytest.raises(ValueError, match=r"MinGRU has no option 'peephole' \(an option of lstm"):
        rnnkit.MinGRU(I, H, peephole=True)
    with pytest.raises(ValueError, match=r"MinLSTM has no option 'reset_after'"):
        make_layer("minlstm", I, H, reset_after=False)
    with pytest.raises(ValueError, match=r"MinGRU does not support weight_drop=0.5"):
        rnnkit.MinGRU(I, H, weight_drop=0.5)
    with pytest.raises(ValueError, match=r"scan must be one of auto, log, chunked; got 'fft'"):
        rnnkit.MinGRU(I, H, scan="fft")
    with pytest.raises(ValueError, match=r"init 'forget_bias' sets a forget-gate bias"):
        rnnkit.MinGRU(I, H, init="forget_bias:1")
    layer = rnnkit.MinLSTM(I, H, init="chrono:10")  # minLSTM has forget and input gates
    forget = layer.bias_ih_l0[H : 2 * H]
    torch.testing.assert_close(layer.bias_ih_l0[:H], -forget)


def test_cells_step_standalone():
    for cls in (MinGRUCell, MinLSTMCell):
        cell = cls(I, H)
        y, state = cell(torch.randn(I))
        assert y.shape == (H,) and state.h.shape == (H,)


def test_long_sequence_speed_table_runs_at_a_tiny_size():
    from rnnkit.bench import speed

    results = speed.run_long(sizes=((2, 6, 3, 4),), repeats=1, warmup=0)
    names = [r.name for r in results]
    assert names == [
        "torch.nn.GRU",
        "torch.nn.LSTM",
        "MinGRU scan",
        "MinGRU reference",
        "MinLSTM scan",
        "MinLSTM reference",
        "SLSTM fused",
        "SLSTM reference",
    ]
    scan = results[2].as_dict()
    assert scan["ratio_to_own_sequential"] is not None and scan["saved_tensor_mb"] >= 0
    table = speed.format_long_table(results)
    assert "vs own loop" in table and "MinGRU scan" in table
