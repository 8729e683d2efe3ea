"""Gradient-flow diagnostics: exact against independent autograd paths, the issue's claims on
fresh layers, gate statistics from the cell equations, and that nothing about a layer changes."""

from __future__ import annotations

import json
import math

import pytest
import torch

import rnnkit
from rnnkit.cells import GRUCell, LSTMCell
from rnnkit.cli.main import main
from rnnkit.diagnostics import (
    GradientFlowCallback,
    diagnose,
    diagnose_cells,
    fit_eta,
    format_table,
    gate_statistics,
    gate_values,
    gradient_norms,
    jacobian_norms,
    memory_horizon,
    pascanu_bound,
    unroll,
)
from rnnkit.diagnostics.unroll import output_in_layout

DTYPE = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    """Many small operations: one thread is fastest, and spares a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _layer(cell, I=3, H=5, **options):
    torch.manual_seed(0)
    return rnnkit.make_layer(cell, I, H, dtype=DTYPE, **options)


# -- the re-execution is the layer's own function -------------------------------------------------
@pytest.mark.parametrize(
    "cell, options",
    [
        ("rnn", {}),
        ("irnn", {"num_layers": 2}),
        ("lstm", {"batch_first": True, "proj_size": 2}),
        ("lstm", {"peephole": True, "layer_norm": True, "num_layers": 2}),
        ("gru", {"reset_after": False, "zoneout": 0.3}),
        ("rnn", {"nonlinearity": "sigmoid", "learn_initial_state": True}),
    ],
)
def test_unroll_reproduces_layer_output(cell, options):
    layer = _layer(cell, **options).eval()
    x = torch.randn((4, 7, 3) if layer.batch_first else (7, 4, 3), dtype=DTYPE)
    expected, _ = layer(x)
    traces = unroll(layer, x)
    torch.testing.assert_close(output_in_layout(layer, traces, x), expected, rtol=0, atol=1e-12)
    assert len(traces) == layer.num_layers and len(traces[0].states) == 8


def _hx_like(layer, state):
    fields = tuple(s.unsqueeze(0) for s in state)
    return fields if layer.mode == "LSTM" else fields[0]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_gradient_norms_match_restarted_layer(cell):
    """‖∂L/∂s_k‖ equals the gradient w.r.t. hx of the layer (torch kernels) restarted at s_k."""
    layer = _layer(cell)
    T, B = 9, 3
    x = torch.randn(T, B, 3, dtype=DTYPE)
    u = torch.randn(layer.hidden_size, dtype=DTYPE)

    def loss(output):
        return (output[-1] @ u).sum()

    curve = gradient_norms(layer, x, loss)[0]
    states = unroll(layer, x)[0].states
    for k in [0, 3, 8]:
        start = tuple(s.detach().clone().requires_grad_(True) for s in states[k])
        output, _ = layer(x[k:], _hx_like(layer, start))
        grads = torch.autograd.grad(loss(output), start)
        norm = torch.cat(grads, dim=-1).norm(dim=-1).mean()
        torch.testing.assert_close(curve[T - k], norm, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_exact_jacobian_norms_match_autograd_jacobian(cell):
    layer = _layer(cell, H=4)
    T = 6
    x = torch.randn(T, 2, 3, dtype=DTYPE)
    curve = jacobian_norms(layer, x, method="exact")[0]
    assert curve[0] == 1
    states = unroll(layer, x)[0].states
    sizes = [s.shape[-1] for s in states[0]]
    for k in [0, 2, 5]:
        start = torch.cat([s[0].detach() for s in states[k]])

        def run(flat, k=k):
            parts = flat.split(sizes)
            hx = _hx_like(layer, tuple(p.unsqueeze(0) for p in parts))
            _, final = layer(x[k:, :1], hx)
            final = final if isinstance(final, tuple) else (final,)
            return torch.cat([f.reshape(-1) for f in final])

        J = torch.autograd.functional.jacobian(run, start)
        expected = torch.linalg.matrix_norm(J, ord=2)
        torch.testing.assert_close(curve[T - k], expected, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("cell", ["rnn", "irnn", "lstm", "gru"])
def test_power_iteration_agrees_with_exact(cell):
    layer = _layer(cell, I=4, H=6)
    x = torch.randn(12, 2, 4, dtype=DTYPE)
    exact = jacobian_norms(layer, x, method="exact", samples=2)[0]
    power = jacobian_norms(layer, x, method="power", samples=2, iterations=60)[0]
    # power iteration approaches σ_max from below
    assert torch.all(power <= exact * (1 + 1e-9))
    torch.testing.assert_close(power, exact, rtol=2e-3, atol=1e-12)


# -- summaries ----------------------------------------------------------------------------------
def test_fit_eta_and_horizon_on_known_curves():
    lags = torch.arange(50, dtype=DTYPE)
    assert fit_eta(3.0 * 0.8**lags) == pytest.approx(0.8, rel=1e-12)
    assert fit_eta(torch.full((10,), 2.0)) == pytest.approx(1.0)
    assert memory_horizon(0.5**lags) == 10  # 0.5^10 < 1e-3 <= 0.5^9
    assert memory_horizon(0.5**lags, threshold=0.3) == 2
    assert memory_horizon(torch.ones(20)) is None
    # the fit stops where the gradient is exactly zero (a dead ReLU path)
    curve = torch.cat([0.9 ** torch.arange(5.0, dtype=DTYPE), torch.zeros(5, dtype=DTYPE)])
    assert fit_eta(curve) == pytest.approx(0.9)
    assert fit_eta(torch.tensor([1.0, 0.0])) is None
    with pytest.raises(ValueError, match="threshold must be > 0"):
        memory_horizon(curve, threshold=0)


def _inputs(H=32, T=120, B=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(T, B, H, generator=g, dtype=DTYPE)


def test_contracting_tanh_rnn_has_small_eta_and_short_horizon():
    layer = _layer("rnn", I=32, H=32)
    with torch.no_grad():
        w = layer.weight_hh_l0
        w.mul_(0.5 / torch.linalg.matrix_norm(w, ord=2))
    d = diagnose(layer, _inputs(), jacobian="exact")
    result = d.layers[0]
    assert result.bound == pytest.approx(0.5)
    assert result.eta <= 0.5 + 1e-9
    assert result.eta_jacobian <= 0.5 + 1e-9
    assert result.horizon is not None and result.horizon <= 10  # 0.5^10 < 1e-3


def test_irnn_at_init_has_eta_near_one():
    d = diagnose(_layer("irnn", I=32, H=32), _inputs(), jacobian=None)
    assert 0.95 <= d.layers[0].eta <= 1.0 + 1e-9
    assert d.layers[0].horizon is None  # gradient survives the whole sequence
    assert d.layers[0].dead_units == 0


def test_lstm_with_forget_bias_one_remembers_longer_than_tanh_rnn():
    x = _inputs()
    rnn = diagnose(_layer("rnn", I=32, H=32), x, jacobian=None).layers[0]
    lstm = diagnose(_layer("lstm", I=32, H=32, init="forget_bias:1"), x, jacobian=None).layers[0]
    assert rnn.horizon is not None
    assert lstm.horizon is None or lstm.horizon > rnn.horizon
    assert lstm.eta > rnn.eta


def test_pascanu_bound_uses_derivative_bound():
    for nonlinearity, gamma in [("tanh", 1.0), ("sigmoid", 0.25), ("relu", 1.0)]:
        layer = _layer("rnn", nonlinearity=nonlinearity)
        w = layer.weight_hh_l0.detach()
        expected = torch.linalg.matrix_norm(w, ord=2).item() * gamma
        assert pascanu_bound(layer.cell, {"weight_hh": w}) == pytest.approx(expected)
    lstm = _layer("lstm")
    assert pascanu_bound(lstm.cell, lstm.cell_weights(0)) is None


# -- gates ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options", [{}, {"peephole": True}, {"coupled": True, "peephole": True}, {"forget_bias": 0.7}]
)
def test_lstm_gate_values_reproduce_the_cell(options):
    torch.manual_seed(0)
    cell = LSTMCell(3, 5, dtype=DTYPE, **options)
    x = torch.randn(4, 3, dtype=DTYPE)
    state = cell.state_type(torch.randn(4, 5, dtype=DTYPE), torch.randn(4, 5, dtype=DTYPE))
    gates = gate_values(cell, x, state, cell.weights())
    h, c = cell(x, state)[1]
    c_expected = gates["forget"] * state.c + gates["input"] * gates["candidate"]
    torch.testing.assert_close(c, c_expected)
    torch.testing.assert_close(h, gates["output"] * c.tanh())


@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_gate_values_reproduce_the_cell(reset_after):
    torch.manual_seed(0)
    cell = GRUCell(3, 5, reset_after=reset_after, dtype=DTYPE)
    x, h = torch.randn(4, 3, dtype=DTYPE), torch.randn(4, 5, dtype=DTYPE)
    gates = gate_values(cell, x, cell.state_type(h), cell.weights())
    expected = (1 - gates["update"]) * gates["candidate"] + gates["update"] * h
    torch.testing.assert_close(cell(x, cell.state_type(h))[0], expected)


def test_gate_statistics_see_saturation_and_dead_units():
    x = _inputs(H=8, T=20, B=4)
    lstm = unroll(_layer("lstm", I=8, H=8, init="forget_bias:10"), x)[0]
    stats = gate_statistics(lstm)
    assert stats["gates"]["forget"]["mean"] > 0.99
    assert stats["gates"]["forget"]["saturated"] == 1.0
    assert set(stats["gates"]) == {"input", "forget", "output"}
    assert set(stats["sigma_max_blocks"]) == {"input", "forget", "candidate", "output"}
    irnn = _layer("irnn", I=8, H=8)
    with torch.no_grad():
        irnn.bias_ih_l0.fill_(-100.0)  # every unit's pre-activation is negative: all dead
    stats = gate_statistics(unroll(irnn, x)[0])
    assert stats["dead_units"] == 1.0 and stats["gates"] == {}
    assert stats["sigma_max"] == pytest.approx(1.0)


# -- observing changes nothing ------------------------------------------------------------------
def test_diagnose_leaves_the_layer_untouched():
    layer = _layer("lstm", batch_first=True).train()
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    diagnose(layer, torch.randn(2, 6, 3, dtype=DTYPE))
    assert all(torch.equal(before[k], v) for k, v in layer.state_dict().items())
    assert all(p.grad is None for p in layer.parameters())
    assert not layer._forward_hooks and not layer._forward_pre_hooks and layer.training


def test_diagnose_rejects_what_it_cannot_measure():
    with pytest.raises(ValueError, match="unidirectional"):
        diagnose(_layer("gru", bidirectional=True), torch.randn(4, 2, 3, dtype=DTYPE))
    with pytest.raises(TypeError, match="rnnkit layer"):
        diagnose(torch.nn.LSTM(3, 5), torch.randn(4, 2, 3))
    with pytest.raises(ValueError, match="expects input_size=3"):
        diagnose(_layer("rnn"), torch.randn(4, 2, 7, dtype=DTYPE))


def test_diagnose_cells_table_and_dict():
    diagnoses = diagnose_cells(["rnn", "lstm"], hidden_size=6, length=15, batch_size=2)
    table = format_table(diagnoses)
    assert table.splitlines()[2].startswith("rnn") and "lstm" in table
    record = json.loads(json.dumps(diagnoses[1].to_dict()))
    assert record["init"] == "rnnkit" and len(record["layers"][0]["gradient"]) == 16


# -- training callback ----------------------------------------------------------------------
def _train(callbacks):
    from rnnkit.bench.long_memory import BenchSettings, train_on_task
    from rnnkit.bench.tasks import Adding

    settings = BenchSettings(hidden_size=8, max_steps=6, time_budget=None, eval_every=3)
    return train_on_task(Adding(8, test_size=16), "lstm", settings, callbacks=callbacks)


def test_callback_logs_gradient_flow_and_changes_nothing():
    plain = _train([])
    observed = _train([GradientFlowCallback(interval=3)])
    assert [line["val_mse"] for line in plain["curve"]] == [
        line["val_mse"] for line in observed["curve"]
    ]
    line = observed["curve"][-1]
    assert line["clip_events"] <= 3 and 0 <= line["clip_fraction"] <= 1
    assert line["grad_norm_max"] >= line["grad_norm_mean"] > 0
    flow = line["gradient_flow"]["rnn"][0]
    assert flow["relative_gradient"][0] == 1.0 and len(flow["relative_gradient"]) == 9
    assert flow["eta"] is not None and math.isfinite(flow["eta"])


# -- command line ---------------------------------------------------------------------------
def test_cli_diagnose_table_json_and_png(tmp_path, capsys):
    png = tmp_path / "flow.png"
    args = ["diagnose", "--cells", "rnn,lstm:chrono:20", "--hidden-size", "6", "--length", "12"]
    assert main([*args, "--png", str(png)]) == 0
    table = capsys.readouterr().out
    assert png.stat().st_size > 1000
    assert main([*args, "--json", "--no-plot"]) == 0
    payload = json.loads(capsys.readouterr().out)
    rows = {d["label"]: d["layers"][0] for d in payload["diagnoses"]}
    assert set(rows) == {"rnn", "lstm:chrono:20"}
    line = next(row for row in table.splitlines() if row.startswith("lstm:chrono"))
    assert f"{rows['lstm:chrono:20']['eta']:.3f}" in line  # the same numbers


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--cells", "transformer"], "cell must be one of"),
        (["--init", "chrono"], "needs a value"),
        (["--length", "0"], "--length must be >= 1"),
        (["--threshold", "2"], "--threshold must be in"),
    ],
)
def test_cli_diagnose_bad_options(argv, message, capsys):
    assert main(["diagnose", *argv, "--no-plot"]) == 2
    assert message in capsys.readouterr().err


def test_cli_diagnose_run_dir(tmp_path, capsys, monkeypatch):
    from rnnkit.io import RunDir
    from rnnkit.tasks.lm import LanguageModel

    torch.manual_seed(0)
    model = LanguageModel(vocab_size=11, embedding_size=4, hidden_size=6, num_layers=2)
    run = RunDir.prepare(tmp_path / "run").create()
    run.write_config({"task": "lm", "model": model.config()})
    run.save_weights(model.state_dict())
    before = sorted(p.name for p in run.path.iterdir())
    png = tmp_path / "flow.png"
    argv = ["diagnose", str(run.path), "--length", "10", "--json", "--png", str(png)]
    assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out)
    (d,) = payload["diagnoses"]
    assert d["label"] == "rnn" and len(d["layers"]) == 2
    assert png.read_bytes()[:4] == b"\x89PNG" and payload["png"] == str(png)
    assert sorted(p.name for p in run.path.iterdir()) == before  # the run is only read
    assert main(argv) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0
    capsys.readouterr()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the default plot goes to the working directory
    assert main(["diagnose", str(run.path), "--length", "10"]) == 0
    assert (elsewhere / "gradient_flow.png").is_file()
    assert sorted(p.name for p in run.path.iterdir()) == before
    capsys.readouterr()
    assert main(["diagnose", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err
