"""Forecasting on the run lifecycle: exact --resume from the command line, --json output, and
run directories written before the lifecycle still load, evaluate and forecast."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from rnnkit import runs
from rnnkit.cli.main import main
from rnnkit.io import load_tensors
from rnnkit.tasks.forecaster import SeriesData

FIXTURE = Path(__file__).parent / "fixtures" / "runs" / "forecast"


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _csv(tmp_path) -> Path:
    path = tmp_path / "sales.csv"
    shutil.copy(FIXTURE / "sales.csv", path)
    return path


def _train_args(csv, out, steps: int) -> list[str]:
    return ["train", "forecast", "--csv", str(csv), "--target", "sales", "--date-column", "week",
            "--window", "6", "--horizon", "2", "--season", "12", "--hidden-size", "4",
            "--batch-size", "8", "--eval-every", "3", "--schedule", "constant",
            "--steps", str(steps), "--no-progress", "--out", str(out)]  # fmt: skip


def test_cli_resume_after_a_stop_is_bit_identical_to_an_uninterrupted_run(tmp_path, capsys):
    csv = _csv(tmp_path)
    assert main(_train_args(csv, tmp_path / "whole", 12)) == 0
    assert main(_train_args(csv, tmp_path / "part", 6)) == 0
    assert main(["train", "forecast", "--resume", str(tmp_path / "part"), "--steps", "12",
                 "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    for name in ("model.safetensors", "trainer_state/model.safetensors"):
        a = load_tensors(tmp_path / "whole" / name)
        b = load_tensors(tmp_path / "part" / name)
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    whole = json.loads((tmp_path / "whole" / "test_metrics.json").read_text())
    part = json.loads((tmp_path / "part" / "test_metrics.json").read_text())
    assert part["model"] == whole["model"] and part["best_step"] == whole["best_step"]
    assert (tmp_path / "part" / "forecast.png").is_file()


def test_json_on_train_and_evaluate_is_one_object(tmp_path, capsys):
    csv = _csv(tmp_path)
    out = tmp_path / "run"
    assert main([*_train_args(csv, out, 3), "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)  # one JSON object, nothing else
    assert trained["task"] == "forecast" and trained["steps"] == 3
    assert set(trained["test"]["baselines"]) == {"naive", "seasonal_naive", "ar"}
    assert main(["evaluate", str(out), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["model"]["mae"] == pytest.approx(trained["test"]["model"]["mae"])
    assert evaluated["data"] == f"test span of {csv}"
    recent = tmp_path / "recent.csv"
    pd.read_csv(csv).tail(20).to_csv(recent, index=False)
    assert main(["evaluate", str(out), "--data", str(recent), "--json"]) == 0
    other = json.loads(capsys.readouterr().out)
    assert other["span"] == "all" and other["data"] == f"every complete origin of {recent}"


def test_library_and_config_round_trip(tmp_path):
    data = SeriesData(csv="x.csv", target="y", window=4, horizon=2, features="a, b")
    assert data.features == ("a", "b")
    assert SeriesData.from_dict(json.loads(json.dumps(data.to_dict()))) == data
    with pytest.raises(ValueError, match="unknown option"):
        SeriesData.from_dict({**data.to_dict(), "windw": 3})
    with pytest.raises(ValueError, match="--test-fraction must be > 0"):
        data.replace(test_fraction=0.0)
    co2 = SeriesData(dataset="co2")
    assert (co2.window, co2.horizon, co2.transform, co2.season) == (104, 4, "diff", 52)


def _old_run(tmp_path) -> Path:
    """The fixture run (written by rnnkit before the run lifecycle) with its CSV path fixed."""
    run = tmp_path / "old"
    shutil.copytree(FIXTURE, run)
    config = json.loads((run / "config.json").read_text())
    config["data"]["csv"] = str(run / "sales.csv")
    (run / "config.json").write_text(json.dumps(config))
    return run


def test_a_run_from_before_the_lifecycle_loads_and_evaluates(tmp_path, capsys):
    run = _old_run(tmp_path)
    old_report = json.loads((run / "report.json").read_text())
    loaded = runs.load_run(run, task="forecast")
    assert loaded.encoders.season == 12 and loaded.task.horizon == 2
    report = runs.evaluate_run(loaded)
    assert report["model"]["mae"] == pytest.approx(old_report["model"]["mae"], rel=1e-6)
    for name, metrics in old_report["baselines"].items():
        assert report["baselines"][name]["mase"] == pytest.approx(metrics["mase"], rel=1e-12)
    assert report["best_step"] == old_report["best_step"]

    assert main(["evaluate", str(run), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["task"] == "forecast"
    assert evaluated["model"]["mae"] == pytest.approx(old_report["model"]["mae"], rel=1e-6)
    assert main(["evaluate", str(run)]) == 0
    text = capsys.readouterr().out
    for line in ("model_mase", "naive_mase", "seasonal_naive_mase", "ar_mase", "verdict"):
        assert line in text

    assert main(["forecast", str(run), "--csv", str(run / "sales.csv")]) == 0
    table = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    assert table["h"].tolist() == [1, 2]


def test_a_changed_csv_is_one_error_line(tmp_path, capsys):
    run = _old_run(tmp_path)
    with open(run / "sales.csv", "a") as f:
        f.write("2000-12-04,30.0\n")
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "SHA-256" in err, err
