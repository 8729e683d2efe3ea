"""Forecasting: baselines and metrics against hand computations, the model, and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from rnnkit.cli.main import main
from rnnkit.data.series import ForecastData, SeriesConfig, WindowBatches
from rnnkit.io import load_tensors
from rnnkit.tasks.baselines import (
    LinearAR,
    baseline_forecasts,
    forecast_metrics,
    naive_forecast,
    seasonal_naive_forecast,
)
from rnnkit.tasks.forecaster import Forecaster, forecast_report


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one thread avoids oversubscribing a shared CPU (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Season 4, rising by 1 each season.
HAND = np.array([1, 4, 2, 8, 2, 5, 3, 9, 3, 6, 4, 10, 4, 7, 5, 11, 5, 8, 6, 12], dtype=float)


def _hand_data(**kwargs) -> ForecastData:
    config = SeriesConfig("y", window=4, horizon=3, val_fraction=0.15, test_fraction=0.25, **kwargs)
    return ForecastData(HAND, config=config)


# -- baselines on a hand-made series ----------------------------------------------------------
def test_hand_series_spans_and_origins():
    data = _hand_data()
    assert data.spans == {"train": (0, 12), "val": (12, 15), "test": (15, 20)}
    np.testing.assert_array_equal(data.origins("test"), [14, 15, 16])
    np.testing.assert_array_equal(data.actuals(np.array([14, 16])), [[11, 5, 8], [8, 6, 12]])


def test_naive_and_seasonal_naive_by_hand():
    data = _hand_data()
    origins = np.array([14, 16])
    np.testing.assert_array_equal(naive_forecast(data, origins), [[5, 5, 5], [5, 5, 5]])
    # season 4: y[T+h-4]  ->  origin 14: rows 11, 12, 13; origin 16: rows 13, 14, 15
    np.testing.assert_array_equal(
        seasonal_naive_forecast(data, origins, 4), [[10, 4, 7], [7, 5, 11]]
    )
    # season 2, h = 3 > season: y[T+3-4] = y[T-1]  ->  origin 14: rows 13, 14, 13
    np.testing.assert_array_equal(
        seasonal_naive_forecast(data, origins, 2), [[7, 5, 7], [11, 5, 11]]
    )
    # season 1 is the naive forecast
    np.testing.assert_array_equal(
        seasonal_naive_forecast(data, origins, 1), naive_forecast(data, origins)
    )
    with pytest.raises(ValueError, match="season 16 reaches before the first row"):
        seasonal_naive_forecast(data, np.array([14]), 16)


def test_ar_recovers_an_exact_autoregression_in_levels():
    """y_t = 100 * 0.8^t is AR(1) without noise: the direct forecasts are 0.8^h * y_T."""
    y = 100 * 0.8 ** np.arange(60.0)
    data = ForecastData(y, config=SeriesConfig("y", window=5, horizon=3))
    origins = data.origins("test")
    forecast = LinearAR(order=1).fit(data).predict(data, origins)
    expected = y[origins][:, None] * 0.8 ** np.arange(1, 4)[None, :]
    np.testing.assert_allclose(forecast, expected, rtol=1e-8, atol=1e-12)


def test_ar_on_differences_recovers_a_quadratic_trend():
    """y_t = t^2: z_t = 2t - 1, so z_{t+1} = z_t + 2 (AR(1) with a constant) — exact."""
    y = np.arange(80.0) ** 2
    data = ForecastData(y, config=SeriesConfig("y", window=6, horizon=4, transform="diff"))
    origins = data.origins("test")
    np.testing.assert_allclose(
        LinearAR(order=2).fit(data).predict(data, origins), data.actuals(origins), rtol=1e-9
    )


def test_ar_order_cannot_exceed_the_window():
    with pytest.raises(ValueError, match="order 9 exceeds the window 4"):
        LinearAR(order=9).fit(_hand_data())


# -- metrics by hand ---------------------------------------------------------------------------
def test_metrics_by_hand_skip_missing_actuals():
    forecast = np.array([[1.0, 2.0], [3.0, 4.0]])
    actual = np.array([[2.0, 2.0], [1.0, np.nan]])
    anchors = np.array([1.5, 2.0])
    m = forecast_metrics(forecast, actual, anchors, scale=0.5, transform="diff")
    # errors -1, 0, 2 (the missing actual is not scored)
    assert m["count"] == 3
    assert m["mae"] == pytest.approx(1.0)
    assert m["rmse"] == pytest.approx(math.sqrt(5 / 3))
    assert m["mase"] == pytest.approx(2.0)
    assert m["mae_by_horizon"] == pytest.approx([1.5, 0.0])
    # directions from y_T: predicted -, +, + ; actual +, +, -  -> 1 of 3
    assert m["direction_accuracy"] == pytest.approx(1 / 3)
    assert m["last_horizon"]["mae"] == 0.0 and m["last_horizon"]["count"] == 1


def test_metrics_log_returns_and_naive_direction():
    m = forecast_metrics(np.array([[110.0]]), np.array([[121.0]]), np.array([100.0]), 1.0,
                         transform="logret")  # fmt: skip
    assert m["return_mae"] == pytest.approx(math.log(1.1), rel=1e-12)
    assert m["direction_accuracy"] == 1.0
    flat = forecast_metrics(np.array([[100.0]]), np.array([[121.0]]), np.array([100.0]), 1.0,
                            transform="logret")  # fmt: skip
    assert flat["direction_accuracy"] is None  # the naive forecast has no direction
    assert "direction_accuracy" not in forecast_metrics(
        np.ones((1, 1)), np.ones((1, 1)), np.ones(1), 1.0
    )


# -- the model -------------------------------------------------------------------------------
def test_forecaster_is_direct_multi_horizon_and_its_loss_is_the_mse():
    torch.manual_seed(0)
    model = Forecaster(input_size=3, horizon=5, hidden_size=8, cell="gru")
    x, y = torch.randn(4, 12, 3), torch.randn(4, 5)
    out = model(x)
    assert out.shape == (4, 5)
    step = model.step((x, y))
    torch.testing.assert_close(step.loss, ((out - y) ** 2).mean())
    assert step.count == 20
    again = Forecaster.from_config(model.config())
    again.load_state_dict(model.state_dict())
    torch.testing.assert_close(again(x), out)
    with pytest.raises(ValueError, match=r"input must have shape \[B, W, 3\]"):
        model(torch.zeros(4, 12, 2))
    with pytest.raises(ValueError, match="cell must be one of"):
        Forecaster(1, 2, cell="transformer")


def test_window_batches_cover_every_window_once_per_epoch():
    batches = WindowBatches(np.arange(10.0)[:, None, None], np.arange(10.0)[:, None], 4, seed=3)
    assert len(batches) == 3
    seen = torch.cat([x.flatten() for x, _ in batches.epoch(1)])
    assert sorted(seen.tolist()) == list(range(10))
    again = torch.cat([x.flatten() for x, _ in batches.epoch(1)])
    torch.testing.assert_close(seen, again)  # same order for the same epoch (exact resume)


def test_a_model_worse_than_naive_is_reported_as_losing():
    data = _hand_data()
    model = Forecaster(input_size=1, horizon=3, hidden_size=4)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(50.0)  # 50 standard deviations off
    report = forecast_report(model, data, "test", season=4)
    assert set(report["baselines"]) == {"naive", "seasonal_naive", "ar"}
    assert report["beats_naive"] is False
    assert "the model LOSES to the naive forecast" in report["verdict"]
    assert report["ranking"][-1] == "model"
    # every forecaster is scored on the same origins
    counts = {m["count"] for m in [report["model"], *report["baselines"].values()]}
    assert counts == {9}


def test_report_baselines_match_the_functions():
    data = _hand_data()
    report = forecast_report(None, data, "test", season=4, ar=LinearAR(2).fit(data))
    origins = data.origins("test")
    expected = baseline_forecasts(data, origins, season=4, ar=LinearAR(2).fit(data))
    actual = data.actuals(origins)
    for name, forecast in expected.items():
        assert report["baselines"][name]["mae"] == pytest.approx(
            np.abs(forecast - actual).mean(), rel=1e-12
        )


# -- command line ------------------------------------------------------------------------------
def _csv(tmp_path, n=260, name="series.csv"):
    t = np.arange(n)
    rng = np.random.default_rng(0)
    values = 20 + 0.05 * t + 4 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.3, n)
    dates = pd.date_range("2000-01-03", periods=n, freq="W-MON").strftime("%Y-%m-%d")
    frame = pd.DataFrame({"week": dates, "sales": values, "price": rng.normal(5, 1, n)})
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


TRAIN = ["train", "forecast", "--target", "sales", "--date-column", "week", "--window", "12",
         "--horizon", "3", "--season", "12", "--hidden-size", "8", "--steps", "20",
         "--eval-every", "10", "--no-progress"]  # fmt: skip


def test_train_evaluate_and_forecast_end_to_end(tmp_path, capsys):
    csv = _csv(tmp_path)
    out = tmp_path / "run"
    assert main([*TRAIN, "--csv", str(csv), "--features", "price", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "naive" in printed and "seasonal_naive" in printed and "ar" in printed
    for name in ("config.json", "series.json", "model.safetensors", "metrics.jsonl",
                 "test_metrics.json", "forecast.png"):  # fmt: skip
        assert (out / name).is_file(), name
    report = json.loads((out / "test_metrics.json").read_text())
    assert set(report["baselines"]) == {"naive", "seasonal_naive", "ar"}
    assert report["span"] == "test" and report["origins"] > 0

    assert main(["evaluate", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    evaluated = json.loads(captured.out)  # one JSON object, nothing else
    assert evaluated["task"] == "forecast"
    assert evaluated["model"]["mae"] == pytest.approx(report["model"]["mae"], rel=1e-6)
    assert evaluated["baselines"]["ar"]["mae"] == pytest.approx(report["baselines"]["ar"]["mae"])

    assert main(["evaluate", str(out)]) == 0
    text = capsys.readouterr().out
    for line in ("model_mase", "naive_mase", "seasonal_naive_mase", "ar_mase", "verdict"):
        assert line in text

    recent = tmp_path / "recent.csv"
    pd.read_csv(csv).tail(30).to_csv(recent, index=False)
    assert main(["forecast", str(out), "--csv", str(recent)]) == 0
    table = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    assert list(table.columns) == ["origin", "h", "forecast"]
    assert table["h"].tolist() == [1, 2, 3] and (table["origin"] == table["origin"].iloc[0]).all()
    assert table["forecast"].between(10, 40).all()

    target = tmp_path / "forecasts.csv"
    args = ["forecast", str(out), "--csv", str(recent), "--all", "--out", str(target)]
    assert main(args) == 0
    assert "actual" in pd.read_csv(target).columns
    before = target.read_bytes()
    assert main(args) == 2  # never overwritten without --force
    assert "exists; pass --force" in capsys.readouterr().err
    assert target.read_bytes() == before


def _line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def _set_cell(lines: list[str], index: int, column: int, value: str) -> None:
    cells = lines[index].split(",")
    cells[column] = value
    lines[index] = ",".join(cells)


def _corrupt(path, edit):
    lines = path.read_text().splitlines()
    edit(lines)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("edit", "extra", "match"),
    [
        (None, ["--target", "revenue"], "no column 'revenue'; its columns are week, sales, price"),
        (lambda ls: _set_cell(ls, 50, 1, "12.x"), [],
         "line 51: column 'sales' has '12.x', not a number"),
        (lambda ls: ls.__setitem__(slice(14, None), []), [],
         "13 rows, shorter than --window 12 \\+ --horizon 3"),
        (lambda ls: ls.insert(40, ls[30]), [], "line 41: date .* comes before line 40"),
        (lambda ls: ls.insert(40, ls[39]), [], "line 41: date .* duplicates line 40"),
        (lambda ls: [_set_cell(ls, i, 1, "") for i in (20, 21, 99)],
         ["--fill", "none"], "3 missing value\\(s\\) at lines 21, 22, 100; pass --fill"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2_and_the_old_run_survives(tmp_path, capsys, edit, extra,
                                                                match):  # fmt: skip
    import re

    csv = _csv(tmp_path)
    if edit is not None:
        _corrupt(csv, edit)
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text('{"task": "forecast", "marker": 1}')
    args = [*TRAIN, "--csv", str(csv), "--out", str(out), "--force"]
    if extra[:1] == ["--target"]:
        args[args.index("--target") + 1] = extra[1]
        extra = []
    assert main([*args, *extra]) == 2
    assert re.search(match, _line_error(capsys))
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]
    assert json.loads((out / "config.json").read_text())["marker"] == 1


def test_existing_run_needs_force(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text('{"task": "forecast"}')
    assert main([*TRAIN, "--csv", str(_csv(tmp_path)), "--out", str(out)]) == 2
    assert "already holds a run; pass --force" in _line_error(capsys)


def test_usage_errors(tmp_path, capsys):
    csv = str(_csv(tmp_path))
    assert main(["train", "forecast", "--csv", csv, "--target", "sales"]) == 2
    assert "--window W and --horizon H are required" in _line_error(capsys)
    assert main([*TRAIN, "--csv", csv, "--window", "0"]) == 2
    assert "--window must be > 0" in _line_error(capsys)
    assert main(["train", "forecast", "--window", "3", "--horizon", "1"]) == 2
    assert "give the data" in _line_error(capsys)
    assert main([*TRAIN, "--csv", csv, "--season", "400", "--out", str(tmp_path / "r")]) == 2
    assert "--season 400 is longer than the history" in _line_error(capsys)


def test_resume_ends_with_the_same_weights_as_an_uninterrupted_run(tmp_path):
    from rnnkit.tasks.forecaster import SeriesData, resume_forecaster, train_forecaster
    from rnnkit.train import Callback, TrainConfig

    class StopAt(Callback):
        def on_step_end(self, trainer, info):
            if trainer.step == 10:
                trainer.request_stop("test")

    csv = _csv(tmp_path)
    data = SeriesData(csv=str(csv), target="sales", window=12, horizon=3, date_column="week",
                      season=12)  # fmt: skip
    kwargs = dict(data=data, model={"hidden_size": 8}, train=TrainConfig(steps=20, eval_every=5))
    _, whole, whole_report = train_forecaster(tmp_path / "whole", **kwargs)
    result, part, _ = train_forecaster(tmp_path / "part", callbacks=[StopAt()], **kwargs)
    assert result.step == 10 and result.stop_reason == "test"
    result, part, part_report = resume_forecaster(part.path)
    assert result.step == 20
    a, b = load_tensors(whole.model_path), load_tensors(part.model_path)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    assert part_report["best_step"] == whole_report["best_step"]
    # and the last weights (the optimiser's state of training) agree too
    last_a = load_tensors(whole.path / "trainer_state" / "model.safetensors")
    last_b = load_tensors(part.path / "trainer_state" / "model.safetensors")
    for name in last_a:
        torch.testing.assert_close(last_a[name], last_b[name], rtol=0, atol=0)
    assert part_report["model"]["mae"] == whole_report["model"]["mae"]
