"""Tagging runs in the shared lifecycle: exact --resume, --json output, runs written before it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rnnkit import runs
from rnnkit.cli.main import main
from test_tag_cli import corpus

FIXTURE = Path(__file__).parent / "fixtures" / "runs" / "tag"


def small(data, out, *extra) -> list[str]:
    return [
        "train",
        "tag",
        "--data",
        str(data),
        "--hidden-size",
        "8",
        "--embedding-size",
        "8",
        "--char-hidden-size",
        "4",
        "--batch-size",
        "8",
        "--schedule",
        "constant",  # the learning rate does not depend on the total number of steps
        "--eval-every",
        "4",
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


@pytest.mark.parametrize("crf", [False, True])
def test_stopped_then_resumed_equals_an_uninterrupted_run(tmp_path, capsys, crf):
    data = tmp_path / "train.txt"
    data.write_text(corpus(60, 3), encoding="utf-8")  # 48 training sentences: 6 batches/epoch
    flags = ["--crf"] if crf else []
    assert main(small(data, tmp_path / "full", "--steps", "15", *flags)) == 0
    assert main(small(data, tmp_path / "part", "--steps", "5", *flags)) == 0
    capsys.readouterr()
    argv = ["train", "tag", "--resume", str(tmp_path / "part"), "--steps", "15", "--json"]
    assert main([*argv, "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 15 and summary["task"] == "tag"
    assert summary["test"]["data"].startswith("test part of")
    full = load_file(tmp_path / "full" / "model.safetensors")
    part = load_file(tmp_path / "part" / "model.safetensors")
    assert full.keys() == part.keys()
    for name in full:
        assert torch.equal(full[name], part[name]), name
    saved = json.loads((tmp_path / "part" / "test_metrics.json").read_text(encoding="utf-8"))
    assert saved == json.loads((tmp_path / "full" / "test_metrics.json").read_text("utf-8"))


def test_train_json_is_one_object_and_resume_refuses_changed_data(tmp_path, capsys):
    data = tmp_path / "train.txt"
    data.write_text(corpus(40, 4), encoding="utf-8")
    out = tmp_path / "run"
    capsys.readouterr()
    assert main(small(data, out, "--steps", "2", "--json")) == 0
    summary = json.loads(capsys.readouterr().out)  # the whole of stdout: one object
    assert summary["run"] == str(out) and summary["steps"] == 2
    assert set(summary["test"]["per_tag"]) <= {"r", "v", "n"}
    assert (out / "per_tag_f1.png").stat().st_size > 0
    data.write_text(corpus(40, 5), encoding="utf-8")
    assert main(["train", "tag", "--resume", str(out), "--steps", "4", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "changed since" in err


@pytest.fixture
def old_run(tmp_path):
    """The run of tests/fixtures/runs/tag (written by rnnkit before the shared lifecycle), its
    data file beside it, the recorded paths pointed at the copy."""
    shutil.copy(FIXTURE / "train.txt", tmp_path / "train.txt")
    run = tmp_path / "run"
    shutil.copytree(FIXTURE / "run", run)
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    config["data"].update(data=str(tmp_path / "train.txt"), path=str(tmp_path / "train.txt"))
    (run / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return run


def test_a_run_written_before_the_lifecycle_loads_and_evaluates(old_run, capsys):
    from rnnkit.tasks.tagger import Tagger

    loaded = runs.load_run(old_run, task="tag")
    assert isinstance(loaded.task, Tagger) and loaded.task.crf is not None
    assert not loaded.task.training and set(loaded.encoders.tags.tokens) == {"r", "v", "n"}
    saved = json.loads((old_run / "test_metrics.json").read_text(encoding="utf-8"))
    report = runs.evaluate_run(loaded)
    assert report["data"].startswith("test part of") and report["sentences"] == 4
    assert report["accuracy"] == saved["accuracy"] and report["per_tag"] == saved["per_tag"]
    capsys.readouterr()
    assert main(["evaluate", str(old_run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["task"] == "tag" and result["accuracy"] == saved["accuracy"]
    assert main(["evaluate", str(old_run), "--data", str(old_run.parent / "train.txt")]) == 0
    text = capsys.readouterr().out
    assert "sentences" in text and "40" in text and "tag v" in text
    assert main(["tag", str(old_run), "--text", "我 吃 饭"]) == 0
    assert len(capsys.readouterr().out.split()) == 3
