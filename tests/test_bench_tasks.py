"""Long-memory task generators, their stated baselines, the benchmark runner and its CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from rnnkit.bench.long_memory import BenchSettings, Contender, train_on_task
from rnnkit.bench.tasks import (
    COPY_BLANK,
    COPY_DELIMITER,
    Adding,
    Copy,
    Digits,
    adding_batch,
    copy_batch,
    held_out_split,
    make_task,
)
from rnnkit.cli.main import main


@pytest.fixture(autouse=True)
def _one_thread():
    """Many small operations: one thread is fastest, and spares a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_adding_batches_mark_two_positions_and_sum_them():
    x, y = adding_batch(500, 30, torch.Generator().manual_seed(0))
    assert x.shape == (500, 30, 2) and y.shape == (500, 1)
    markers = x[..., 1]
    assert torch.all(markers.sum(1) == 2) and set(markers.unique().tolist()) == {0.0, 1.0}
    torch.testing.assert_close(y[:, 0], (x[..., 0] * markers).sum(1))
    # marked positions fall anywhere, first and last steps included
    positions = markers.nonzero()[:, 1]
    assert positions.min() == 0 and positions.max() == 29


def test_adding_baseline_is_one_sixth():
    task = Adding(50)
    _, y = task.train_batch(40_000, torch.Generator().manual_seed(1))
    answer_one = task.evaluate(torch.ones_like(y), y)["mse"]
    assert answer_one == pytest.approx(1 / 6, abs=0.004)
    assert task.baseline == pytest.approx(1 / 6)


def test_copy_layout():
    x, y = copy_batch(4, 7, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 27)
    assert torch.all(x[:, :10] < 8)
    assert torch.all(x[:, 16] == COPY_DELIMITER)  # after T - 1 = 6 blanks
    assert torch.all(x[:, 10:16] == COPY_BLANK) and torch.all(x[:, 17:] == COPY_BLANK)
    assert torch.all(y[:, :17] == COPY_BLANK)
    assert torch.equal(y[:, 17:], x[:, :10])


def test_copy_baseline_is_blank_then_uniform():
    task = Copy(50, test_size=64)
    x, y = task.test_set()
    assert x.shape == (64, 70, 10) and task.steps == 70
    logits = torch.full((64, 70, 9), -1e9)
    logits[:, :60, COPY_BLANK] = 0.0  # certain blank until the recall
    logits[:, 60:, :8] = 0.0  # then uniform over the 8 symbols
    metrics = task.evaluate(logits, y)
    assert metrics["cross_entropy"] == pytest.approx(10 * math.log(8) / 70, rel=1e-5)
    assert task.baseline == pytest.approx(0.297, abs=5e-4)


def test_digits_small_row_and_pixel_orders():
    rows = Digits("row", small=True)
    assert rows.length == 8 and rows.input_size == 8
    assert len(rows.train_y) + len(rows.test_y) == 1797
    assert len(rows.test_y) == pytest.approx(1797 / 5, abs=10)
    pixels = Digits("pixel", small=True)
    assert pixels.test_x.shape[1:] == (64, 1)
    torch.testing.assert_close(pixels.test_x.reshape(-1, 8, 8), rows.test_x)
    assert 0.09 < rows.baseline < 0.12
    assert abs(rows.train_x.mean().item()) < 0.01  # standardised by the training set


def test_held_out_split_is_stratified_disjoint_and_fixed():
    labels = np.repeat(np.arange(10), 50)
    train, test = held_out_split(labels)
    assert len(test) == 100 and not set(train) & set(test)
    assert np.all(np.bincount(labels[test]) == 10)
    assert np.array_equal(test, held_out_split(labels)[1])


def test_mnist_digits_hold_out_a_fifth():
    task = Digits("row")
    assert task.train_x.shape == (4000, 28, 28) and task.test_x.shape == (1000, 28, 28)
    assert task.baseline == pytest.approx(0.1)


def test_make_task_errors():
    with pytest.raises(ValueError, match="task must be one of"):
        make_task("parity")
    with pytest.raises(ValueError, match="fixed length"):
        make_task("digits", 50)
    with pytest.raises(ValueError, match="length must be >= 2"):
        make_task("adding", 1)
    with pytest.raises(ValueError, match="cell must be one of"):
        Contender.parse("lstm2")
    assert Contender.parse("lstm:chrono:90") == Contender("lstm", "chrono:90")


def test_train_on_task_reports_curve_and_stops_at_target():
    settings = BenchSettings(hidden_size=8, time_budget=None, max_steps=20, eval_every=10)
    result = train_on_task(Adding(10, test_size=32), "gru", settings)
    assert result["steps"] == 20 and result["stop_reason"] == "steps"
    assert [line["step"] for line in result["curve"]] == [0, 10, 20]
    assert result["final"]["mse"] == result["curve"][-1]["val_mse"]
    assert result["best"] == min(line["val_mse"] for line in result["curve"])
    settings.stop_at = 100.0  # reached at the first evaluation
    result = train_on_task(Adding(10, test_size=32), "lstm:chrono", settings)
    assert result["steps"] == 10 and result["stop_reason"] == "target_reached"


def test_cli_bench_task_json_and_files(tmp_path, capsys):
    out = tmp_path / "bench"
    args = ["bench", "task", "copy", "--length", "3", "--cells", "lstm,lstm:chrono"]
    args += ["--hidden-size", "8", "--steps", "4", "--eval-every", "2", "--out", str(out)]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["label"] for r in report["results"]] == ["lstm", "lstm:chrono"]
    assert report["task"]["baseline"] == pytest.approx(10 * math.log(8) / 23)
    assert (out / "copy.json").exists() and (out / "copy.png").stat().st_size > 1000
    assert main(args) == 2  # results exist: needs --force
    assert "--force" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0
    assert "baseline cross_entropy 0.9041" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["adding", "--cells", "lstm:chrono:1"], "chrono needs t_max > 2"),
        (["adding", "--cells", "tcn"], "cell must be one of"),
        (["adding", "--small"], "digits task only"),
        (["digits", "--length", "10"], "fixed length"),
        (["adding", "--time-budget", "0"], "--time-budget must be > 0"),
    ],
)
def test_cli_bench_task_bad_options(argv, message, tmp_path, capsys):
    assert main(["bench", "task", *argv, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
