"""``rnnkit export`` end to end from the command line for every task: tiny runs trained in a few
steps, exported to ONNX (run in onnxruntime) or a ``torch.export`` program, ``--check`` on the
run's validation data, the sidecar a consumer reads, and bad input."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from rnnkit import export, runs
from rnnkit.cli.main import main

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

FEW = ["--steps", "3", "--no-progress"]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train(argv: list[str]) -> None:
    torch.set_num_threads(1)
    assert main(["train", *argv, *FEW]) == 0


def check_line(capsys, argv: list[str]) -> dict:
    """Run ``rnnkit export … --check --json``; its JSON summary."""
    capsys.readouterr()
    assert main(["export", *argv, "--check", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def sidecar(path) -> dict:
    return json.loads(export.sidecar_path(path).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def lm_run(folder):
    text = folder / "text.txt"
    text.write_text("the cat sat on the mat. the dog sat on the log.\n" * 12, encoding="utf-8")
    run = folder / "lm"
    train(["lm", "--text", str(text), "--out", str(run), "--hidden-size", "8", "--embedding-size",
           "4", "--num-layers", "1", "--batch-size", "2", "--bptt", "8"])  # fmt: skip
    return run


def test_lm_onnx_check_prints_bpc_both_ways(lm_run, capsys):
    capsys.readouterr()
    assert main(["export", str(lm_run), "--check"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"wrote {lm_run / 'model.onnx'} and {lm_run / 'model.onnx.json'}"
    # "check (ONNX Runtime vs PyTorch, N validation batches): max abs difference …; bpc X
    # (PyTorch), X (ONNX Runtime)": the same bpc both ways.
    assert out[1].startswith("check (ONNX Runtime vs PyTorch, ")
    bpc = out[1].split("; bpc ")[1]
    torch_bpc, ort_bpc = bpc.split(" (PyTorch), ")
    assert ort_bpc == f"{torch_bpc} (ONNX Runtime)" and float(torch_bpc) > 0


def test_lm_streams_in_onnxruntime_without_rnnkit(lm_run):
    """What the sidecar tells a consumer is enough: two chunks, state carried, equal one call."""
    import onnxruntime as ort

    path = lm_run / "model.onnx"
    if not path.exists():
        assert main(["export", str(lm_run)]) == 0
    meta = sidecar(path)
    graph = meta["graphs"]["model"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    tokens = meta["encoders"]["tokens"]
    ids = np.array([[tokens.index(c) for c in "the dog sat on"]], dtype=np.int64)
    zeros = {
        name: np.zeros([1 if d == "batch" else d for d in spec["shape"]], np.float32)
        for name, spec in graph["inputs"].items()
        if name != "ids"
    }
    whole = session.run(None, {"ids": ids, **zeros})
    first = session.run(None, {"ids": ids[:, :5], **zeros})
    state = dict(zip(zeros, first[1:]))
    second = session.run(None, {"ids": ids[:, 5:], **state})
    np.testing.assert_allclose(np.concatenate([first[0], second[0]], 1), whole[0], atol=1e-5)
    loaded = runs.load_run(lm_run)
    with torch.no_grad():
        logits, _ = loaded.task(torch.from_numpy(ids))
    np.testing.assert_allclose(whole[0], logits.numpy(), atol=1e-5)
    assert list(graph["outputs"]) == ["logits", "h_next", "c_next"]


def test_classify_onnx_padded_batches_and_labels(folder, capsys):
    rng = random.Random(0)
    rows = ["id,review,sentiment"]
    for i in range(60):
        word = rng.choice(["great", "superb"] if i % 2 == 0 else ["awful", "bad"])
        filler = " ".join(rng.choice(["the", "film", "was"]) for _ in range(rng.randint(1, 5)))
        rows.append(f'{i},"{filler} {word} {filler}",{"pos" if i % 2 == 0 else "neg"}')
    csv = folder / "reviews.csv"
    csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    run = folder / "classify"
    train(["classify", "--csv", str(csv), "--text-column", "review", "--label-column",
           "sentiment", "--out", str(run), "--hidden-size", "8", "--embedding-size", "8",
           "--batch-size", "8", "--no-bidirectional", "--pooling", "mean"])  # fmt: skip
    out = folder / "cls.onnx"
    summary = check_line(capsys, [str(run), "--out", str(out)])
    check = summary["check"]
    assert check["ok"] and check["metric"] == "accuracy" and check["batches"] >= 1
    assert check["max_abs_diff"] <= 1e-5 and check["pytorch"] == check["exported"]
    meta = sidecar(out)
    assert meta["task"] == "classify" and sorted(meta["encoders"]["classes"]) == ["neg", "pos"]
    graph = meta["graphs"]["model"]
    assert graph["inputs"]["inputs"] == {"dtype": "int64", "shape": ["batch", "time"]}
    assert graph["inputs"]["lengths"] == {"dtype": "int64", "shape": ["batch"]}
    assert graph["outputs"]["logits"]["shape"] == ["batch", 2]
    # A padded batch of another size and length: every row equals the row run alone.
    loaded = runs.load_run(run)
    ids = torch.randint(2, loaded.task.settings.vocab_size, (3, 9))
    lengths = torch.tensor([9, 2, 5])
    (logits,) = export.run_onnx(out, (ids, lengths))
    for b in range(3):
        alone = loaded.task(ids[b : b + 1, : lengths[b]], lengths[b : b + 1])
        assert float((logits[b] - alone[0]).abs().max()) <= 1e-5


def test_tag_program_with_characters_and_crf(folder, capsys):
    words = {"r": ["我", "你", "他"], "v": ["吃", "看", "买"], "n": ["苹果", "书", "饭"]}
    rng = random.Random(0)
    lines = []
    for _ in range(60):
        pattern = rng.choice([("r", "v", "n"), ("r", "v"), ("n", "v", "n")])
        lines.append("  ".join(f"{rng.choice(words[t])}/{t}" for t in pattern))
    data = folder / "tags.txt"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run = folder / "tag"
    train(["tag", "--data", str(data), "--out", str(run), "--hidden-size", "8", "--embedding-size",
           "8", "--char-hidden-size", "4", "--batch-size", "8", "--crf"])  # fmt: skip
    summary = check_line(capsys, [str(run), "--format", "pt2"])
    assert summary["check"]["ok"] and summary["check"]["metric"] == "accuracy"
    assert summary["check"]["pytorch"] == summary["check"]["exported"]
    meta = sidecar(run / "model.pt2")
    assert list(meta["graphs"]["model"]["inputs"]) == ["words", "lengths", "chars"]
    assert meta["graphs"]["model"]["inputs"]["chars"]["shape"] == ["batch", "time", "characters"]
    loaded = runs.load_run(run)
    assert meta["crf"]["transitions"] == loaded.task.crf.transitions.tolist()


def test_seq2seq_encoder_and_decoder_greedy_in_onnxruntime(folder, capsys):
    from rnnkit.data.dates import generate_dates

    pairs = folder / "dates.tsv"
    pairs.write_text("".join(f"{s}\t{t}\n" for s, t in generate_dates(120, seed=2)), "utf-8")
    run = folder / "s2s"
    train(["seq2seq", "--pairs", str(pairs), "--out", str(run), "--hidden-size", "8",
           "--embedding-size", "6", "--no-bidirectional"])  # fmt: skip
    summary = check_line(capsys, [str(run)])
    assert summary["files"] == [str(run / "model.encoder.onnx"), str(run / "model.decoder.onnx")]
    assert summary["check"]["ok"] and summary["check"]["metric"] == "token_accuracy"
    # Greedy decoding by the sidecar's recipe, in onnxruntime alone, equals the model's.
    meta = sidecar(run / "model.onnx")
    special = meta["specials"]
    encoder = export.OnnxRunner(run / "model.encoder.onnx")
    decoder = export.OnnxRunner(run / "model.decoder.onnx")
    loaded = runs.load_run(run)
    source = torch.randint(4, len(loaded.encoders.source), (2, 7))
    lengths = torch.tensor([7, 4])
    encoded = encoder(source, lengths)
    fields = [n for n in meta["graphs"]["decoder"]["inputs"] if n in ("h", "c")]
    memory, state = encoded[: -len(fields)], encoded[-len(fields) :]
    tokens, steps = torch.full((2,), special["start"]), []
    for _ in range(meta["max_length"] + 1):
        logits, *rest = decoder(tokens, *memory, *state)
        state = rest[: len(fields)]
        logits[:, [special["pad"], special["unknown"], special["start"]]] = float("-inf")
        tokens = logits.argmax(-1)
        steps.append(tokens)
    ids = torch.stack(steps, 1).tolist()
    got = [row[: row.index(special["end"])] if special["end"] in row else row for row in ids]
    expected, _ = loaded.task.greedy(source, lengths)
    assert [g[: meta["max_length"]] for g in got] == expected


def test_forecast_onnx_and_program(folder, capsys):
    from pathlib import Path

    csv = Path(__file__).parent / "fixtures" / "runs" / "forecast" / "sales.csv"
    run = folder / "forecast"
    train(["forecast", "--csv", str(csv), "--target", "sales", "--date-column", "week",
           "--window", "6", "--horizon", "2", "--season", "12", "--hidden-size", "4",
           "--batch-size", "8", "--out", str(run)])  # fmt: skip
    summary = check_line(capsys, [str(run)])
    assert summary["check"]["ok"] and summary["check"]["metric"] == "mae_scaled"
    assert abs(summary["check"]["pytorch"] - summary["check"]["exported"]) <= 1e-6
    meta = sidecar(run / "model.onnx")
    assert meta["series"] == {"target": "sales", "features": [], "window": 6, "transform": "levels"}
    assert set(meta["encoders"]["scaler"]) >= {"mean", "std"}
    assert meta["graphs"]["model"]["outputs"]["forecast"]["shape"] == ["batch", 2]
    # A window longer than the run's: the time dimension is dynamic.
    loaded = runs.load_run(run)
    x = torch.randn(3, 11, 1)
    (got,) = export.run_onnx(run / "model.onnx", (x,))
    assert float((got - loaded.task(x)).abs().max()) <= 1e-5


@pytest.mark.parametrize("representation, name", [("events", "features"), ("roll", "frames")])
def test_music_program_streams_frames(folder, capsys, representation, name):
    pytest.importorskip("music21")
    run = folder / f"music-{representation}"
    train(["music", "--max-pieces", "4", "--val-fraction", "0.25", "--test-fraction", "0.25",
           "--window", "16", "--batch-size", "4", "--hidden-size", "8",
           "--representation", representation, "--out", str(run)])  # fmt: skip
    summary = check_line(capsys, [str(run), "--format", "pt2"])
    assert summary["check"]["ok"] and summary["check"]["metric"] == "frame_nll"
    assert summary["check"]["pytorch"] == pytest.approx(summary["check"]["exported"], abs=1e-5)
    facts = sidecar(run / "model.pt2")
    assert facts["representation"] == representation
    graph = facts["graphs"]["model"]
    assert list(graph["inputs"]) == [name, "h0", "c0"]
    assert graph["inputs"][name]["dtype"] == "float32"


def test_check_reports_a_mismatch_with_exit_1(lm_run, tmp_path, capsys, monkeypatch):
    loaded = runs.load_run(lm_run)
    out = tmp_path / "lm.pt2"
    export.export_run(loaded, out, format="pt2")
    with torch.no_grad():  # the eager model drifts from the exported file
        loaded.task.decoder.bias[0] += 0.5
    result = export.check_run(loaded, out, format="pt2")
    assert result.max_abs_diff == pytest.approx(0.5, abs=1e-4)
    assert result.pytorch != result.exported
    # From the command line: one "mismatch:" line on stderr, exit 1.
    monkeypatch.setattr(export, "check_run", lambda *a, **k: result)
    capsys.readouterr()
    code = main(["export", str(lm_run), "--format", "pt2", "--out", str(tmp_path / "b.pt2"),
                 "--check"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err == ["mismatch: max abs difference 0.5 exceeds --tolerance 0.0001"]


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--format", "tflite"], "invalid choice"),
        (["--opset", "5"], "--opset must be between 18 and 23"),
        (["--format", "pt2", "--opset", "18"], "--opset applies to --format onnx only"),
        (["--tolerance", "nan", "--check"], "--tolerance must be a number >= 0"),
    ],
)
def test_bad_options_exit_2(lm_run, argv, fragment, capsys):
    capsys.readouterr()
    assert main_or_exit(["export", str(lm_run), *argv]) == 2
    assert fragment in capsys.readouterr().err


def main_or_exit(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own errors
        return int(exc.code)


def test_existing_out_needs_force_and_bad_runs_exit_2(lm_run, tmp_path, capsys):
    out = tmp_path / "m.pt2"
    out.write_bytes(b"keep")
    capsys.readouterr()
    assert main(["export", str(lm_run), "--format", "pt2", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {out} exists; pass --force to overwrite it"]
    assert out.read_bytes() == b"keep"
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "vocab.json"):
        (broken / name).write_bytes((lm_run / name).read_bytes())
    (broken / "model.safetensors").write_bytes(b"not weights")
    assert main(["export", str(broken), "--format", "pt2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert not (broken / "model.pt2").exists()


def test_missing_export_extra_names_it(lm_run, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    capsys.readouterr()
    assert main(["export", str(lm_run), "--out", "never.onnx", "--check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'onnxruntime'" in err[0] and "rnnkit[export]" in err[0]
