"""Lowering to ONNX's own LSTM / GRU / RNN operators: the weight mapping of every expressible
configuration against the layers in float64, and the written nodes in onnxruntime."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.backends import onnx_ops

# (family, options) that ONNX's operators express, and the node each becomes.
EXPRESSIBLE = [
    ("lstm", {}, "LSTM"),
    ("lstm", {"peephole": True}, "LSTM"),
    ("lstm", {"coupled": True}, "LSTM"),
    ("lstm", {"coupled": True, "peephole": True, "forget_bias": 1.0}, "LSTM"),
    ("lstm", {"bias": False, "forget_bias": 0.5}, "LSTM"),
    ("lstm", {"bidirectional": True, "num_layers": 2, "peephole": True}, "LSTM"),
    ("lstm", {"num_layers": 2, "residual": True, "learn_initial_state": True}, "LSTM"),
    ("gru", {}, "GRU"),
    ("gru", {"reset_after": False, "bidirectional": True, "num_layers": 2}, "GRU"),
    ("rnn", {}, "RNN"),
    ("rnn", {"nonlinearity": "relu", "bidirectional": True}, "RNN"),
    ("irnn", {}, "RNN"),
]
BLOCKED = [
    ("lstm", {"layer_norm": True}, "layer_norm=True"),
    ("lstm", {"proj_size": 3}, "proj_size=3"),
    ("lstm", {"zoneout": 0.2}, "zoneout"),
    ("rnn", {"nonlinearity": "elu"}, "nonlinearity='elu'"),
    ("mingru", {}, "has no ONNX operator"),
]


def config_id(config) -> str:
    return "-".join([config[0], *(f"{k}={v}" for k, v in config[1].items())])


def layer_for(family, options, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    layer = rnnkit.make_layer(family, 3, 5, **options).to(dtype).eval()
    with torch.no_grad():  # non-trivial peepholes and initial states
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return layer


def batch(layer, T, B, dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, 3, generator=g, dtype=dtype)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = T
    return x, lengths


@pytest.mark.parametrize("config", EXPRESSIBLE, ids=config_id)
def test_operator_semantics_reproduce_the_layer_in_float64(config):
    """Each cell's ``onnx_recurrence`` fed to the operators' torch implementations (ONNX's
    equations) gives the layer's outputs and final state, with and without lengths."""
    family, options, _ = config
    layer = layer_for(family, options)
    assert onnx_ops.blocker(layer) is None
    x, lengths = batch(layer, 7, 4)
    rows = layer.num_layers * layer.num_directions
    for given in (None, lengths):
        with torch.no_grad():
            expected, final = layer(x, lengths=given)
            state = layer._initial_state(None, 4, x, False)
            got, got_final = onnx_ops.forward(layer, x, state, given)
        final = final if isinstance(final, tuple) else (final,)
        torch.testing.assert_close(got, expected, atol=1e-12, rtol=1e-12)
        for a, b in zip(got_final, final, strict=True):
            assert a.shape[0] == rows
            torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("config", BLOCKED, ids=config_id)
def test_what_the_operators_cannot_express_says_why(config):
    family, options, reason = config
    assert reason in onnx_ops.blocker(layer_for(family, options))
    assert onnx_ops.blocker(layer_for("lstm", {}).train()) == "training mode"


class Tagger(nn.Module):
    """A user's model: layer over padded series with lengths, state returned."""

    def __init__(self, layer) -> None:
        super().__init__()
        self.layer = layer
        self.head = nn.Linear(layer.output_size * layer.num_directions, 2)

    def forward(self, x, lengths):
        y, state = self.layer(x, lengths=lengths)
        state = state if isinstance(state, tuple) else (state,)
        return (self.head(y), *state)


def onnx_nodes(path) -> list[str]:
    import onnx

    return [node.op_type for node in onnx.load(str(path)).graph.node]


# A sample of the grid through onnxruntime (each export takes seconds).
WRITTEN = [EXPRESSIBLE[i] for i in (3, 5, 8, 10)]


@pytest.mark.parametrize("config", WRITTEN, ids=config_id)
def test_onnx_file_holds_the_operator_and_matches_at_other_lengths(config, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from rnnkit import export

    family, options, node = config
    model = Tagger(layer_for(family, options, torch.float32)).eval()
    path = export.export_onnx(model, batch(model.layer, 5, 3, torch.float32), tmp_path / "m.onnx")
    nodes = onnx_nodes(path)
    assert node in nodes and "Scan" not in nodes
    for T, B in [(1, 1), (13, 4), (30, 2)]:
        deviation = export.check_onnx(path, model, batch(model.layer, T, B, torch.float32, T))
        assert deviation <= 1e-5


def test_native_ops_off_and_blocked_layers_keep_the_scan(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from rnnkit import export

    model = Tagger(layer_for("lstm", {}, torch.float32)).eval()
    args = batch(model.layer, 5, 3, torch.float32)
    path = export.export_onnx(model, args, tmp_path / "off.onnx", native_ops=False)
    assert "Scan" in onnx_nodes(path) and "LSTM" not in onnx_nodes(path)
    blocked = Tagger(layer_for("lstm", {"layer_norm": True}, torch.float32)).eval()
    path = export.export_onnx(blocked, args, tmp_path / "ln.onnx")
    assert "Scan" in onnx_nodes(path) and "LSTM" not in onnx_nodes(path)
    assert export.check_onnx(path, blocked, batch(blocked.layer, 11, 2, torch.float32)) <= 1e-5
    # Outside export_onnx nothing lowers: torch.export programs keep the traced scan.
    program = torch.export.export(model, args)
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert not any("onnx_lstm" in t for t in targets)
