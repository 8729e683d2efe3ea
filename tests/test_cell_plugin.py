"""A cell family defined here, outside the library, plugs into everything through the cell's
self-description and one registry line: layers (stacked, bidirectional, lengths, packed),
backend choice, ``make_layer``, initialisers (by parameter role) and diagnostics.

Also the ``sequence_scan`` seam: a cell whose gates do not read the state brings its own
whole-sequence (parallel) scan, which ``fused``/``auto`` run and ``reference`` is held to.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit
from rnnkit.backends.reference import stack_time
from rnnkit.cells import HiddenState, RecurrentCell
from rnnkit.diagnostics import diagnose, diagnose_cells, gate_values, gradient_norms, jacobian_norms
from rnnkit.layers import (
    RecurrentLayer,
    cell_families,
    cell_family,
    make_layer,
    register_cell_family,
)
from rnnkit.layers.registry import CELL_LAYERS

DTYPE = torch.float64
I, H, T, B = 3, 4, 7, 3
ACTIVATIONS = {"tanh": torch.tanh, "softsign": torch.nn.functional.softsign}


class LeakyCell(RecurrentCell):
    r"""A leaky gated unit: a GRU without a reset gate, with a learned candidate gain.

    .. math::
        a_t = W_{ih} x_t + W_{hh} h_{t-1} + b, \quad f_t = σ(a_f), \quad
        g_t = γ ⊙ φ(a_g), \quad h_t = f_t ⊙ h_{t-1} + (1 - f_t) ⊙ g_t

    Parameters: ``weight_ih`` (2H, I), ``weight_hh`` (2H, H), ``bias_ih`` (2H), ``gain`` γ (H).
    """

    gate_blocks = ("forget", "candidate")
    sigmoid_gates = ("forget",)
    forget_gate = "forget"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        candidate_activation: str = "tanh",
        create_parameters: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(
            input_size,
            hidden_size,
            bias,
            create_parameters=create_parameters,
            device=device,
            dtype=dtype,
        )
        self.candidate_activation = candidate_activation
        self._finish_init()

    def parameter_shapes(self):
        H, I = self.hidden_size, self.input_size
        shapes = {"weight_ih": (2 * H, I), "weight_hh": (2 * H, H)}
        if self.bias:
            shapes["bias_ih"] = (2 * H,)
        shapes["gain"] = (H,)
        return shapes

    def parameter_roles(self):
        roles = {"weight_ih": "input", "weight_hh": "recurrent", "bias_ih": "bias", "gain": "gain"}
        return {name: roles[name] for name in self.parameter_shapes()}

    def gates(self, x, state, weights):
        a = x @ weights["weight_ih"].t() + state.h @ weights["weight_hh"].t()
        if self.bias:
            a = a + weights["bias_ih"]
        a_f, a_g = a.chunk(2, dim=1)
        g = weights["gain"] * ACTIVATIONS[self.candidate_activation](a_g)
        return {"forget": a_f.sigmoid(), "candidate": g}

    def step(self, x, state, weights):
        gates = self.gates(x, state, weights)
        f, g = gates["forget"], gates["candidate"]
        h = g + f * (state.h - g)
        return h, HiddenState(h)

    def options_repr(self) -> str:
        if self.candidate_activation == "tanh":
            return ""
        return f", candidate_activation={self.candidate_activation!r}"


class Leaky(RecurrentLayer):
    """Stacked, optionally bidirectional layer of :class:`LeakyCell`."""

    family_options = ("candidate_activation",)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        candidate_activation: str = "tanh",
        device=None,
        dtype=None,
        **options,
    ) -> None:
        def make_cell(layer_input, **kw):
            return LeakyCell(
                layer_input, hidden_size, bias, candidate_activation=candidate_activation, **kw
            )

        super().__init__(
            make_cell,
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            device=device,
            dtype=dtype,
            **options,
        )


@pytest.fixture(autouse=True)
def leaky_family():
    register_cell_family("leaky", Leaky)  # the one line a new family needs
    yield
    CELL_LAYERS.pop("leaky")  # leave the registry as the other test files expect it


def _layer(**options) -> Leaky:
    torch.manual_seed(0)
    return make_layer("leaky", I, H, dtype=DTYPE, **options)


def _x(t=T, b=B, seed=1) -> Tensor:
    return torch.randn(t, b, I, dtype=DTYPE, generator=torch.Generator().manual_seed(seed))


# -- registry ------------------------------------------------------------------------------------
def test_registry_sees_the_family_and_its_options():
    assert cell_family("leaky") is Leaky
    assert cell_families()["leaky"].family_options == ("candidate_activation",)
    assert {"lstm", "gru", "rnn", "irnn", "leaky"} <= set(cell_families())
    owners = [name for name, cls in cell_families().items() if "peephole" in cls.family_options]
    assert owners == ["lstm"]
    layer = make_layer("leaky", I, H, candidate_activation="softsign", num_layers=2)
    assert isinstance(layer, Leaky)
    assert "candidate_activation='softsign'" in repr(layer)
    known = ", ".join(cell_families())  # the built-in families, then this one
    assert known.endswith(", leaky")
    with pytest.raises(ValueError, match=f"cell must be one of {known}"):
        make_layer("tcn", I, H)


def test_registry_rejects_bad_registrations():
    register_cell_family("leaky", Leaky)  # the same class again: a no-op
    with pytest.raises(ValueError, match=r"'leaky' is already registered to Leaky"):
        register_cell_family("leaky", rnnkit.GRU)
    with pytest.raises(ValueError, match=r"lowercase word"):
        register_cell_family("Leaky", Leaky)
    with pytest.raises(TypeError, match=r"needs a RecurrentLayer subclass"):
        register_cell_family("cell", LeakyCell)
    assert cell_family("leaky") is Leaky


def test_registry_view_is_read_only():
    with pytest.raises(TypeError):
        cell_families()["other"] = Leaky


# -- layers --------------------------------------------------------------------------------------
def test_parameter_names_follow_torch_scheme():
    layer = _layer(num_layers=2, bidirectional=True)
    names = dict(layer.named_parameters())
    assert tuple(names["weight_ih_l1_reverse"].shape) == (2 * H, 2 * H)
    assert tuple(names["gain_l0"].shape) == (H,)
    assert "bias_ih_l1" in names


def _hand_stepped(layer: Leaky, x: Tensor, h0: Tensor) -> tuple[Tensor, Tensor]:
    """Unidirectional stack run by stepping each layer's cell by hand."""
    finals = []
    for index, cell in enumerate(layer._cells):
        weights = layer.cell_weights(index)
        state, outputs = HiddenState(h0[index]), []
        for x_t in x.unbind(0):
            _, state = cell.step(x_t, state, weights)
            outputs.append(state.h)
        x = torch.stack(outputs)
        finals.append(state.h)
    return x, torch.stack(finals)


def test_stacked_layer_equals_the_hand_stepped_cell():
    layer = _layer(num_layers=2)
    x, h0 = _x(), torch.randn(2, B, H, dtype=DTYPE)
    output, h_n = layer(x, h0)
    expected_output, expected_h = _hand_stepped(layer, x, h0)
    torch.testing.assert_close(output, expected_output)
    torch.testing.assert_close(h_n, expected_h)


@pytest.mark.parametrize("batch_first", [False, True])
def test_bidirectional_lengths_equal_each_sequence_alone(batch_first):
    layer = _layer(num_layers=2, bidirectional=True, batch_first=batch_first)
    x, lengths = _x(), torch.tensor([7, 3, 5])
    output, h_n = layer(x.transpose(0, 1) if batch_first else x, lengths=lengths)
    if batch_first:
        output = output.transpose(0, 1)
    assert output.shape == (T, B, 2 * H) and h_n.shape == (4, B, H)
    for b, n in enumerate(lengths.tolist()):
        alone = x[:n, b : b + 1]
        alone_output, alone_h = layer(alone.transpose(0, 1) if batch_first else alone)
        if batch_first:
            alone_output = alone_output.transpose(0, 1)
        torch.testing.assert_close(output[:n, b], alone_output[:, 0])
        torch.testing.assert_close(h_n[:, b], alone_h[:, 0])
        assert (output[n:, b] == 0).all()


def test_packed_sequence_in_packed_sequence_out():
    layer = _layer(bidirectional=True)
    x, lengths = _x(), torch.tensor([4, 7, 2])
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    output, h_n = layer(packed)
    assert isinstance(output, torch.nn.utils.rnn.PackedSequence)
    padded, out_lengths = pad_packed_sequence(output, total_length=T)
    expected, expected_h = layer(x, lengths=lengths)
    torch.testing.assert_close(padded, expected)
    torch.testing.assert_close(h_n, expected_h)
    assert out_lengths.tolist() == lengths.tolist()


def test_regularisers_and_learned_initial_state_run_through_the_cell():
    layer = _layer(num_layers=2, zoneout=0.2, variational_dropout=0.1, learn_initial_state=True)
    layer.train()
    output, h_n = layer(_x())
    output.sum().backward()
    assert layer.initial_h.grad is not None
    with pytest.raises(ValueError, match=r"zoneout must be a float or a tuple of 1 floats \(h\)"):
        _layer(zoneout=(0.1, 0.2))
    # DropConnect finds the recurrent weight by its role.
    dropped = _layer(weight_drop=0.5).train()
    weights = dropped.layer_weights(0, 0)
    assert not torch.equal(weights["weight_hh"], dropped.weight_hh_l0)
    assert torch.equal(weights["weight_ih"], dropped.weight_ih_l0)


def test_gradients_are_exact():
    layer = _layer(bidirectional=True)
    x = _x(t=4, b=2).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: layer(x, lengths=torch.tensor([4, 2]))[0], (x,))


# -- backends ------------------------------------------------------------------------------------
def test_auto_falls_back_to_reference_with_a_note():
    layer = _layer()
    assert layer.resolved_backend() == "reference"
    note = layer.backend_note()
    assert note == (
        "backend='auto' runs 'reference': torch's kernels cannot serve LeakyCell, which has no "
        "torch kernel, and LeakyCell has no fused kernel"
    )
    assert "\n" not in note
    reference = _layer(backend="reference")
    assert reference.backend_note() is None
    torch.testing.assert_close(layer(_x())[0], reference(_x())[0])


def test_explicit_native_or_fused_raise_naming_the_cell():
    with pytest.raises(
        ValueError,
        match=r"backend='native' cannot serve LeakyCell, which has no torch kernel: .* "
        r"use backend='reference'",
    ):
        _layer(backend="native")(_x())
    with pytest.raises(
        ValueError,
        match=r"backend='fused' cannot serve LeakyCell: the cell has no fused whole-sequence "
        r"kernel .* use backend='reference'",
    ):
        _layer(backend="fused").resolved_backend()


# -- init, by parameter role ---------------------------------------------------------------------
def _blocks(w: Tensor) -> list[Tensor]:
    return list(w.detach().split(H, dim=0))


@pytest.mark.parametrize("init", ["rnnkit", "orthogonal", "identity", "torch"])
def test_init_schemes_read_the_roles(init):
    layer = _layer(init=init, num_layers=2)
    eye = torch.eye(H, dtype=DTYPE)
    for w in (layer.gain_l0, layer.gain_l1):
        torch.testing.assert_close(w.detach(), torch.ones(H, dtype=DTYPE))  # gains start at one
    if init == "torch":
        bound = 1 / math.sqrt(H)
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0"):
            w = getattr(layer, name)
            assert w.abs().max() <= bound and w.std() > 0
        return
    for block in _blocks(layer.weight_hh_l1):
        if init == "identity":
            torch.testing.assert_close(block, eye)
        else:
            torch.testing.assert_close(block @ block.t(), eye)
    for block in _blocks(layer.weight_ih_l0):  # Glorot-uniform bound per block
        assert block.abs().max() <= math.sqrt(6 / (I + H))
    assert (layer.bias_ih_l0 == 0).all()  # LeakyCell declares no default forget bias


def test_forget_gate_initialisers_use_the_declared_gate():
    layer = _layer(init="forget_bias:2")
    forget, candidate = _blocks(layer.bias_ih_l0)
    assert (forget == 2).all() and (candidate == 0).all()
    chrono = _layer(init="chrono:20")
    forget, candidate = _blocks(chrono.bias_ih_l0)
    assert ((forget >= 0) & (forget <= math.log(19) + 1e-12)).all() and (candidate == 0).all()
    scaled = _layer(init="scaled_identity:0.5")
    for block in _blocks(scaled.weight_hh_l0):
        torch.testing.assert_close(block, 0.5 * torch.eye(H, dtype=DTYPE))
    with pytest.raises(ValueError, match=r"needs bias=True"):
        _layer(init="forget_bias:2", bias=False)


def test_a_parameter_may_not_shadow_a_cell_attribute():
    class Shadowing(LeakyCell):
        def parameter_shapes(self):
            return {
                "bias" if name == "bias_ih" else name: shape
                for name, shape in super().parameter_shapes().items()
            }

    with pytest.raises(ValueError, match=r"parameter name 'bias' clashes with an attribute"):
        Shadowing(I, H)


def test_an_undeclared_role_is_an_error():
    class Unroled(LeakyCell):
        def parameter_roles(self):
            return {**super().parameter_roles(), "gain": "scale"}

    with pytest.raises(ValueError, match=r"gives parameter 'gain' the role 'scale'"):
        Unroled(I, H)


# -- diagnostics ---------------------------------------------------------------------------------
def test_gate_values_reproduce_the_next_state():
    torch.manual_seed(0)
    cell = LeakyCell(I, H, dtype=DTYPE)
    x, h = torch.randn(B, I, dtype=DTYPE), torch.randn(B, H, dtype=DTYPE)
    gates = gate_values(cell, x, HiddenState(h), cell.weights())
    expected = gates["forget"] * h + (1 - gates["forget"]) * gates["candidate"]
    torch.testing.assert_close(cell(x, HiddenState(h))[0], expected)


def test_diagnostics_run_on_the_family():
    layer = _layer(num_layers=2, init="forget_bias:10")
    x = _x(t=12)
    curves = gradient_norms(layer, x)
    assert len(curves) == 2 and curves[0].shape == (13,)
    assert jacobian_norms(layer, x)[0].shape == (13,)
    diagnosis = diagnose(layer, x)
    top = diagnosis.layers[0]
    assert set(top.gates) == {"forget"} and top.gates["forget"]["mean"] > 0.99
    assert set(top.sigma_max_blocks) == {"forget", "candidate"}
    assert top.bound is None  # Pascanu's bound is for Elman cells
    diagnoses = diagnose_cells(["leaky", "leaky:orthogonal"], hidden_size=4, length=10)
    assert [d.label for d in diagnoses] == ["leaky", "leaky:orthogonal"]


# -- the sequence_scan seam ----------------------------------------------------------------------
def parallel_scan(cell, weights, x, state, keep=None):
    """MinGRU's recurrence ``h_t = c_t ⊙ h_{t-1} + u_t`` by Hillis–Steele doubling.

    ``c_t = 1 - z_t``, ``u_t = z_t ⊙ h̃_t`` (with ``keep``: ``c ← k + (1 - k) c``,
    ``u ← (1 - k) u``). After the round with offset d, ``(c_t, u_t)`` maps ``h_{t-2d}`` to
    ``h_t``; log2(T) rounds, each one wide op over all steps.
    """
    T = x.shape[0]
    a = x @ weights["weight_ih"].t() + weights["bias_ih"]  # (T, B, 2H), all steps at once
    z, candidate = a.sigmoid().chunk(2, dim=2)[0], a.chunk(2, dim=2)[1]
    coefficient, offset_term = 1 - z, z * candidate
    if keep is not None and keep[0] is not None:
        k = keep[0]
        coefficient, offset_term = k + (1 - k) * coefficient, (1 - k) * offset_term
    d = 1
    while d < T:
        ones = torch.ones_like(coefficient[:d])
        previous_c = torch.cat([ones, coefficient[:-d]])
        previous_u = torch.cat([torch.zeros_like(ones), offset_term[:-d]])
        coefficient, offset_term = coefficient * previous_c, coefficient * previous_u + offset_term
        d *= 2
    h = coefficient * state.h + offset_term
    final = HiddenState(h[-1]) if T else state
    return stack_time(list(h.unbind(0)), x, cell.output_size), final


class MinGRUCell(RecurrentCell):
    r"""minGRU (Feng et al. 2024): gates read only ``x_t``, so a parallel scan trains it.

    ``z_t = σ(W_z x_t + b_z)``, ``h̃_t = W_h x_t + b_h``, ``h_t = (1 - z_t) h_{t-1} + z_t h̃_t``.
    """

    gate_blocks = ("update", "candidate")
    sigmoid_gates = ("update",)
    sequence_scan = staticmethod(parallel_scan)

    def __init__(self, input_size, hidden_size, **kw):
        super().__init__(input_size, hidden_size, **kw)
        self._finish_init()

    def parameter_shapes(self):
        return {
            "weight_ih": (2 * self.hidden_size, self.input_size),
            "bias_ih": (2 * self.hidden_size,),
        }

    def parameter_roles(self):
        return {"weight_ih": "input", "bias_ih": "bias"}

    def gates(self, x, state, weights):
        a = x @ weights["weight_ih"].t() + weights["bias_ih"]
        a_z, candidate = a.chunk(2, dim=1)
        return {"update": a_z.sigmoid(), "candidate": candidate}

    def step(self, x, state, weights):
        gates = self.gates(x, state, weights)
        h = state.h + gates["update"] * (gates["candidate"] - state.h)
        return h, HiddenState(h)


def _min_gru(backend: str, **options) -> RecurrentLayer:
    torch.manual_seed(0)
    return RecurrentLayer(
        lambda layer_input, **kw: MinGRUCell(layer_input, H, **kw),
        I,
        H,
        init="torch",
        backend=backend,
        dtype=DTYPE,
        **options,
    )


def test_sequence_scan_serves_fused_and_auto():
    layer = _min_gru("auto")
    assert layer.resolved_backend() == "fused"
    assert layer.cell.fused_kernel() is parallel_scan
    calls = []

    def counted(*args):
        calls.append(1)
        return parallel_scan(*args)

    layer.cell.sequence_scan = counted
    layer(_x())
    assert calls == [1]
    assert layer.backend_note() == (
        "backend='auto' runs 'fused': torch's kernels cannot serve MinGRUCell, which has no "
        "torch kernel"
    )


@pytest.mark.parametrize("zoneout", [0.0, 0.3])
def test_sequence_scan_equals_the_step_loop(zoneout):
    options = {"num_layers": 2, "bidirectional": True, "zoneout": zoneout}
    fused, reference = _min_gru("fused", **options), _min_gru("reference", **options)
    fused.eval(), reference.eval()
    x, lengths = _x(), torch.tensor([7, 2, 5])
    h0 = torch.randn(4, B, H, dtype=DTYPE)
    results = []
    for layer in (fused, reference):
        xi = x.clone().requires_grad_(True)
        output, h_n = layer(xi, h0, lengths=lengths)
        (output.square().sum() + h_n.sum()).backward()
        grads = [xi.grad] + [p.grad for p in layer.parameters()]
        results.append((output, h_n, grads))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])
    for a, b in zip(results[0][2], results[1][2]):
        torch.testing.assert_close(a, b)


def test_diagnostics_without_a_recurrent_weight():
    diagnosis = diagnose(_min_gru("auto"), _x(t=8))
    top = diagnosis.layers[0]
    assert top.sigma_max is None and top.sigma_max_blocks == {}
    assert set(top.gates) == {"update"}


def test_the_family_trains_a_language_model_from_the_command_line(tmp_path, capsys):
    from rnnkit.cli.main import main
    from rnnkit.runs import evaluate_run, load_run

    text = tmp_path / "t.txt"
    text.write_text("abcabcabd " * 40)
    out = tmp_path / "run"
    argv = ["train", "lm", "--cell", "leaky", "--text", str(text), "--steps", "3"]
    argv += ["--eval-every", "3", "--hidden-size", "6", "--embedding-size", "4", "--bptt", "8"]
    assert main([*argv, "--batch-size", "2", "--out", str(out), "--no-progress"]) == 0
    loaded = load_run(out)
    assert isinstance(loaded.task.rnn, Leaky) and loaded.task.rnn.resolved_backend() == "reference"
    assert evaluate_run(out)["loss"] > 0
    assert main([*argv, "--peephole", "--out", str(tmp_path / "bad")]) == 2
    assert "--peephole applies to --cell lstm only" in capsys.readouterr().err
