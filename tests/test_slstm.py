"""sLSTM (Beck et al. 2024): the stabilised step equals the paper's unstabilised equations,
stays finite over 10⁴ steps of large inputs, and runs every layer feature (stack, direction,
lengths, packed, carried state); multi-head recurrent weights, the paper's forget-bias init,
option errors and diagnostics; the fused kernel equals the reference (values and every
gradient, float64) and its hand-written backward passes gradcheck."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit
from rnnkit.backends import reference, resolve_with_note
from rnnkit.backends.fused_slstm import _SLSTMRecurrence, slstm_scan
from rnnkit.cells.slstm import SLSTMCell, SLSTMState
from rnnkit.diagnostics import diagnose, diagnose_cells
from rnnkit.layers import cell_family, make_layer

DTYPE = torch.float64
I, H, T, B = 3, 4, 6, 3


def _unstabilised(cell, x, weights):
    """The paper's recurrence without the stabiliser: c, n grow as e^{Σ ĩ}."""
    h = c = n = torch.zeros(x.shape[1], cell.hidden_size, dtype=x.dtype)
    outputs = []
    for x_t in x.unbind(0):
        a = x_t @ weights["weight_ih"].t() + cell.recurrent(h, weights["weight_hh"])
        a = a + weights["bias_ih"]
        a_i, a_f, a_z, a_o = a.chunk(4, dim=1)
        i = a_i.exp()
        f = a_f.exp() if cell.forget_gate_activation == "exp" else a_f.sigmoid()
        c = f * c + i * a_z.tanh()
        n = f * n + i
        h = a_o.sigmoid() * c / n
        outputs.append(h)
    return torch.stack(outputs)


@pytest.mark.parametrize("forget_gate", ["sigmoid", "exp"])
@pytest.mark.parametrize("num_heads", [1, 2])
def test_stabilised_step_equals_the_papers_equations(forget_gate, num_heads):
    torch.manual_seed(0)
    layer = rnnkit.SLSTM(I, H, num_heads=num_heads, forget_gate=forget_gate, dtype=DTYPE)
    x = torch.randn(T, B, I, dtype=DTYPE)
    output, (h_n, c_n, n_n, m_n) = layer(x)
    expected = _unstabilised(layer.cell, x, layer.cell_weights(0))
    torch.testing.assert_close(output, expected)
    torch.testing.assert_close(h_n[0], expected[-1])
    assert (n_n >= 1).all()  # n_t >= 1 once the first step has set the stabiliser


@pytest.mark.parametrize("forget_gate", ["sigmoid", "exp"])
def test_stays_finite_over_ten_thousand_steps_of_large_inputs(forget_gate):
    torch.manual_seed(0)
    layer = rnnkit.SLSTM(1, 2, forget_gate=forget_gate, init="torch")
    x = torch.randn(10_000, 1, 1) * 100
    with torch.no_grad():
        output, (h_n, c_n, n_n, m_n) = layer(x)
    assert torch.isfinite(output).all() and output.abs().max() <= 1 + 1e-6
    for s in (h_n, c_n, n_n, m_n):
        assert torch.isfinite(s).all()
    # The first step from the zero state, with e^{f̃} and e^{ĩ} far outside float32's range.
    cell = SLSTMCell(8, 16, num_heads=4, forget_gate=forget_gate)
    for seed in range(3):
        torch.manual_seed(seed)
        y, state = cell(torch.randn(4, 8) * 300)
        y, state = cell(torch.randn(4, 8) * 300, state)
        assert all(torch.isfinite(s).all() for s in state)


def test_gradients_are_exact_through_the_stabiliser():
    torch.manual_seed(0)
    layer = rnnkit.SLSTM(I, H, num_heads=2, forget_gate="exp", dtype=DTYPE, bidirectional=True)
    x = torch.randn(4, 2, I, dtype=DTYPE, requires_grad=True)

    def f(x):
        output, state = layer(x, lengths=torch.tensor([4, 2]))
        return output, *state

    assert torch.autograd.gradcheck(f, (x,))


@pytest.mark.parametrize("batch_first", [False, True])
def test_stacked_bidirectional_lengths_equal_each_sequence_alone(batch_first):
    torch.manual_seed(0)
    layer = rnnkit.SLSTM(
        I, H, num_layers=2, bidirectional=True, batch_first=batch_first, dtype=DTYPE
    )
    x, lengths = torch.randn(T, B, I, dtype=DTYPE), torch.tensor([6, 2, 4])
    output, state = layer(x.transpose(0, 1) if batch_first else x, lengths=lengths)
    if batch_first:
        output = output.transpose(0, 1)
    assert len(state) == 4 and all(s.shape == (4, B, H) for s in state)
    for b, n in enumerate(lengths.tolist()):
        alone = x[:n, b : b + 1]
        alone_output, alone_state = layer(alone.transpose(0, 1) if batch_first else alone)
        if batch_first:
            alone_output = alone_output.transpose(0, 1)
        torch.testing.assert_close(output[:n, b], alone_output[:, 0])
        for s, a in zip(state, alone_state):
            torch.testing.assert_close(s[:, b], a[:, 0])
        assert (output[n:, b] == 0).all()
    packed = pack_padded_sequence(
        x.transpose(0, 1) if batch_first else x,
        lengths,
        batch_first=batch_first,
        enforce_sorted=False,
    )
    packed_output, packed_state = layer(packed)
    padded = pad_packed_sequence(packed_output, total_length=T)[0]
    torch.testing.assert_close(padded, output)
    for s, p in zip(state, packed_state):
        torch.testing.assert_close(s, p)


def test_state_carried_across_two_calls_equals_one_call():
    torch.manual_seed(0)
    layer = rnnkit.SLSTM(I, H, num_layers=2, num_heads=2, dtype=DTYPE)
    x = torch.randn(8, B, I, dtype=DTYPE) * 3
    whole, whole_state = layer(x)
    first, middle = layer(x[:3])
    second, end = layer(x[3:], middle)
    torch.testing.assert_close(torch.cat([first, second]), whole)
    for a, b in zip(end, whole_state):
        torch.testing.assert_close(a, b)


def test_heads_make_the_recurrent_weight_block_diagonal():
    torch.manual_seed(0)
    cell = SLSTMCell(I, 6, num_heads=3, dtype=DTYPE)
    assert tuple(cell.weight_hh.shape) == (24, 2)
    w = cell.weight_hh.detach()
    dense = torch.zeros(24, 6, dtype=DTYPE)
    for gate in range(4):
        for head in range(3):
            rows = slice(gate * 6 + head * 2, gate * 6 + head * 2 + 2)
            dense[rows, head * 2 : head * 2 + 2] = w[rows]
            block = w[rows]
            torch.testing.assert_close(block @ block.t(), torch.eye(2, dtype=DTYPE))
    h = torch.randn(B, 6, dtype=DTYPE)
    torch.testing.assert_close(cell.recurrent(h, w), h @ dense.t())


def test_default_init_sets_the_papers_forget_bias():
    layer = rnnkit.SLSTM(I, 8, num_heads=2)
    forget = layer.bias_ih_l0.detach()[8:16]
    expected = torch.linspace(3, 6, 4).repeat(2)
    torch.testing.assert_close(forget, expected)
    others = torch.cat([layer.bias_ih_l0[:8], layer.bias_ih_l0[16:]])
    assert (others == 0).all()
    chrono = rnnkit.SLSTM(I, 8, init="chrono:50").bias_ih_l0.detach()
    torch.testing.assert_close(chrono[:8], -chrono[8:16])


def test_bad_options_name_the_option():
    with pytest.raises(ValueError, match=r"num_heads must divide hidden_size, got num_heads=3"):
        rnnkit.SLSTM(I, 8, num_heads=3)
    with pytest.raises(ValueError, match=r"forget_gate must be one of sigmoid, exp; got 'tanh'"):
        rnnkit.SLSTM(I, 8, forget_gate="tanh")
    with pytest.raises(ValueError, match=r"SLSTM has no option 'peephole' \(an option of lstm"):
        make_layer("slstm", I, 8, peephole=True)
    with pytest.raises(ValueError, match=r"SLSTM does not support proj_size=2"):
        rnnkit.SLSTM(I, 8, proj_size=2)
    with pytest.raises(ValueError, match=r"backend='native' cannot serve SLSTMCell, which has no"):
        rnnkit.SLSTM(I, 8, backend="native")(torch.randn(2, 1, I))
    assert cell_family("slstm") is rnnkit.SLSTM
    assert repr(rnnkit.SLSTM(I, 8, num_heads=2, forget_gate="exp")) == (
        "SLSTM(3, 8, num_heads=2, forget_gate='exp')"
    )


def test_standalone_cell_and_state_type():
    cell = SLSTMCell(I, H)
    y, state = cell(torch.randn(B, I))
    assert isinstance(state, SLSTMState) and y.shape == (B, H)
    y, state = cell(torch.randn(B, I), state)
    assert (state.n >= 1).all()


def test_diagnostics_measure_the_new_cells():
    diagnoses = diagnose_cells(["mingru", "minlstm", "slstm"], hidden_size=4, length=12)
    assert [d.label for d in diagnoses] == ["mingru", "minlstm", "slstm"]
    mingru, minlstm, slstm = (d.layers[0] for d in diagnoses)
    assert set(mingru.gates) == {"update"} and mingru.sigma_max is None
    assert set(minlstm.gates) == {"input", "forget"}
    assert set(slstm.gates) == {"forget", "output"} and slstm.sigma_max is not None
    assert diagnose(rnnkit.SLSTM(4, 4, num_heads=2, dtype=DTYPE), torch.randn(2, 9, 4,
                    dtype=DTYPE)).layers  # fmt: skip


# -- the fused kernel (hand-written BPTT) against the reference, float64 ---------------------


@pytest.mark.parametrize("forget_gate", ["sigmoid", "exp"])
@pytest.mark.parametrize("num_heads", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_fused_equals_reference_values_and_every_gradient(forget_gate, num_heads, bias):
    """2 layers, bidirectional, lengths, h0 given: outputs, final states and the gradients of
    every parameter, the input and all four fields of h0."""
    options = dict(num_layers=2, bidirectional=True, num_heads=num_heads, bias=bias,
                   forget_gate=forget_gate, dtype=DTYPE)  # fmt: skip
    torch.manual_seed(1)
    fused = rnnkit.SLSTM(I, H, backend="fused", **options)
    slow = rnnkit.SLSTM(I, H, backend="reference", **options)
    slow.load_state_dict(fused.state_dict())
    torch.manual_seed(2)
    x = torch.randn(T, B, I, dtype=DTYPE) * 2
    h0 = (torch.randn(4, B, H, dtype=DTYPE), torch.randn(4, B, H, dtype=DTYPE),
          torch.rand(4, B, H, dtype=DTYPE) + 0.5, torch.randn(4, B, H, dtype=DTYPE))  # fmt: skip
    lengths = torch.tensor([6, 2, 4])
    weights = torch.randn(T, B, 2 * H, dtype=DTYPE), torch.randn(4, 4, B, H, dtype=DTYPE)
    results = []
    for layer in (fused, slow):
        inputs = [x.clone().requires_grad_(), *(s.clone().requires_grad_() for s in h0)]
        output, state = layer(inputs[0], tuple(inputs[1:]), lengths=lengths)
        loss = (output * weights[0]).sum() + (torch.stack(state) * weights[1]).sum()
        grads = torch.autograd.grad(loss, [*inputs, *layer.parameters()])
        results.append((output, *state, *grads))
    assert resolve_with_note(fused)[0] == "fused"
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("forget_gate", ["sigmoid", "exp"])
def test_fused_scan_keeps_every_state_field_like_the_reference(forget_gate):
    """keep on h, c, n and m (zoneout's rule) from the zero state, where n stays 0 under keep
    and the stabiliser restarts at ĩ: the scan itself against reference.scan."""
    torch.manual_seed(4)
    cell = SLSTMCell(I, H, num_heads=2, forget_gate=forget_gate, dtype=DTYPE)
    x = (torch.randn(T, B, I, dtype=DTYPE) * 3).requires_grad_()
    keep = [(torch.rand(T, B, H, dtype=DTYPE) < 0.5).to(DTYPE) for _ in range(4)]
    keep[2][0] = 1.0  # n_0 stays 0 for a step: the next step starts the stabiliser again
    weight = torch.randn(T, B, H, dtype=DTYPE)
    results = []
    for scan in (slstm_scan, reference.scan):
        output, state = scan(cell, cell.weights(), x, cell.initial_state(B), keep)
        loss = (output * weight).sum() + sum(s.sum() for s in state[1:])
        results.append((output, *state, *torch.autograd.grad(loss, [x, *cell.parameters()])))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("exp_forget", [False, True])
@pytest.mark.parametrize("case", ["state given", "zero state + keep"])
def test_gradcheck_fused_recurrence(exp_forget, case):
    """gradcheck of the autograd.Function itself, every differentiable input at once (n_0 = 0
    is a branch of the stabiliser, so from the zero state n_0 is held fixed)."""
    torch.manual_seed(5)
    steps, k, batch, d = 4, 2, 2, 2

    def rand(*shape):
        return (torch.randn(*shape, dtype=DTYPE) * 0.8).requires_grad_()

    zero = case == "zero state + keep"
    n0 = torch.zeros(k, batch, d, dtype=DTYPE) if zero else (
        torch.rand(k, batch, d, dtype=DTYPE) + 0.5).requires_grad_()  # fmt: skip
    keeps = [torch.rand(steps, k, batch, d, dtype=DTYPE) if zero else None for _ in range(4)]
    args = (rand(steps, k, batch, 4 * d), rand(k, d, 4 * d), rand(k, batch, d),
            rand(k, batch, d), n0, rand(k, batch, d), *keeps)  # fmt: skip
    assert torch.autograd.gradcheck(lambda *a: _SLSTMRecurrence.apply(exp_forget, *a), args)


def test_auto_runs_the_fused_kernel():
    layer = rnnkit.SLSTM(I, H, num_heads=2)
    backend, note = resolve_with_note(layer)
    assert backend == "fused" and "SLSTMCell, which has no torch kernel" in note
    assert "no fused kernel" not in note
    cell, weights = layer.cell, layer.cell_weights(0)
    with pytest.raises(ValueError, match=r"x must be \(T, B, 3\), got \(2, 3\)"):
        slstm_scan(cell, weights, torch.randn(2, 3), cell.initial_state(1))
