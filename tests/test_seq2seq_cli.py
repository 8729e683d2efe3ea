"""rnnkit train seq2seq / translate / evaluate end to end on tiny data, and bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

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
