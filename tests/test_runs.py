"""The run lifecycle (rnnkit.runs) on the language model, and runs written by earlier versions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from rnnkit import runs
from rnnkit.cli.main import main
from rnnkit.config import Config
from rnnkit.errors import InvalidInputError
from rnnkit.io import load_tensors
from rnnkit.tasks.lm import LMConfig, TextData
from rnnkit.train import TrainConfig

FIXTURES = Path(__file__).parent / "fixtures" / "runs"
TEXT = FIXTURES / "hamlet.txt"


def old_run(tmp_path, task: str) -> Path:
    """A copy of a run written before the lifecycle existed, pointed at the fixture's data."""
    run = tmp_path / task
    shutil.copytree(FIXTURES / task, run)
    config = json.loads((run / "config.json").read_text())
    config["data"]["source"] = str(TEXT.resolve())
    config["data"]["text"] = str(TEXT.resolve())
    (run / "config.json").write_text(json.dumps(config))
    return run


def small_lm(tmp_path, name="run", steps=6, **train):
    return runs.train_run(
        "lm",
        tmp_path / name,
        data=TextData(text=str(TEXT), batch_size=2, bptt=10),
        model=LMConfig(embedding_size=4, hidden_size=8, num_layers=1),
        train=TrainConfig(steps=steps, eval_every=3, **train),
    )


def test_earlier_language_model_run_loads_and_evaluates(tmp_path, capsys):
    run = old_run(tmp_path, "lm")
    loaded = runs.load_run(run)
    assert loaded.spec.name == "lm" and len(loaded.encoders) == loaded.task.vocab_size
    report = runs.evaluate_run(run)
    assert report["characters"] > 0 and report["loss"] > 0
    assert main(["evaluate", str(run), "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and json.loads(out[0])["loss"] == pytest.approx(report["loss"])


def test_train_run_writes_the_run_files_and_the_held_out_report(tmp_path):
    done = small_lm(tmp_path)
    names = {p.name for p in done.run.path.iterdir()}
    assert {"config.json", "vocab.json", "model.safetensors", "metrics.jsonl"} <= names
    assert {"trainer_state", "test_metrics.json"} <= names
    config = done.run.read_config()
    assert config["task"] == "lm" and config["created"] and config["data"]["sha256"]
    saved = json.loads(done.run.test_metrics_path.read_text())
    assert saved["loss"] == pytest.approx(runs.evaluate_run(done.run.path)["loss"])


def test_resume_continues_bit_identically(tmp_path):
    # constant schedule: a run stopped by a smaller --steps has not annealed differently
    whole = small_lm(tmp_path, "whole", steps=8, schedule="constant")
    part = small_lm(tmp_path, "part", steps=4, schedule="constant")
    assert part.result.step == 4
    resumed = runs.resume_run(part.run.path, limits={"steps": 8})
    assert resumed.result.step == 8
    a, b = load_tensors(whole.run.model_path), load_tensors(resumed.run.model_path)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_changed_data_is_refused_on_resume_and_evaluate(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(TEXT.read_text())
    done = runs.train_run(
        "lm",
        tmp_path / "run",
        data=TextData(text=str(text), batch_size=2, bptt=10),
        model={"embedding_size": 4, "hidden_size": 8, "num_layers": 1},
        train=TrainConfig(steps=2, eval_every=2),
    )
    text.write_text(TEXT.read_text() + "more")
    with pytest.raises(InvalidInputError, match="changed since the run was trained"):
        runs.resume_run(done.run.path, limits={"steps": 4})
    with pytest.raises(InvalidInputError, match="changed since the run was trained"):
        runs.evaluate_run(done.run.path)
    assert runs.evaluate_run(done.run.path, data_file=str(TEXT))["data"] == f"text {TEXT}"


def test_load_run_names_the_task_it_expected(tmp_path):
    run = old_run(tmp_path, "lm")
    with pytest.raises(InvalidInputError, match="is a 'lm' run, not a 'tag' run"):
        runs.load_run(run, task="tag")
    with pytest.raises(InvalidInputError, match="unknown task 'poetry'"):
        runs.task_spec("poetry")


def test_model_options_are_checked_before_the_run_is_touched(tmp_path):
    with pytest.raises(InvalidInputError, match="unknown option.*hidden; known"):
        runs.train_run(
            "lm",
            tmp_path / "run",
            data=TextData(text=str(TEXT), bptt=10),
            model={"hidden": 8},
            train=TrainConfig(steps=1),
        )
    assert not (tmp_path / "run").exists()


def test_every_task_spec_is_registered_with_its_configs():
    for name in runs.SPECS:
        spec = runs.task_spec(name)
        assert spec.name == name
        assert issubclass(spec.data_config, Config) and issubclass(spec.model_config, Config)


def test_train_json_prints_one_object(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "lm", "--text", str(TEXT), "--steps", "2", "--eval-every", "2"]
    argv += ["--hidden-size", "8", "--embedding-size", "4", "--num-layers", "1", "--bptt", "10"]
    assert main([*argv, "--batch-size", "2", "--out", str(out), "--no-progress", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert summary["task"] == "lm" and summary["steps"] == 2 and summary["test"]["loss"] > 0


# -- SIGKILL and --resume, every task, through the command line ---------------------------------
KILL_AFTER_CHECKPOINT = """
import os, signal, sys
from rnnkit.train import trainer

save = trainer.Trainer.save_checkpoint


def save_then_die(self):
    save(self)
    if self.step >= int(sys.argv[1]):
        os.kill(os.getpid(), signal.SIGKILL)  # no handler, no cleanup: like a machine dying


trainer.Trainer.save_checkpoint = save_then_die
from rnnkit.cli.main import main

main(sys.argv[2:])
"""


def _task_argv(task: str) -> list[str]:
    """A tiny run of each task on fixture data, 12 steps, a checkpoint every 4, dropout on."""
    common = ["--steps", "12", "--eval-every", "4", "--no-progress", "--hidden-size", "8"]
    common += ["--threads", "1"]  # the same float reductions in the child as here
    data = {
        "lm": ["--text", str(TEXT), "--embedding-size", "4", "--num-layers", "2", "--bptt", "10",
               "--batch-size", "2", "--dropout", "0.2"],
        "tag": ["--data", str(FIXTURES / "tag" / "train.txt"), "--embedding-size", "8",
                "--char-hidden-size", "4", "--batch-size", "8", "--dropout", "0.2"],
        "seq2seq": ["--pairs", str(FIXTURES / "seq2seq" / "dates.tsv"), "--embedding-size", "6",
                    "--batch-size", "16", "--dropout", "0.2", "--scheduled-sampling", "0.3"],
        "classify": ["--csv", str(FIXTURES / "classify" / "text" / "reviews.csv"),
                     "--text-column", "review", "--label-column", "sentiment",
                     "--embedding-size", "8", "--batch-size", "4"],
        "forecast": ["--csv", str(FIXTURES / "forecast" / "sales.csv"), "--target", "sales",
                     "--date-column", "week", "--window", "6", "--horizon", "2", "--season", "12",
                     "--batch-size", "8"],
        "music": ["--dataset", "bach-chorales", "--max-pieces", "5", "--val-fraction", "0.2",
                  "--test-fraction", "0.2", "--window", "16", "--batch-size", "4",
                  "--num-layers", "2", "--dropout", "0.2"],
    }[task]  # fmt: skip
    return ["train", task, *common, *data]


def _same_tensors(a: Path, b: Path) -> None:
    for name in ("model.safetensors", "trainer_state/model.safetensors",
                 "trainer_state/optimizer.safetensors"):  # fmt: skip
        x, y = load_tensors(a / name), load_tensors(b / name)
        assert x.keys() == y.keys()
        for key in x:
            assert torch.equal(x[key], y[key]), f"{name}:{key} differs"


@pytest.mark.parametrize("task", ["lm", "tag", "seq2seq", "classify", "forecast", "music"])
def test_sigkill_then_resume_is_bit_identical(task, tmp_path):
    import subprocess
    import sys

    argv = _task_argv(task)
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_CHECKPOINT, "5", *argv, "--out", str(tmp_path / "run")],
        capture_output=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert main(["train", task, "--resume", str(tmp_path / "run"), "--no-progress"]) == 0
    _same_tensors(tmp_path / "run", tmp_path / "whole")
    whole = json.loads((tmp_path / "whole" / "test_metrics.json").read_text())
    assert json.loads((tmp_path / "run" / "test_metrics.json").read_text()) == whole
