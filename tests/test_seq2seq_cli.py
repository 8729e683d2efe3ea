"""rnnkit train seq2seq / translate / evaluate end to end on tiny data, and bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from rnnkit.cli.main import main
from rnnkit.data.dates import generate_dates

TINY = ["--hidden-size", "8", "--embedding-size", "6", "--no-progress", "--eval-every", "10"]


def snapshot(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("s2s")
    pairs = folder / "dates.tsv"
    pairs.write_text("".join(f"{s}\t{t}\n" for s, t in generate_dates(300, seed=2)), "utf-8")
    run = folder / "run"
    code = main(
        [
            "train",
            "seq2seq",
            "--pairs",
            str(pairs),
            "--out",
            str(run),
            "--steps",
            "12",
            "--beam",
            "2",
            "--json",
            *TINY,
        ]
    )
    assert code == 0
    return folder, pairs, run


def test_train_writes_a_complete_run(trained, capsys):
    _, _, run = trained
    for name in (
        "config.json",
        "vocab.json",
        "split.json",
        "model.safetensors",
        "metrics.jsonl",
        "test_metrics.json",
        "attention.png",
    ):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == "seq2seq" and config["data"]["test_pairs"] == 30
    assert config["data"]["max_length"] == 20  # longest target (10) + 10
    test = json.loads((run / "test_metrics.json").read_text())
    assert test["pairs"] == 30 and test["beam"]["beam"] == 2
    assert 0.0 <= test["exact_match"] <= 1.0 and 0.0 <= test["char_accuracy"] <= 1.0
    assert set(test["baselines"]) == {"copy", "most_frequent"}
    split = json.loads((run / "split.json").read_text())
    assert not set(split["test"]) & set(split["train"])


def test_generic_run_loading_rebuilds_the_model(trained):
    from rnnkit.runs import load_run
    from rnnkit.tasks.seq2seq import Seq2Seq

    _, _, run = trained
    task = load_run(run).task
    assert isinstance(task, Seq2Seq) and not task.training and task.beam == 1


def test_translate_and_evaluate(trained, capsys, tmp_path):
    _, _, run = trained
    capsys.readouterr()
    heatmap = tmp_path / "a.png"
    assert (
        main(
            [
                "translate",
                str(run),
                "--text",
                "7 mars 2020",
                "--beam",
                "3",
                "--json",
                "--heatmap",
                str(heatmap),
            ]
        )
        == 0
    )
    payload = json.loads(capsys.readouterr().out)
    (result,) = payload["translations"]
    assert result["input"] == "7 mars 2020" and isinstance(result["output"], str)
    assert len(result["attention"]) == len(result["output"]) + 1
    assert all(len(row) == len("7 mars 2020") for row in result["attention"])
    assert heatmap.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["evaluate", str(run), "--json", "--beam", "2"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["task"] == "seq2seq" and metrics["pairs"] == 30 and metrics["beam"] == 2
    assert {"loss", "exact_match", "char_accuracy", "bleu"} <= set(metrics)


def test_translate_refuses_unseen_characters(trained, capsys):
    _, _, run = trained
    assert main(["translate", str(run), "--text", "7 mars 2020 ☃"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --text contains 1 character(s) the model never saw")
    assert "\n" not in err


@pytest.mark.parametrize(
    "content, message",
    [
        ("a\tb\nno tab\n", "line 2: expected exactly one tab between source and target, found 0"),
        ("a\tb\tc\n", "line 1: expected exactly one tab between source and target, found 2"),
        ("a\tb\n\tb\n", "line 2: empty source"),
        ("a\tb\nc\t \n", "line 2: empty target"),
    ],
)
def test_bad_pairs_exit_2_and_leave_the_run(trained, tmp_path, capsys, content, message):
    _, _, run = trained
    before = snapshot(run)
    bad = tmp_path / "bad.tsv"
    bad.write_text(content, "utf-8")
    code = main(
        [
            "train",
            "seq2seq",
            "--pairs",
            str(bad),
            "--out",
            str(run),
            "--force",
            "--steps",
            "1",
            *TINY,
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
    assert str(bad) in err
    assert snapshot(run) == before


def test_existing_run_needs_force(trained, capsys):
    _, pairs, run = trained
    before = snapshot(run)
    assert (
        main(["train", "seq2seq", "--pairs", str(pairs), "--out", str(run), "--steps", "1", *TINY])
        == 2
    )
    assert "already holds a run; pass --force" in capsys.readouterr().err
    assert snapshot(run) == before


def test_bad_options_exit_2(trained, capsys):
    _, pairs, run = trained
    assert main(["train", "seq2seq", "--pairs", str(pairs), "--scheduled-sampling", "1.5"]) == 2
    assert "--scheduled-sampling must be in [0, 1]" in capsys.readouterr().err
    assert main(["translate", str(run), "--text", "x", "--beam", "0"]) == 2
    assert "--beam must be >= 1" in capsys.readouterr().err


def test_train_needs_pairs_unless_resume(capsys):
    assert main(["train", "seq2seq", "--steps", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --pairs FILE is required")


def test_evaluate_json_and_other_file(trained, capsys):
    folder, pairs, run = trained
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    report = json.loads(out)
    saved = json.loads((run / "test_metrics.json").read_text())
    assert report["data"] == saved["data"] and report["pairs"] == saved["pairs"] == 30
    assert report["exact_match"] == saved["exact_match"] and report["beam"] == saved["beam"]
    other = folder / "other.tsv"
    other.write_text("".join(f"{s}\t{t}\n" for s, t in generate_dates(7, seed=9)), "utf-8")
    assert main(["evaluate", str(run), "--data", str(other), "--json", "--beam", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pairs"] == 7 and report["beam"] == 1 and str(other) in report["data"]


# -- resume ---------------------------------------------------------------------------------------
RESUMABLE = [
    *("--hidden-size", "8", "--embedding-size", "6", "--no-progress", "--eval-every", "3"),
    # RNG matters (dropout, scheduled sampling); a constant schedule does not see the limit
    *("--dropout", "0.2", "--scheduled-sampling", "0.3", "--schedule", "constant"),
    *("--batch-size", "32", "--seed", "5"),
]


def test_stopped_then_resumed_is_bit_identical(trained, tmp_path, capsys):
    from rnnkit.io import load_tensors

    _, pairs, _ = trained
    base = ["train", "seq2seq", "--pairs", str(pairs), *RESUMABLE]
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "full"), "--steps", "12", "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # one JSON object, nothing else
    full = json.loads(out)
    assert full["steps"] == 12 and full["epochs"] >= 1 and full["task"] == "seq2seq"
    assert main([*base, "--out", str(tmp_path / "part"), "--steps", "5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 5
    resume = ["train", "seq2seq", "--resume", str(tmp_path / "part"), "--steps", "12"]
    assert main([*resume, "--json", "--no-progress"]) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["steps"] == 12 and resumed["test"] == full["test"] | {
        "data": resumed["test"]["data"]
    }
    a = load_tensors(tmp_path / "part" / "model.safetensors")
    b = load_tensors(tmp_path / "full" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_refuses_changed_pairs_and_other_tasks(trained, tmp_path, capsys):
    import shutil

    _, pairs, run = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    changed = tmp_path / "dates.tsv"
    changed.write_text(pairs.read_text("utf-8") + "1 mai 2001\t2001-05-01\n", "utf-8")
    config = json.loads((copy / "config.json").read_text())
    config["data"]["pairs"] = str(changed)
    (copy / "config.json").write_text(json.dumps(config))
    before = snapshot(copy)
    assert main(["train", "seq2seq", "--resume", str(copy), "--steps", "20", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "changed since the run was trained" in err
    assert snapshot(copy) == before
    assert main(["evaluate", str(copy)]) == 2
    assert "changed since the run was trained" in capsys.readouterr().err
    assert main(["train", "lm", "--resume", str(copy), "--steps", "20", "--no-progress"]) == 2
    assert "is a 'seq2seq' run, not a 'lm' run" in capsys.readouterr().err


# -- runs written before the run lifecycle -------------------------------------------------------
FIXTURE = Path(__file__).parent / "fixtures" / "runs" / "seq2seq"


@pytest.fixture
def old_run(tmp_path):
    """The fixture run (trained by rnnkit before ``rnnkit.runs``), its data path made this
    machine's."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(FIXTURE / "run", run)
    pairs = tmp_path / "dates.tsv"
    shutil.copy(FIXTURE / "dates.tsv", pairs)
    config = json.loads((run / "config.json").read_text())
    config["data"]["pairs"] = str(pairs)
    (run / "config.json").write_text(json.dumps(config, indent=2))
    return run, pairs


def test_old_run_loads_and_evaluates(old_run, capsys):
    from rnnkit import runs
    from rnnkit.data.pairs import PairVocab
    from rnnkit.tasks.seq2seq import Seq2Seq

    run, pairs = old_run
    saved = json.loads((run / "test_metrics.json").read_text())
    loaded = runs.load_run(run, task="seq2seq")
    assert isinstance(loaded.task, Seq2Seq) and isinstance(loaded.encoders, PairVocab)
    assert not loaded.task.training and loaded.task.max_length == 20
    report = runs.evaluate_run(run)
    assert report["data"] == f"test part of {pairs}"
    for key in ("pairs", "exact_match", "char_accuracy", "bleu"):
        assert report[key] == saved[key], key
    assert report["loss"] == pytest.approx(saved["loss"], rel=1e-6)
    searched = runs.evaluate_run(loaded, beam=2)
    assert searched["beam"] == 2
    for key in ("exact_match", "char_accuracy", "bleu"):
        assert searched[key] == saved["beam"][key], key
    # a fresh split of the same file with the same options is the old code's split
    from rnnkit.tasks.seq2seq import SPEC

    data = SPEC.saved_data(loaded.config["data"])
    fresh = SPEC.prepare(data, loaded.config["train"]["seed"])
    assert fresh.split == json.loads((run / "split.json").read_text())
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and json.loads(out)["pairs"] == saved["pairs"]
    assert main(["evaluate", str(run)]) == 0
    assert "seq2seq run" in capsys.readouterr().out
    source = pairs.read_text("utf-8").splitlines()[0].split("\t")[0]
    assert main(["translate", str(run), "--text", source, "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)["translations"]
    assert isinstance(result["output"], str)
