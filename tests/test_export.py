"""Export: rnnkit layers inside a user's model through ``torch.export`` and ONNX, parity at
lengths and batches other than the export example's."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

import rnnkit

VOCAB, EMBED, HIDDEN = 13, 6, 8


class WordModel(nn.Module):
    """The PyTorch word-language-model shape: embedding → recurrent layer → linear, with the
    state passed in and returned."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, EMBED)
        self.rnn = layer
        self.decoder = nn.Linear(layer.output_size * layer.num_directions, VOCAB)

    def forward(self, ids, hidden):
        output, hidden = self.rnn(self.embedding(ids), hidden)
        return self.decoder(output), hidden


def make_model(family: str, seed: int = 0, **options) -> WordModel:
    torch.manual_seed(seed)
    layer = rnnkit.make_layer(family, EMBED, HIDDEN, **options)
    model = WordModel(layer).eval()
    with torch.no_grad():  # non-trivial peephole / layer-norm parameters
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def inputs(model: WordModel, T: int, B: int, seed: int = 1):
    layer = model.rnn
    g = torch.Generator().manual_seed(seed)
    rows = layer.num_layers * layer.num_directions
    ids = torch.randint(0, VOCAB, (B, T) if layer.batch_first else (T, B), generator=g)
    state = tuple(torch.randn(rows, B, s, generator=g) for s in layer.cell.state_sizes())
    return ids, (state if len(state) > 1 else state[0])


def dynamic_shapes(model: WordModel):
    T = torch.export.Dim("T", min=1, max=4096)
    B = torch.export.Dim("B", min=1, max=1024)
    ids = {0: B, 1: T} if model.rnn.batch_first else {0: T, 1: B}
    state = tuple({1: B} for _ in model.rnn.cell.state_sizes())
    return ids, (state if len(state) > 1 else state[0])


def max_deviation(outputs, expected) -> float:
    """Max abs error over every output (relative where an output's scale exceeds 1: IRNN)."""
    outputs, expected = torch.utils._pytree.tree_leaves((outputs, expected)), None
    half = len(outputs) // 2
    return max(
        float((torch.as_tensor(o) - e).abs().max() / max(1.0, float(e.abs().max())))
        for o, e in zip(outputs[:half], outputs[half:])
    )


# (family, options): the variant grid that export serves (all pass; the test runs a sample
# of it by default to stay fast: RNNKIT_EXPORT_GRID=1 runs all).
ALL_CONFIGS = [
    ("lstm", {}),
    ("gru", {}),
    ("rnn", {}),
    ("lstm", {"peephole": True}),
    ("lstm", {"coupled": True}),
    ("lstm", {"layer_norm": True}),
    ("lstm", {"bidirectional": True}),
    ("lstm", {"num_layers": 2}),
    ("lstm", {"proj_size": 5}),
    ("lstm", {"layer_norm": True, "proj_size": 5}),
    ("lstm", {"batch_first": True, "peephole": True, "coupled": True}),
    ("lstm", {"zoneout": 0.2, "forget_bias": 1.0}),
    ("gru", {"reset_after": False, "bidirectional": True, "num_layers": 2}),
    ("rnn", {"nonlinearity": "relu"}),
    ("rnn", {"nonlinearity": "elu"}),
    ("irnn", {}),
    ("mingru", {}),
    ("minlstm", {}),
    ("slstm", {}),
]
DEFAULT = {
    "lstm",
    "gru",
    "lstm-peephole=True",
    "lstm-layer_norm=True-proj_size=5",
    "lstm-batch_first=True-peephole=True-coupled=True",
    "mingru",
}


def config_id(config) -> str:
    family, options = config
    return "-".join([family, *(f"{k}={v}" for k, v in options.items())])


CONFIGS = [
    c for c in ALL_CONFIGS if os.environ.get("RNNKIT_EXPORT_GRID") or config_id(c) in DEFAULT
]


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_torch_export_dynamic_batch_and_time(config):
    family, options = config
    model = make_model(family, **options)
    program = torch.export.export(model, inputs(model, 5, 3), dynamic_shapes=dynamic_shapes(model))
    for T, B in [(1, 1), (11, 4), (23, 2)]:
        args = inputs(model, T, B, seed=T)
        with torch.no_grad():
            expected = model(*args)
            got = program.module()(*args)
        assert max_deviation(got, expected) <= 1e-5


def test_onnx_user_model_other_lengths(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from rnnkit import export

    model = make_model("lstm", peephole=True, coupled=True)
    path = export.export_onnx(model, inputs(model, 5, 3), tmp_path / "m.onnx")
    for T, B in [(1, 1), (13, 2)]:
        assert export.check_onnx(path, model, inputs(model, T, B, seed=T)) <= 1e-5


def test_streaming_language_model_program(tmp_path):
    from rnnkit import export, runs
    from rnnkit.data.vocab import CharVocab
    from rnnkit.io import RunDir
    from rnnkit.tasks.lm import SPEC, LanguageModel

    torch.manual_seed(0)
    lm = LanguageModel(10, 8, 16, num_layers=2).eval()
    vocab = CharVocab.build("abcdefghi")
    loaded = runs.LoadedRun(SPEC, lm, vocab, {}, RunDir(tmp_path))
    (path,), sidecar = export.export_run(loaded, tmp_path / "lm.pt2", format="pt2")
    program = torch.export.load(str(path))
    stream = export.StreamingModel(lm)
    ids = torch.randint(0, 10, (3, 12))
    # Two chunks through the program equal one whole-sequence call of the model.
    state = stream.initial_state(3)
    with torch.no_grad():
        first = program.module()(ids[:, :5], *state)
        second = program.module()(ids[:, 5:], *first[1:])
        logits, _ = lm(ids)
    assert float((torch.cat([first[0], second[0]], 1) - logits).abs().max()) <= 1e-5
    meta = __import__("json").loads(sidecar.read_text())
    graph = meta["graphs"]["model"]
    assert list(graph["inputs"]) == ["ids", "h0", "c0"]
    assert graph["outputs"]["logits"] == {"dtype": "float32", "shape": ["batch", "time", 10]}
    assert graph["inputs"]["c0"]["shape"] == [2, "batch", 16]
    assert meta["encoders"] == vocab.to_json() and meta["task"] == "lm"


def test_cli_export_missing_run(tmp_path, capsys):
    from rnnkit.cli.main import main

    code = main(["export", str(tmp_path / "nope"), "--format", "pt2"])
    assert code == 2
    assert "error:" in capsys.readouterr().err


class Padded(nn.Module):
    """A padded batch with ``lengths``: outputs zero past each length, the state at each
    sequence's last valid step."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.rnn = layer

    def forward(self, x, lengths):
        return self.rnn(x, lengths=lengths)


PADDED = [
    ("lstm", {"bidirectional": True, "num_layers": 2}),
    ("gru", {}),
    ("lstm", {"proj_size": 5, "batch_first": True}),
    ("mingru", {"bidirectional": True}),
    ("slstm", {}),
]


@pytest.mark.parametrize("config", PADDED, ids=config_id)
def test_lengths_export_dynamic(config):
    family, options = config
    torch.manual_seed(0)
    model = Padded(rnnkit.make_layer(family, EMBED, HIDDEN, **options)).eval()
    first = model.rnn.batch_first
    T, B = torch.export.Dim("T", min=1), torch.export.Dim("B", min=1)
    x = torch.randn(3, 5, EMBED) if first else torch.randn(5, 3, EMBED)
    shapes = ({0: B, 1: T} if first else {0: T, 1: B}, {0: B})
    program = torch.export.export(model, (x, torch.tensor([5, 2, 4])), dynamic_shapes=shapes)
    for T_, lengths in [(9, [9, 1, 4, 7]), (1, [1]), (6, [3, 6])]:
        g = torch.Generator().manual_seed(T_)
        shape = (len(lengths), T_, EMBED) if first else (T_, len(lengths), EMBED)
        args = (torch.randn(*shape, generator=g), torch.tensor(lengths))
        with torch.no_grad():
            assert max_deviation(program.module()(*args), model(*args)) <= 1e-5


def test_lengths_onnx_bidirectional(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from rnnkit import export

    torch.manual_seed(0)
    model = Padded(rnnkit.LSTM(EMBED, HIDDEN, bidirectional=True, batch_first=True)).eval()
    args = (torch.randn(3, 5, EMBED), torch.tensor([5, 2, 4]))
    path = export.export_onnx(model, args, tmp_path / "padded.onnx")
    other = (torch.randn(4, 8, EMBED), torch.tensor([8, 1, 3, 6]))
    assert export.check_onnx(path, model, other) <= 1e-5
