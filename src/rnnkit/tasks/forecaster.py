"""Forecasting: a recurrent encoder over a window, one linear head for all horizons at once.

Direct multi-horizon forecasting: the network reads the window ``x_{T-W+1} … x_T`` (channel 0
the standardised transformed target ``z``, then the features) and emits ``H`` numbers at once,
the standardised ``ẑ_{T+1} … ẑ_{T+H}`` — no feeding back of its own predictions::

    h_t = RNN(x_t, h_{t-1})                     t = T-W+1 … T
    ẑ_{T+1 … T+H} = V h_T + b                   (one Linear(hidden_size, H) head)
    loss = mean_{b,h} (ẑ_{T+h} - z_{T+h})²      (MSE in the standardised space)

:class:`rnnkit.data.series.ForecastData` turns ``ẑ`` back into original units. Everything the
model is judged by — MAE, RMSE, MASE, direction accuracy, and the naive, seasonal-naive and
linear AR baselines on the same origins — comes from :func:`forecast_report`.

Shapes: ``B`` batch, ``W`` window, ``C`` input channels, ``H`` horizon.

Example::

    >>> import torch
    >>> model = Forecaster(input_size=1, horizon=4, hidden_size=8)
    >>> model(torch.zeros(2, 16, 1)).shape
    torch.Size([2, 4])
"""

from __future__ import annotations

import datetime
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from rnnkit.data.series import (
    ForecastData,
    Scaler,
    SeriesConfig,
    WindowBatches,
    load_series,
    resolve_dataset,
)
from rnnkit.errors import InvalidInputError
from rnnkit.io import (
    RunDir,
    atomic_write_bytes,
    atomic_write_json,
    file_sha256,
    load_tensors,
    read_json,
    save_tensors,
)
from rnnkit.layers import make_layer
from rnnkit.tasks.base import CELLS, StepOutput, Task, check_positive_ints
from rnnkit.tasks.baselines import LinearAR, baseline_forecasts, forecast_metrics, up_fraction
from rnnkit.train import Callback, TrainConfig, Trainer, TrainResult, seed_everything

log = logging.getLogger(__name__)


class Forecaster(Task):
    """Window in, ``H`` future values out (see module docstring for the equations).

    Args:
        input_size: ``C``, channels per time step (1 + number of features).
        horizon: ``H``, number of outputs (``T+1 … T+H``).
        cell: ``lstm``, ``gru``, ``rnn`` or ``irnn``.
        hidden_size: units per recurrent layer.
        num_layers: stacked recurrent layers.
        dropout: dropout between stacked layers and before the head.
        layer_options: extra keyword arguments for :func:`rnnkit.layers.make_layer`
            (``layer_norm``, ``peephole``, ``backend`` …).

    Shapes:
        ``forward(x[B, W, C]) -> [B, H]``; ``step((x[B, W, C], y[B, H]))`` returns the MSE.
    """

    name = "forecast"

    def __init__(
        self,
        input_size: int,
        horizon: int,
        *,
        cell: str = "lstm",
        hidden_size: int = 64,
        num_layers: int = 1,
        dropout: float = 0.0,
        layer_options: dict | None = None,
    ) -> None:
        super().__init__()
        check_positive_ints(
            input_size=input_size, horizon=horizon, hidden_size=hidden_size, num_layers=num_layers
        )
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}; got {cell!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout!r}")
        self.input_size, self.horizon, self.cell = input_size, horizon, cell
        self.hidden_size, self.num_layers, self.dropout_p = hidden_size, num_layers, dropout
        self.layer_options = dict(layer_options or {})
        self.rnn = make_layer(
            cell,
            input_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
            **self.layer_options,
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, horizon)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"input must have shape [B, W, {self.input_size}]; got {tuple(x.shape)}"
            )
        out, _ = self.rnn(x)  # [B, W, hidden]
        return self.head(self.dropout(out[:, -1]))  # last step's state -> [B, H]

    def step(self, batch, state=None) -> StepOutput:
        x, y = batch
        pred = self(x)
        loss = torch.mean((pred - y) ** 2)
        stats = {"abs_error": float((pred.detach() - y).abs().sum())}
        return StepOutput(loss=loss, count=y.numel(), stats=stats)

    def summarize(self, loss_sum: float, count: int, stats: dict[str, float]) -> dict[str, float]:
        if count == 0:
            return {"loss": float("nan")}
        return {"loss": loss_sum / count, "mae_scaled": stats.get("abs_error", 0.0) / count}

    def config(self) -> dict:
        return {
            "input_size": self.input_size,
            "horizon": self.horizon,
            "cell": self.cell,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "dropout": self.dropout_p,
            "layer_options": self.layer_options,
        }

    @torch.no_grad()
    def predict_scaled(self, inputs: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Scaled outputs ``[M, H]`` for scaled inputs ``[M, W, C]`` (eval mode, no grad)."""
        was_training = self.training
        self.eval()
        dtype = next(self.parameters()).dtype
        try:
            parts = [
                self(torch.as_tensor(inputs[i : i + batch_size], dtype=dtype)).double().numpy()
                for i in range(0, len(inputs), batch_size)
            ]
        finally:
            self.train(was_training)
        return np.concatenate(parts) if parts else np.zeros((0, self.horizon))

    def forecast(self, data: ForecastData, origins: np.ndarray) -> np.ndarray:
        """Forecasts in original units ``[M, H]`` from each origin ``T``."""
        return data.to_levels(self.predict_scaled(data.inputs(origins)), origins)


def span_batches(
    data: ForecastData, span: str, batch_size: int, *, shuffle: bool, seed: int = 0
) -> WindowBatches:
    """:class:`WindowBatches` of every origin of ``span`` (inputs and scaled targets)."""
    origins = data.origins(span)
    return WindowBatches(
        data.inputs(origins), data.targets(span, origins), batch_size, shuffle=shuffle, seed=seed
    )


def forecast_report(
    model: Forecaster | None,
    data: ForecastData,
    span: str = "test",
    *,
    season: int | None = None,
    ar: LinearAR | None = None,
    scale: float | None = None,
) -> dict:
    """The model and every baseline, scored on the same origins of ``span``, in original units.

    Origins with less than one ``season`` of history are left out (for every forecaster alike).
    ``scale`` is the MASE denominator (default: the training span's mean absolute change).

    Returns a JSON-able dict::

        {"span", "origins", "first_origin", "last_origin", "transform", "horizon", "mase_scale",
         "model": {metrics}, "baselines": {"naive": {...}, "seasonal_naive": {...}, "ar": {...}},
         "ranking": [names by MAE], "beats_naive": bool, "verdict": "one sentence"}

    (``up_fraction``, the accuracy of always predicting "up", over all horizons and at ``T+H``
    alone, ``up_fraction_last_horizon``, is added for returns.)
    """
    origins = data.origins(span)
    if season is not None:
        origins = origins[origins + 1 - season >= 0]
    if len(origins) == 0:
        raise InvalidInputError(f"the {span} span has no origin with a full season of history")
    actual = data.actuals(origins)
    anchors = data.anchors(origins)
    scale = data.training_scale() if scale is None else scale
    transform = data.config.transform
    forecasts = {}
    if model is not None:
        forecasts["model"] = model.forecast(data, origins)
    baselines = baseline_forecasts(data, origins, season=season, ar=ar)
    forecasts.update(baselines)

    def score(f):
        return forecast_metrics(f, actual, anchors, scale, transform=transform)

    report = {
        "span": span,
        "origins": len(origins),
        "first_origin": data.date_of(origins[:1])[0],
        "last_origin": data.date_of(origins[-1:])[0],
        "transform": transform,
        "horizon": data.config.horizon,
        "season": season,
        "mase_scale": scale,
    }
    if transform in ("diff", "logret"):
        report["up_fraction"] = up_fraction(actual, anchors)
        report["up_fraction_last_horizon"] = up_fraction(actual[:, -1:], anchors)
    if model is not None:
        report["model"] = score(forecasts["model"])
    report["baselines"] = {name: score(f) for name, f in baselines.items()}
    entries = ({"model": report["model"]} if model is not None else {}) | report["baselines"]
    report["ranking"] = sorted(entries, key=lambda k: entries[k]["mae"])
    if model is not None:
        report["beats_naive"] = report["model"]["mae"] < report["baselines"]["naive"]["mae"]
        report["verdict"] = verdict(report)
    return report


def verdict(report: dict) -> str:
    """One sentence: does the model beat the naive forecast (and the other baselines)?"""
    m = report["model"]
    base = report["baselines"]
    naive = base["naive"]
    head = (
        f"the model BEATS the naive forecast (MASE {m['mase']:.3f} vs {naive['mase']:.3f})"
        if m["mae"] < naive["mae"]
        else f"the model LOSES to the naive forecast (MASE {m['mase']:.3f} vs {naive['mase']:.3f})"
    )
    others = []
    for name in ("seasonal_naive", "ar"):
        if name in base:
            word = "beats" if m["mae"] < base[name]["mae"] else "loses to"
            others.append(f"{word} {name.replace('_', '-')} ({base[name]['mase']:.3f})")
    return head + ("; it " + " and ".join(others) if others else "")


def format_report(report: dict) -> str:
    """A fixed-width table of the report (for the command line).

    Columns: MAE, RMSE, MASE (and direction accuracy for returns) over all horizons, then the
    same at ``T+H`` alone (for log returns: errors of the predicted log return to ``T+H``).
    """
    returns = report["transform"] in ("diff", "logret")
    logret = report["transform"] == "logret"
    at = f"@T+{report['horizon']}"
    cols = ["MAE", "RMSE", "MASE"] + (["dir acc"] if returns else []) + [f"MAE{at}"]
    cols += [f"lr MAE{at}", f"lr RMSE{at}"] if logret else []
    cols += [f"dir{at}"] if returns else []
    lines = [
        f"{report['span']} span: {report['origins']} origins from {report['first_origin']} "
        f"to {report['last_origin']}, horizon {report['horizon']}, transform "
        f"{report['transform']}",
        f"{'':15}" + "".join(f"{c:>12}" for c in cols),
    ]
    entries = ({"model": report["model"]} if "model" in report else {}) | report["baselines"]
    for name, m in entries.items():
        last = m["last_horizon"]
        row = [m["mae"], m["rmse"], m["mase"]]
        row += [m.get("direction_accuracy")] if returns else []
        row += [last["mae"]]
        row += [last["return_mae"], last["return_rmse"]] if logret else []
        row += [last.get("direction_accuracy")] if returns else []
        lines.append(f"{name:15}" + "".join(f"{_fmt(v):>12}" for v in row))
    if returns:
        lines.append(
            f"always-up direction accuracy: {report['up_fraction']:.3f} "
            f"({report['up_fraction_last_horizon']:.3f} at T+{report['horizon']}); "
            "lr = log return from T"
            if logret
            else f"always-up direction accuracy: {report['up_fraction']:.3f} "
            f"({report['up_fraction_last_horizon']:.3f} at T+{report['horizon']})"
        )
    if "verdict" in report:
        lines.append(report["verdict"])
    return "\n".join(lines)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isfinite(v):
        return "nan"
    return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"


# -- runs on disk ------------------------------------------------------------------------------
SERIES_FILE = "series.json"
REPORT_FILE = "report.json"
PLOT_FILE = "forecast.png"


BEST_FILE = "best.safetensors"


class BestWeights(Callback):
    """Keep the weights with the lowest validation loss (restored into the model at the end).

    With a run directory they are also written to ``best.safetensors`` at each improvement, so
    a resumed run knows its best weights so far (their loss is read back from the metrics).
    """

    def __init__(self, run: RunDir | None = None) -> None:
        self.run = run
        self.best = math.inf
        self.step = None
        self.state: dict[str, Tensor] | None = None

    def on_train_start(self, trainer) -> None:
        path = None if self.run is None else self.run / BEST_FILE
        if trainer.step == 0 or path is None or not path.is_file():
            return
        seen = [r for r in trainer.history if r.get("val_loss") is not None]
        if seen:
            record = min(seen, key=lambda r: r["val_loss"])
            self.best, self.step = record["val_loss"], record["step"]
            self.state = load_tensors(path)

    def on_evaluate(self, trainer, metrics: dict) -> None:
        value = metrics.get("val_loss")
        if value is not None and math.isfinite(value) and value < self.best:
            self.best, self.step = value, trainer.step
            self.state = {k: v.detach().clone() for k, v in trainer.task.state_dict().items()}
            if self.run is not None:
                save_tensors(self.run / BEST_FILE, self.state)


def source_path(csv: str | os.PathLike | None, dataset: str | None) -> Path:
    """The CSV to read: ``csv``, or the file of the packaged ``dataset``."""
    if (csv is None) == (dataset is None):
        raise InvalidInputError("give either a CSV file (--csv) or a packaged --dataset")
    return Path(csv) if csv is not None else resolve_dataset(dataset).path()


def train_forecaster(
    out: str | os.PathLike,
    *,
    series: SeriesConfig,
    csv: str | os.PathLike | None = None,
    dataset: str | None = None,
    model: dict | None = None,
    train: TrainConfig | None = None,
    batch_size: int = 64,
    season: int | None = None,
    ar_order: int | None = None,
    force: bool = False,
    callbacks: Sequence[Callback] = (),
) -> tuple[TrainResult, RunDir, dict]:
    """Train a :class:`Forecaster` into the run directory ``out`` and score it on the test span.

    Args:
        out: run directory (must not hold a run unless ``force``).
        series: how the CSV becomes examples (:class:`rnnkit.data.series.SeriesConfig`).
        csv / dataset: the data, a CSV file or a packaged series (``co2``, ``sp500``, ``nasdaq``).
        model: :class:`Forecaster` arguments other than ``input_size`` and ``horizon``.
        train: :class:`rnnkit.train.TrainConfig` (default 2000 steps, evaluation every 100).
        batch_size: windows per batch.
        season: period of the seasonal-naive baseline (None: no seasonal baseline).
        ar_order: lags of the AR baseline (default: the window).

    The weights kept are those with the lowest validation loss. Writes ``config.json``,
    ``series.json`` (scaler, AR coefficients, spans), ``model.safetensors`` (best weights),
    ``best.safetensors`` (best so far, for resuming), ``metrics.jsonl``, ``trainer_state/``,
    ``report.json`` (test span: model and baselines) and ``forecast.png``.
    Every input is validated before anything in ``out`` is touched.

    Returns:
        ``(train result, run directory, test report)``.
    """
    train = train or TrainConfig(steps=2000, eval_every=100)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(f"batch size must be a positive integer; got {batch_size!r}")
    if series.test_fraction <= 0:
        raise InvalidInputError(
            "--test-fraction must be > 0: the test span is where the model and the baselines "
            "are scored"
        )
    run = RunDir.prepare(out, force=force)
    path = source_path(csv, dataset)
    data = load_series(series, path)
    check_season(data, season)
    try:
        ar = LinearAR(ar_order).fit(data)
    except ValueError as exc:
        raise InvalidInputError(f"AR baseline: {exc}") from None
    seed_everything(train.seed)
    try:
        task = Forecaster(data.n_channels, series.horizon, **(model or {}))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"bad model options: {exc}") from None
    train_batches = span_batches(data, "train", batch_size, shuffle=True, seed=train.seed)
    val_batches = (
        span_batches(data, "val", 1024, shuffle=False) if series.val_fraction > 0 else None
    )

    run.create()
    atomic_write_json(
        run / SERIES_FILE,
        {
            "scaler": data.scaler.to_dict(),
            "ar": ar.to_dict(),
            "season": season,
            "mase_scale": data.training_scale(),
            "spans": {
                name: {
                    "rows": list(span),
                    "from": data.date_of([span[0]])[0],
                    "to": data.date_of([span[1] - 1])[0],
                }
                for name, span in data.spans.items()
                if span[1] > span[0]
            },
        },
    )
    run.write_config(
        {
            "task": Forecaster.name,
            "model": task.config(),
            "data": {
                "csv": str(path.resolve()),
                "dataset": dataset,
                "sha256": file_sha256(path),
                "rows": len(data.levels),
                "series": series.to_dict(),
                "batch_size": batch_size,
            },
            "train": train.to_dict(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
    )
    log.info(
        "training %s forecaster on %s: %d parameters",
        task.cell,
        path,
        sum(p.numel() for p in task.parameters()),
    )
    best = BestWeights(run)
    trainer = Trainer(
        task, train, train_batches, val_batches, run=run, callbacks=[*callbacks, best]
    )
    return _finish(trainer.fit(), task, data, run, best, season=season, ar=ar)


def _finish(result, task, data, run, best, *, season, ar) -> tuple[TrainResult, RunDir, dict]:
    """Best weights into ``model.safetensors``, then ``report.json`` and ``forecast.png``."""
    if best.state is not None:
        task.load_state_dict(best.state)
        run.save_weights(task.state_dict())
    report = forecast_report(task, data, "test", season=season, ar=ar)
    report["best_step"] = best.step
    atomic_write_json(run / REPORT_FILE, report)
    plot_forecasts(run / PLOT_FILE, task, data, report["span"], season=season, ar=ar)
    return result, run, report


def resume_forecaster(
    run_path: str | os.PathLike,
    *,
    limits: dict | None = None,
    callbacks: Sequence[Callback] = (),
) -> tuple[TrainResult, RunDir, dict]:
    """Continue a forecasting run from its ``trainer_state/`` (``limits``: steps/epochs/time).

    The data is read again from the recorded source and must be unchanged (same SHA-256); the
    run ends as :func:`train_forecaster` does (best weights, report, plot).
    """
    run = RunDir.for_resume(run_path)
    config = run.read_config()
    if config.get("task") != Forecaster.name:
        raise InvalidInputError(f"{run.path} is a {config.get('task')!r} run, not a forecast run")
    try:
        train = TrainConfig.from_dict(config["train"])
        if limits:
            train = train.replace(**limits)
        batch_size = config["data"]["batch_size"]
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"{run.config_path} is not a valid forecast config ({exc})"
        ) from None
    fr = load_forecast_run_config(run, config)
    task, data = fr.model, fr.data
    task.train()
    train_batches = span_batches(data, "train", batch_size, shuffle=True, seed=train.seed)
    val_batches = (
        span_batches(data, "val", 1024, shuffle=False) if data.config.val_fraction > 0 else None
    )
    best = BestWeights(run)
    trainer = Trainer(
        task, train, train_batches, val_batches, run=run, callbacks=[*callbacks, best]
    )
    result = trainer.fit(resume=True)
    return _finish(result, task, data, run, best, season=fr.season, ar=fr.ar)


def check_season(data: ForecastData, season: int | None) -> None:
    """Refuse a season the seasonal-naive baseline cannot use on the test span."""
    if season is None:
        return
    if isinstance(season, bool) or not isinstance(season, int) or season < 1:
        raise InvalidInputError(f"--season must be a positive integer; got {season!r}")
    first = min(
        int(data.origins(s)[0])
        for s in data.spans
        if s != "train" and data.spans[s][1] > data.spans[s][0]
    )
    if first + 1 - season < 0:
        raise InvalidInputError(
            f"--season {season} is longer than the history before the first evaluated origin "
            f"(row {first}); use a shorter season or a longer series"
        )


@dataclass
class ForecastRun:
    """A trained forecasting run: model (eval mode), its data, baselines and config."""

    path: Path
    model: Forecaster
    data: ForecastData
    ar: LinearAR
    season: int | None
    mase_scale: float
    config: dict


def load_forecast_run(
    run_path: str | os.PathLike, csv: str | os.PathLike | None = None
) -> ForecastRun:
    """Load a run and its data: the CSV it was trained on (unchanged), or ``csv``.

    With ``csv`` the file is read with the run's settings and scaler, unsplit (``span="all"``).

    Raises:
        InvalidInputError: not a forecasting run, the training CSV changed or vanished, or the
            new CSV does not fit the run's settings.
    """
    run = RunDir(run_path).check()
    config = run.read_config()
    if config.get("task") != Forecaster.name:
        raise InvalidInputError(f"{run.path} is a {config.get('task')!r} run, not a forecast run")
    return load_forecast_run_config(run, config, csv)


def load_forecast_run_config(
    run: RunDir, config: dict, csv: str | os.PathLike | None = None
) -> ForecastRun:
    """:func:`load_forecast_run` for an already read ``config.json``."""
    extra = read_json(run / SERIES_FILE)
    try:
        d = config["data"]
        series = SeriesConfig.from_dict(d["series"])
        scaler = Scaler.from_dict(extra["scaler"])
        ar = LinearAR.from_dict(extra["ar"])
        model = Forecaster.from_config(config["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"{run.path} has an invalid forecast config ({exc})") from None
    try:
        model.load_state_dict(run.load_weights())
    except RuntimeError as exc:
        raise InvalidInputError(
            f"{run.model_path} does not match {run.config_path} ({str(exc).splitlines()[0]})"
        ) from None
    model.eval()
    if csv is None:
        path = resolve_dataset(d["dataset"]).path() if d.get("dataset") else Path(d["csv"])
        if not path.is_file():
            raise InvalidInputError(
                f"the training data {path} is gone; to score another file pass it with --data"
            )
        if d.get("sha256") and file_sha256(path) != d["sha256"]:
            raise InvalidInputError(
                f"the training data {path} changed since training (SHA-256 differs); "
                "to score another file pass it with --data"
            )
        data = load_series(series, path, scaler=scaler)
    else:
        data = load_series(series, csv, scaler=scaler, split=False)
    return ForecastRun(
        path=run.path,
        model=model,
        data=data,
        ar=ar,
        season=extra.get("season"),
        mase_scale=extra.get("mase_scale") or float("nan"),
        config=config,
    )


def evaluate_forecast_run(
    run_path: str | os.PathLike, csv: str | os.PathLike | None = None, span: str | None = None
) -> dict:
    """:func:`forecast_report` of a run: its test span, or every complete origin of ``csv``."""
    fr = load_forecast_run(run_path, csv)
    if span is None:
        span = "all" if csv is not None else "test"
    report = forecast_report(
        fr.model, fr.data, span, season=fr.season, ar=fr.ar, scale=fr.mase_scale
    )
    report["data"] = str(csv) if csv is not None else fr.config["data"]["csv"]
    return report


def forecast_table(
    run_path: str | os.PathLike, csv: str | os.PathLike, *, every_origin: bool = False
) -> pd.DataFrame:
    """Forecasts from the last row of ``csv`` (or every row with a full window), as a table.

    Columns: ``origin`` (date, or 0-based row without a date column), ``h``, ``forecast`` in
    original units, and with ``every_origin`` also ``actual`` (blank where not in the file).
    """
    fr = load_forecast_run(run_path, csv)
    data = fr.data
    origins = data.forecast_origins() if every_origin else np.array([data.last_origin()])
    forecast = fr.model.forecast(data, origins)  # [M, H]
    H = data.config.horizon
    table = pd.DataFrame(
        {
            "origin": np.repeat(data.date_of(origins), H),
            "h": np.tile(np.arange(1, H + 1), len(origins)),
            "forecast": forecast.reshape(-1),
        }
    )
    if every_origin:
        table["actual"] = data.actuals(origins).reshape(-1)
    return table


def plot_forecasts(
    path: str | os.PathLike,
    model: Forecaster,
    data: ForecastData,
    span: str,
    *,
    season: int | None = None,
    ar: LinearAR | None = None,
) -> None:
    """PNG of actuals against the model's and the baselines' forecasts over ``span``.

    Each forecast ``ŷ_{T+h}`` is drawn at its target time ``T+h``, for ``h = 1`` and ``h = H``.
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    origins = data.origins(span)
    if season is not None and (origins + 1 - season >= 0).any():
        origins = origins[origins + 1 - season >= 0]
    elif season is not None:
        season = None  # too little history for the seasonal baseline: leave it out
    H = data.config.horizon
    forecasts = {"model": model.forecast(data, origins)}
    forecasts.update(baseline_forecasts(data, origins, season=season, ar=ar))
    rows = np.arange(origins[0] + 1, origins[-1] + H + 1)
    x_of = (lambda r: data.dates[np.asarray(r)]) if data.dates is not None else (lambda r: r)
    horizons = sorted({1, H})
    returns = data.config.transform == "logret"
    panels = len(horizons) + returns
    fig, axes = plt.subplots(panels, 1, figsize=(11, 3.6 * panels), squeeze=False)
    styles = {
        "naive": (":", 1.0),
        "seasonal_naive": ("-.", 1.0),
        "ar": ("--", 1.0),
        "model": ("-", 1.4),
    }
    where = "all rows" if span == "all" else f"{span} span"
    for ax, h in zip(axes[:, 0], horizons):
        ax.plot(x_of(rows), data.levels[rows], color="black", lw=1.2, label="actual")
        for name, f in forecasts.items():
            style, lw = styles.get(name, ("-", 1.0))
            ax.plot(x_of(origins + h), f[:, h - 1], style, lw=lw, label=name, alpha=0.85)
        ax.set_title(f"{data.config.target}: {where}, forecasts of T+{h}")
    if returns:  # levels hide return forecasts (all lines overlap): show log(y_{T+H} / y_T)
        ax = axes[-1, 0]
        anchors = data.anchors(origins)
        actual = np.log(data.actuals(origins)[:, -1] / anchors)
        ax.plot(x_of(origins + H), actual, color="black", lw=0.8, label="actual", alpha=0.6)
        for name, f in forecasts.items():
            style, lw = styles.get(name, ("-", 1.0))
            ax.plot(x_of(origins + H), np.log(f[:, -1] / anchors), style, lw=lw, label=name)
        ax.set_title(f"{data.config.target}: {where}, log return from T to T+{H}")
    for ax in axes[:, 0]:
        ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


__all__ = [
    "CELLS",
    "BestWeights",
    "ForecastRun",
    "Forecaster",
    "WindowBatches",
    "check_season",
    "evaluate_forecast_run",
    "forecast_report",
    "forecast_table",
    "load_forecast_run",
    "plot_forecasts",
    "resume_forecaster",
    "source_path",
    "train_forecaster",
    "format_report",
    "span_batches",
    "verdict",
]
