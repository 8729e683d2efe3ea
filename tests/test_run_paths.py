"""Runs record resolved data paths and check the data's SHA-256 from any working directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rnnkit.cli.main import main

FIXTURES = Path(__file__).parent / "fixtures" / "runs"
TINY = ["--epochs", "1", "--hidden-size", "4", "--no-progress"]


def reviews(path: Path) -> Path:
    rows = [
        f"{'good fine' if i % 2 else 'bad poor'} {i},{'pos' if i % 2 else 'neg'}" for i in range(20)
    ]
    path.write_text("text,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


TASKS = {
    "classify": lambda d: [
        "train",
        "classify",
        "--csv",
        reviews(d / "data.csv").name,
        "--min-freq",
        "1",
    ],
    "tag": lambda d: [
        "train",
        "tag",
        "--data",
        shutil.copy(FIXTURES / "tag" / "train.txt", d / "data.txt").name,
    ],
}


@pytest.mark.parametrize("task", sorted(TASKS))
def test_run_trained_with_a_relative_path_evaluates_and_checks_sha_from_elsewhere(
    task, tmp_path, monkeypatch, capsys
):
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(here)
    assert main([*TASKS[task](here), "--out", str(tmp_path / "run"), *TINY]) == 0
    data = json.loads((tmp_path / "run" / "config.json").read_text())["data"]
    paths = [v for k, v in data.items() if k in ("csv", "data", "path") and v]
    assert paths and all(Path(p).is_absolute() for p in paths), data
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)
    data_file = next(here.glob("data.*"))
    with data_file.open("a", encoding="utf-8") as f:
        f.write("extra good,pos\n" if task == "classify" else "他/r  吃/v\n")
    assert main(["evaluate", str(tmp_path / "run")]) == 2
    assert "changed since the run was trained" in capsys.readouterr().err
