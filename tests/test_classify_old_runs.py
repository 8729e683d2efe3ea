"""Classification runs written before the run lifecycle (``splits.json``, ``class_weights`` in
config.json) still load, evaluate, predict and resume-check their data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rnnkit import runs
from rnnkit.cli.main import main
from rnnkit.errors import InvalidInputError

FIXTURES = Path(__file__).parent / "fixtures" / "runs" / "classify"
# config.json "data" keys holding a data file's path -> that file's name in the fixture
DATA_FILES = {
    "text": {"csv": "reviews.csv", "source": "reviews.csv"},
    "series": {
        "ts_train": "toy_TRAIN.ts",
        "source": "toy_TRAIN.ts",
        "ts_test": "toy_TEST.ts",
        "test_source": "toy_TEST.ts",
    },
}


def old_run(tmp_path, kind: str) -> Path:
    """The fixture copied to ``tmp_path``, its recorded data paths pointing at the copies."""
    run = tmp_path / kind
    shutil.copytree(FIXTURES / kind, run)
    config = json.loads((run / "config.json").read_text())
    for key, name in DATA_FILES[kind].items():
        config["data"][key] = str(run / name)
    (run / "config.json").write_text(json.dumps(config, indent=2))
    return run


@pytest.mark.parametrize("kind", ["text", "series"])
def test_old_run_loads_and_evaluates_to_its_saved_report(kind, tmp_path):
    run = old_run(tmp_path, kind)
    assert (run / "splits.json").is_file() and not (run / "split.json").exists()
    loaded = runs.load_run(run, task="classify")
    assert loaded.encoders.kind == kind and loaded.task.settings.hidden_size == 4
    report = runs.evaluate_run(loaded)
    saved = json.loads((run / "test_metrics.json").read_text())
    assert report["confusion_matrix"] == saved["confusion_matrix"]
    assert report["count"] == saved["count"]
    assert report["loss"] == pytest.approx(saved["loss"], rel=1e-6)
    assert report["data"].startswith("test split of")


def test_old_run_through_the_command_line(tmp_path, capsys):
    run = old_run(tmp_path, "text")
    saved = json.loads((run / "test_metrics.json").read_text())
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["task"] == "classify"
    assert payload["confusion_matrix"] == saved["confusion_matrix"]
    assert main(["evaluate", str(run)]) == 0
    assert "confusion neg" in capsys.readouterr().out
    assert main(["evaluate", str(run), "--data", str(run / "reviews.csv"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 30
    assert main(["predict", str(run), "--text", "the film good", "--json"]) == 0
    (prediction,) = json.loads(capsys.readouterr().out)["predictions"]
    assert set(prediction["probabilities"]) == {"neg", "pos"}


def test_old_run_with_changed_data_is_refused(tmp_path, capsys):
    run = old_run(tmp_path, "series")
    with open(run / "toy_TRAIN.ts", "a", encoding="utf-8") as f:
        f.write("1,2,3:4,5,6:up\n")
    with pytest.raises(InvalidInputError, match="changed since the run was trained"):
        runs.evaluate_run(run)
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "SHA-256 differs" in err
