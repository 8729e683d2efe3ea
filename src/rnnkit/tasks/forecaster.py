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

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from rnnkit.config import Config
from rnnkit.data.series import (
    FILLS,
    PACKAGED,
    TRANSFORMS,
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
    file_sha256,
    read_jsonl,
)
from rnnkit.layers import make_layer
from rnnkit.runs import (
    Headline,
    LoadedRun,
    Predictor,
    Prepared,
    TaskSpec,
    evaluate_run,
    load_run,
    resume_run,
    train_run,
)
from rnnkit.runs import best_step as runs_best_step
from rnnkit.tasks.base import (
    CELLS,
    StepOutput,
    Task,
    check_field_types,
    check_layer_options,
    check_positive_ints,
)
from rnnkit.tasks.baselines import LinearAR, baseline_forecasts, forecast_metrics, up_fraction
from rnnkit.train import Callback, TrainConfig, TrainResult


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
        check_layer_options(self.layer_options)
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
        weight = next(self.parameters())
        dtype, device = weight.dtype, weight.device
        try:
            parts = [
                self(torch.as_tensor(inputs[i : i + batch_size], dtype=dtype, device=device))
                .double()
                .cpu()
                .numpy()
                for i in range(0, len(inputs), batch_size)
            ]
        finally:
            self.train(was_training)
        return np.concatenate(parts) if parts else np.zeros((0, self.horizon))

    def forecast(self, data: ForecastData, origins: np.ndarray) -> np.ndarray:
        """Forecasts in original units ``[M, H]`` from each origin ``T``."""
        return data.to_levels(self.predict_scaled(data.inputs(origins)), origins)


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


# -- the forecasting run -----------------------------------------------------------------------
SERIES_FILE = "series.json"
PLOT_FILE = "forecast.png"


@dataclass
class SeriesData(Config):
    """The data of a forecasting run: where the series is, how it becomes windows
    (the :class:`rnnkit.data.series.SeriesConfig` fields, flat), batching and the baselines.

    With ``dataset`` the packaged series' usual settings fill what is not given (target, date
    column and format, window, horizon, transform, season). ``features`` may be given as a
    comma-separated string.

    >>> SeriesData(dataset="co2").series.window
    104
    >>> SeriesData(csv="sales.csv", target="units", window=28, horizon=7).series.transform
    'levels'
    """

    csv: str | None = field(
        default=None, metadata={"help": "CSV file with a header line", "metavar": "FILE"}
    )
    dataset: str | None = field(
        default=None,
        metadata={
            "help": "a packaged series (statsmodels co2, arch sp500/nasdaq) instead of --csv",
            "choices": tuple(PACKAGED),
        },
    )
    target: str | None = field(
        default=None, metadata={"help": "column to forecast", "metavar": "COL"}
    )
    features: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "comma-separated extra input columns (standardised, not transformed)",
            "metavar": "COLS",
        },
    )
    date_column: str | None = field(
        default=None, metadata={"help": "dates; must be sorted, no duplicates", "metavar": "C"}
    )
    date_format: str | None = field(
        default=None,
        metadata={"help": "strptime format of the dates (default: inferred)", "metavar": "FMT"},
    )
    window: int | None = field(
        default=None, metadata={"help": "rows the model sees", "metavar": "W"}
    )
    horizon: int | None = field(default=None, metadata={"help": "predict T+1..T+H", "metavar": "H"})
    transform: str | None = field(
        default=None,
        metadata={
            "help": "model the target as levels, differences or log returns (default levels)",
            "choices": TRANSFORMS,
        },
    )
    season: int | None = field(
        default=None, metadata={"help": "period of the seasonal-naive baseline", "metavar": "S"}
    )
    fill: str = field(
        default="interpolate",
        metadata={
            "help": "missing values: interpolate (causally), carry forward, or refuse",
            "choices": FILLS,
        },
    )
    val_fraction: float = field(default=0.15, metadata={"help": "validation share"})
    test_fraction: float = field(default=0.15, metadata={"help": "test share"})
    ar_order: int | None = field(
        default=None, metadata={"help": "lags of the AR baseline (default: --window)"}
    )
    batch_size: int = field(default=64, metadata={"help": "windows per batch"})

    def __post_init__(self) -> None:
        if isinstance(self.features, str):
            self.features = tuple(c.strip() for c in self.features.split(",") if c.strip())
        if self.features is None or isinstance(self.features, list | tuple):
            self.features = tuple(self.features or ())
        check_field_types(self)
        if self.csv is not None and self.dataset is not None:
            raise ValueError("give either a CSV file (--csv) or a packaged --dataset, not both")
        if self.csv is None and self.dataset is None:
            raise ValueError(
                "give the data: --csv FILE (with --target, --window, --horizon) "
                f"or --dataset {'|'.join(PACKAGED)}"
            )
        if self.dataset is not None:
            if self.dataset not in PACKAGED:
                raise ValueError(
                    f"unknown dataset {self.dataset!r}; choose one of {', '.join(PACKAGED)}"
                )
            preset = PACKAGED[self.dataset]
            self.target = self.target or preset.target
            if self.date_column is None:
                self.date_column = preset.date_column
            if self.date_format is None and self.date_column == preset.date_column:
                self.date_format = preset.date_format
            for name in ("window", "horizon", "transform", "season"):
                if getattr(self, name) is None:
                    setattr(self, name, preset.defaults.get(name))
        if self.target is None:
            raise ValueError("--target COL is required with --csv")
        if self.window is None or self.horizon is None:
            raise ValueError("--window W and --horizon H are required with --csv")
        self.transform = self.transform or "levels"
        _ = self.series  # SeriesConfig validates the window options
        check_positive_ints(batch_size=self.batch_size)
        for name in ("season", "ar_order"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(
                    f"--{name.replace('_', '-')} must be a positive integer; got {value!r}"
                )
        if self.test_fraction <= 0:
            raise ValueError(
                "--test-fraction must be > 0: the test span is where the model and the "
                "baselines are scored"
            )

    @classmethod
    def from_dict(cls, data: dict, *, strict: bool = True) -> SeriesData:
        if isinstance(data, dict) and isinstance(data.get("series"), dict):
            # Runs written before the run lifecycle nest the series options under "series" and
            # record the packaged file's path in "csv" beside "dataset".
            data = {k: v for k, v in data.items() if k != "series"} | data["series"]
            if data.get("dataset"):
                data["csv"] = None
        return super().from_dict(data, strict=strict)

    @property
    def series(self) -> SeriesConfig:
        """The :class:`rnnkit.data.series.SeriesConfig` of these options."""
        return SeriesConfig(
            target=self.target,
            window=self.window,
            horizon=self.horizon,
            features=self.features,
            date_column=self.date_column,
            date_format=self.date_format,
            transform=self.transform,
            fill=self.fill,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
        )

    def path(self) -> Path:
        """The CSV to read: ``csv``, or the file of the packaged ``dataset``."""
        return Path(self.csv) if self.csv is not None else resolve_dataset(self.dataset).path()


@dataclass
class ForecasterConfig(Config):
    """:class:`Forecaster` arguments other than ``input_size`` and ``horizon`` (from the data)."""

    cell: str = field(default="lstm", metadata={"help": "recurrent cell"})
    hidden_size: int = field(default=64, metadata={"help": "units per recurrent layer"})
    num_layers: int = field(default=1, metadata={"help": "stacked recurrent layers"})
    dropout: float = field(
        default=0.0, metadata={"help": "dropout between stacked layers and before the head"}
    )
    layer_options: dict = field(default_factory=dict, metadata={"flag": False})

    def __post_init__(self) -> None:
        check_field_types(self)
        check_positive_ints(hidden_size=self.hidden_size, num_layers=self.num_layers)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout!r}")


@dataclass
class SeriesEncoders:
    """What a run fitted on its training span (``series.json``): the input scaler, the AR
    baseline, the season of the seasonal-naive baseline, the MASE scale, and the spans."""

    scaler: Scaler
    ar: LinearAR
    season: int | None
    mase_scale: float
    spans: dict

    def to_json(self) -> dict:
        return {
            "scaler": self.scaler.to_dict(),
            "ar": self.ar.to_dict(),
            "season": self.season,
            "mase_scale": self.mase_scale,
            "spans": self.spans,
        }

    @classmethod
    def from_json(cls, obj: dict) -> SeriesEncoders:
        return cls(
            scaler=Scaler.from_dict(obj["scaler"]),
            ar=LinearAR.from_dict(obj["ar"]),
            season=obj.get("season"),
            mase_scale=obj.get("mase_scale") or float("nan"),
            spans=obj.get("spans", {}),
        )


@dataclass
class SeriesPrepared(Prepared):
    """Prepared series: window batches, the fitted :class:`SeriesEncoders` and the data."""

    data: ForecastData | None = None


def _spans(data: ForecastData) -> dict:
    return {
        name: {
            "rows": list(span),
            "from": data.date_of([span[0]])[0],
            "to": data.date_of([span[1] - 1])[0],
        }
        for name, span in data.spans.items()
        if span[1] > span[0]
    }


def span_batches(
    data: ForecastData, span: str, batch_size: int, *, shuffle: bool, seed: int = 0
) -> WindowBatches:
    """:class:`WindowBatches` of every origin of ``span`` (inputs and scaled targets)."""
    origins = data.origins(span)
    return WindowBatches(
        data.inputs(origins), data.targets(span, origins), batch_size, shuffle=shuffle, seed=seed
    )


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


def best_step(run: RunDir) -> int | None:
    """The step whose weights a run keeps: the engine's record (:func:`rnnkit.runs.best_step`);
    runs written before it read the lowest validation loss in ``metrics.jsonl`` (the first of
    equals, as they chose them). None without validation."""
    step = runs_best_step(run)
    if step is not None or not run.metrics_path.is_file():
        return step
    seen = [
        r
        for r in read_jsonl(run.metrics_path)
        if isinstance(r.get("val_loss"), int | float) and math.isfinite(r["val_loss"])
    ]
    return min(seen, key=lambda r: r["val_loss"])["step"] if seen else None


class ForecasterPredictor(Predictor):
    """A forecaster's run: :meth:`forecast`."""

    def forecast(self, csv: str | os.PathLike, *, every_origin: bool = False) -> pd.DataFrame:
        """Forecasts from the last row of ``csv`` (or every row with a full window) as a table:
        ``origin``, ``h``, ``forecast`` (and ``actual``) (:func:`forecast_table`)."""
        return forecast_table(self.loaded, csv, every_origin=every_origin)


class ForecastSpec(TaskSpec):
    """Forecasting in the run lifecycle (:mod:`rnnkit.runs`): the rows are split in time into
    train/validation/test; the scaler, the AR baseline and the MASE scale are fitted on the
    training span (``series.json``); the weights kept are those with the lowest validation
    loss; the held-out report scores the model and every baseline on the test span."""

    name = "forecast"
    task_class = Forecaster
    data_config = SeriesData
    model_config = ForecasterConfig
    encoders_file = SERIES_FILE
    predictor = ForecasterPredictor
    throughput_unit = "windows"

    def default_train(self) -> TrainConfig:
        return TrainConfig(steps=2000, eval_every=100)

    def prepare(
        self, data: SeriesData, seed: int, *, encoders: SeriesEncoders | None = None, split=None
    ) -> SeriesPrepared:
        path = data.path()
        series = load_series(
            data.series, path, scaler=None if encoders is None else encoders.scaler
        )
        if encoders is None:
            check_season(series, data.season)
            try:
                ar = LinearAR(data.ar_order).fit(series)
            except ValueError as exc:
                raise InvalidInputError(f"AR baseline: {exc}") from None
            encoders = SeriesEncoders(
                scaler=series.scaler,
                ar=ar,
                season=data.season,
                mase_scale=series.training_scale(),
                spans=_spans(series),
            )
        train = span_batches(series, "train", data.batch_size, shuffle=True, seed=seed)
        val = span_batches(series, "val", 1024, shuffle=False) if data.val_fraction > 0 else None
        record = {"source": str(path), "sha256": file_sha256(path), "rows": len(series.levels)}
        if data.csv is not None:
            record["csv"] = str(path.resolve())
        return SeriesPrepared(train=train, val=val, encoders=encoders, record=record, data=series)

    def build(self, model: ForecasterConfig, prepared: SeriesPrepared) -> Forecaster:
        data = prepared.data
        return Forecaster(data.n_channels, data.config.horizon, **model.to_dict())

    def encoders_to_json(self, encoders: SeriesEncoders) -> dict:
        return encoders.to_json()

    def encoders_from_json(self, obj: dict) -> SeriesEncoders:
        return SeriesEncoders.from_json(obj)

    def export_model(self, loaded: LoadedRun):
        """``inputs`` (B, W, C) in, ``forecast`` (B, H) out (scaled, transformed: the sidecar
        says how to build one and undo the other); checked by the scaled MAE."""
        from rnnkit.export import Graph, TaskExport

        model = loaded.task
        data = loaded.config.get("data", {})
        graph = Graph(
            fn=model,
            inputs={"inputs": torch.zeros(2, 3, model.input_size)},
            dims={"inputs": {0: "batch", 1: "window"}},
            outputs={"forecast": ["batch", model.horizon]},
            modules=[model],
        )
        return TaskExport(
            [graph],
            sidecar={
                "series": {k: data.get(k) for k in ("target", "features", "window", "transform")},
                "inputs": "the last window rows: channel 0 the target after series.transform, "
                "then the features; every channel standardised by encoders.scaler",
                "forecast": "steps T+1 … T+H of channel 0, standardised and transformed: "
                "multiply by scaler std[0], add mean[0], then undo series.transform",
            },
            feed=lambda batch: {"inputs": batch[0]},
            score=lambda out, batch: (float((out[0] - batch[1]).abs().sum()), batch[1].numel()),
            metric="mae_scaled",
        )

    def report(
        self,
        loaded: LoadedRun,
        prepared: SeriesPrepared | None = None,
        *,
        data_file: str | os.PathLike | None = None,
        **_,
    ) -> dict:
        """:func:`forecast_report` on the run's test span, or on every complete origin of
        ``data_file`` (read with the run's settings, scaler, AR coefficients and MASE scale)."""
        enc: SeriesEncoders = loaded.encoders
        if data_file is not None:
            data, span = recent_data(loaded, data_file), "all"
            what = f"every complete origin of {data_file}"
        elif prepared is not None:
            data, span = prepared.data, "test"
            what = f"test span of {prepared.record.get('source')}"
        else:
            return {}
        report = forecast_report(
            loaded.task, data, span, season=enc.season, ar=enc.ar, scale=enc.mase_scale
        )
        if data_file is None:
            report["best_step"] = best_step(loaded.run)
        return {"data": what, **report}

    def write_plots(self, loaded: LoadedRun, prepared: SeriesPrepared, report: dict) -> None:
        enc: SeriesEncoders = loaded.encoders
        plot_forecasts(
            loaded.run / PLOT_FILE,
            loaded.task,
            prepared.data,
            report["span"],
            season=enc.season,
            ar=enc.ar,
        )

    def headline(self, report: dict) -> Headline | None:
        if "model" not in report:
            return None
        base = report.get("baselines", {})
        name = min(base, key=lambda k: base[k]["mae"], default="naive")
        value = base[name]["mae"] if name in base else None
        return Headline("mae", report["model"]["mae"], False, name, value)

    def format_evaluation(self, report: dict) -> dict:
        """The report flattened to ``<forecaster>_<metric>`` lines (``rnnkit evaluate``)."""
        flat: dict = {"data": report["data"], "origins": report["origins"]}
        flat["period"] = f"{report['first_origin']} .. {report['last_origin']}"
        flat["horizon"] = report["horizon"]
        flat["transform"] = report["transform"]
        entries = {"model": report["model"], **report["baselines"]}
        at = f"_at_T+{report['horizon']}"
        for name, metrics in entries.items():
            for key in ("mae", "rmse", "mase", "return_mae", "direction_accuracy"):
                if key in metrics:
                    flat[f"{name}_{key}"] = "-" if metrics[key] is None else metrics[key]
            for key in ("mae", "return_mae", "return_rmse", "direction_accuracy"):
                if key in metrics["last_horizon"]:
                    value = metrics["last_horizon"][key]
                    flat[f"{name}_{key}{at}"] = "-" if value is None else value
        if "up_fraction" in report:
            flat["always_up_direction_accuracy"] = report["up_fraction"]
            flat[f"always_up_direction_accuracy{at}"] = report["up_fraction_last_horizon"]
        flat["ranking_by_mae"] = " < ".join(report["ranking"])
        flat["verdict"] = report["verdict"]
        return flat

    def format_report(self, report: dict) -> str:
        step = report.get("best_step")
        head = f"weights of step {step} (best validation loss)\n" if step is not None else ""
        return head + format_report(report)


SPEC = ForecastSpec()


def recent_data(loaded: LoadedRun, csv: str | os.PathLike) -> ForecastData:
    """``csv`` read with a trained run's settings and scaler, unsplit (one span ``"all"``)."""
    data = SPEC.data_config.from_dict(loaded.config.get("data", {}), strict=False)
    return load_series(data.series, csv, scaler=loaded.encoders.scaler, split=False)


def train_forecaster(
    out: str | os.PathLike,
    *,
    data: SeriesData | dict,
    model: ForecasterConfig | dict | None = None,
    train: TrainConfig | None = None,
    force: bool = False,
    callbacks: Sequence[Callback] = (),
) -> tuple[TrainResult, RunDir, dict]:
    """Train a :class:`Forecaster` into the run directory ``out`` and score it and the
    baselines on the test span (:func:`rnnkit.runs.train_run` with :data:`SPEC`; default
    training 2000 steps, evaluation every 100).

    Writes ``config.json``, ``series.json`` (scaler, AR coefficients, spans),
    ``model.safetensors`` (best validation weights), ``metrics.jsonl``, ``trainer_state/``,
    ``test_metrics.json`` (test span: model and baselines) and ``forecast.png``.

    Returns:
        ``(train result, run directory, test report)``.
    """
    done = train_run(
        SPEC, out, data=data, model=model, train=train, force=force, callbacks=callbacks
    )
    return done.result, done.run, done.report


def resume_forecaster(
    run_path: str | os.PathLike, *, limits: dict | None = None, callbacks: Sequence[Callback] = ()
) -> tuple[TrainResult, RunDir, dict]:
    """Continue a forecasting run (:func:`rnnkit.runs.resume_run`); the CSV must be unchanged.
    Returns ``(train result, run directory, test report)``."""
    done = resume_run(run_path, limits=limits, callbacks=callbacks, task="forecast")
    return done.result, done.run, done.report


def evaluate_forecast_run(
    run_path: str | os.PathLike, csv: str | os.PathLike | None = None
) -> dict:
    """:func:`forecast_report` of a run: its test span, or every complete origin of ``csv``
    (:func:`rnnkit.runs.evaluate_run`)."""
    return evaluate_run(load_run(run_path, task="forecast"), data_file=csv)


def forecast_table(
    loaded: LoadedRun, csv: str | os.PathLike, *, every_origin: bool = False
) -> pd.DataFrame:
    """Forecasts of a trained run (:func:`rnnkit.runs.load_run`) from the last row of ``csv``
    (or every row with a full window), as a table.

    Columns: ``origin`` (date, or 0-based row without a date column), ``h``, ``forecast`` in
    original units, and with ``every_origin`` also ``actual`` (blank where not in the file).
    """
    data = recent_data(loaded, csv)
    origins = data.forecast_origins() if every_origin else np.array([data.last_origin()])
    with np.errstate(over="ignore", invalid="ignore"):
        forecast = loaded.task.forecast(data, origins)  # [M, H]
    bad = ~np.isfinite(forecast)
    if bad.any():
        # Inverting the transform (exp of summed log returns, a cumulative sum) can overflow;
        # report it instead of writing inf/nan as if it were a forecast.
        m, h = (int(i) for i in np.argwhere(bad)[0])
        raise InvalidInputError(
            f"{bad.sum()} forecast(s) overflow when turned back into {data.config.target!r} "
            f"(first: origin line {data.lines[origins[m]]}, h={h + 1}: {forecast[m, h]}); the "
            "model diverges on this data — check the recent rows or retrain"
        )
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


def plot_recent(loaded: LoadedRun, csv: str | os.PathLike, path: str | os.PathLike) -> None:
    """PNG of a trained run's forecasts against the actuals of ``csv`` (every complete origin).

    Raises:
        InvalidInputError: no row of ``csv`` has a full window and known ``T+1 … T+H``.
    """
    data = recent_data(loaded, csv)
    if len(data.origins("all")) == 0:
        raise InvalidInputError(f"{csv} has no row with a full window and known T+1..T+H to plot")
    enc: SeriesEncoders = loaded.encoders
    plot_forecasts(path, loaded.task, data, "all", season=enc.season, ar=enc.ar)


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
    "SPEC",
    "ForecastSpec",
    "Forecaster",
    "ForecasterConfig",
    "SeriesData",
    "SeriesEncoders",
    "SeriesPrepared",
    "WindowBatches",
    "best_step",
    "check_season",
    "evaluate_forecast_run",
    "forecast_report",
    "forecast_table",
    "format_report",
    "plot_forecasts",
    "plot_recent",
    "recent_data",
    "resume_forecaster",
    "span_batches",
    "train_forecaster",
    "verdict",
]
