"""Forecasting baselines and metrics: what a forecasting model must beat, scored the same way.

Every baseline forecasts ``T+1 … T+H`` from origin ``T`` with only what was known at ``T`` (the
same causal view of the series the model gets, see :mod:`rnnkit.data.series`), in original units:

* **naive** (random walk): ``ŷ_{T+h} = y_T``.
* **seasonal naive** with season ``S``: ``ŷ_{T+h} = y_{T+h-S·k}``, ``k = ⌈h/S⌉`` — the value one
  season before (the last season's value for the same phase).
* **linear autoregressive** (``AR(p)``, direct): the model's target channel ``z`` (levels,
  differences or log returns, standardised) regressed by least squares on its last ``p`` values
  and a constant, one output per horizon, fitted on the training origins only::

      ẑ_{T+h} = b_h + Σ_{i=1..p} a_{h,i} z_{T-p+i}        (h = 1 … H)

  then turned back into levels exactly as the model's outputs are.

Metrics (:func:`forecast_metrics`) over all origins and horizons of a span, against *observed*
actuals only: ``MAE``, ``RMSE``, ``MASE = MAE / s`` with ``s`` the mean absolute one-step change
of the target over the training span (Hyndman & Koehler 2006; below 1 means better than the
in-sample one-step naive forecast), per-horizon MAE, and for returns the direction accuracy,
the share of forecasts whose sign of ``ŷ_{T+h} - y_T`` matches that of ``y_{T+h} - y_T``, and
the errors of the predicted return itself. The same figures for ``T+H`` alone are given too.

Example::

    >>> import numpy as np
    >>> from rnnkit.data.series import ForecastData, SeriesConfig
    >>> data = ForecastData(np.arange(1.0, 61.0), config=SeriesConfig("y", window=4, horizon=2))
    >>> origins = data.origins("test")
    >>> naive_forecast(data, origins)[0], data.actuals(origins)[0]
    (array([51., 51.]), array([52., 53.]))
"""

from __future__ import annotations

import math

import numpy as np

from rnnkit.data.series import ForecastData

BASELINES = ("naive", "seasonal_naive", "ar")


def naive_forecast(data: ForecastData, origins: np.ndarray) -> np.ndarray:
    """``ŷ_{T+h} = y_T`` for every horizon: ``[M, H]``."""
    anchors = data.anchors(origins)
    return np.repeat(anchors[:, None], data.config.horizon, axis=1)


def seasonal_naive_forecast(data: ForecastData, origins: np.ndarray, season: int) -> np.ndarray:
    """``ŷ_{T+h} = y_{T+h-S⌈h/S⌉}`` (as known at ``T``): ``[M, H]``.

    Raises:
        ValueError: ``season`` is not a positive integer, or an origin has less than one
            season of history.
    """
    if isinstance(season, bool) or not isinstance(season, int) or season < 1:
        raise ValueError(f"season must be a positive integer; got {season!r}")
    origins = np.asarray(origins)
    h = np.arange(1, data.config.horizon + 1)
    back = h - season * np.ceil(h / season).astype(int)  # in (-season, 0]
    rows = origins[:, None] + back[None, :]
    if len(origins) and rows.min() < 0:
        raise ValueError(
            f"season {season} reaches before the first row for origin {int(origins.min())}; "
            "use a shorter season or a later span"
        )
    return data.levels_at(rows, origins)


class LinearAR:
    """Direct multi-horizon linear autoregression fitted by least squares (see module docstring).

    Args:
        order: ``p``, number of lags (at most the window; default the window).

    Attributes after :meth:`fit`: ``coef`` ``[1 + p, H]`` (constant first, then lags oldest to
    newest), all in the scaled target space of ``data``.
    """

    def __init__(self, order: int | None = None) -> None:
        if order is not None and (
            isinstance(order, bool) or not isinstance(order, int) or order < 1
        ):
            raise ValueError(f"order must be a positive integer; got {order!r}")
        self.order = order
        self.coef: np.ndarray | None = None

    def _design(self, data: ForecastData, origins: np.ndarray) -> np.ndarray:
        lags = data.inputs(origins)[:, -self.order :, 0]  # [M, p] scaled target channel
        return np.column_stack([np.ones(len(lags)), lags])

    def fit(self, data: ForecastData, span: str = "train") -> LinearAR:
        """Least squares on the origins of ``span`` (the training span: no later rows are used)."""
        window = data.config.window
        if self.order is None:
            self.order = window
        if self.order > window:
            raise ValueError(f"order {self.order} exceeds the window {window}")
        origins = data.origins(span)
        X = self._design(data, origins)
        Y = data.targets(span, origins)
        self.coef, *_ = np.linalg.lstsq(X, Y, rcond=None)
        return self

    def predict_scaled(self, data: ForecastData, origins: np.ndarray) -> np.ndarray:
        if self.coef is None:
            raise RuntimeError("LinearAR.fit must run before predict")
        return self._design(data, np.asarray(origins)) @ self.coef

    def predict(self, data: ForecastData, origins: np.ndarray) -> np.ndarray:
        """Forecasts in original units ``[M, H]``."""
        return data.to_levels(self.predict_scaled(data, origins), origins)

    def to_dict(self) -> dict:
        return {"order": self.order, "coef": None if self.coef is None else self.coef.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> LinearAR:
        ar = cls(d["order"])
        # A saved baseline is a fitted one: coef [1 + order, H], finite (a crafted or damaged
        # series.json is refused here rather than failing when the baselines are scored).
        coef = np.asarray(d["coef"], dtype=np.float64)
        if coef.ndim != 2 or coef.shape[0] != 1 + (ar.order or 0) or not np.isfinite(coef).all():
            raise ValueError(
                f"AR coef must be finite numbers of shape [1 + order, H]; got {coef.shape}"
            )
        ar.coef = coef
        return ar


def baseline_forecasts(
    data: ForecastData,
    origins: np.ndarray,
    *,
    season: int | None = None,
    ar: LinearAR | None = None,
) -> dict[str, np.ndarray]:
    """Every baseline's forecasts ``[M, H]`` by name: naive, seasonal_naive (if ``season``), ar.

    ``ar`` defaults to a :class:`LinearAR` of order ``window`` fitted on the training span.
    """
    out = {"naive": naive_forecast(data, origins)}
    if season is not None:
        out["seasonal_naive"] = seasonal_naive_forecast(data, origins, season)
    ar = ar if ar is not None else LinearAR().fit(data)
    out["ar"] = ar.predict(data, origins)
    return out


def forecast_metrics(
    forecast: np.ndarray,
    actual: np.ndarray,
    anchors: np.ndarray,
    scale: float,
    *,
    transform: str = "levels",
) -> dict:
    """Errors of ``forecast[M, H]`` against ``actual[M, H]`` (NaN actuals are skipped).

    Args:
        anchors: ``y_T`` per origin ``[M]``, for changes and their direction.
        scale: MASE denominator (mean absolute one-step change over the training span).
        transform: the target transform; for ``diff`` and ``logret`` (returns) the metrics add
            the direction accuracy of ``ŷ_{T+h} - y_T``; for ``logret`` also the errors of the
            predicted log return ``log(ŷ_{T+h} / y_T)``.

    Returns:
        ``{"mae", "rmse", "mase", "count", "mae_by_horizon": [H]}``; for returns also
        ``"direction_accuracy"`` (None when the forecast never moves, as the naive one's),
        for log returns ``"return_mae"``, ``"return_rmse"``; and ``"last_horizon"``: the same
        figures for ``T+H`` alone.
    """
    forecast = np.asarray(forecast, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    anchors = np.asarray(anchors, dtype=np.float64)
    if forecast.shape != actual.shape:
        raise ValueError(f"forecast {forecast.shape} and actual {actual.shape} differ in shape")
    if not np.isfinite(actual).any():
        raise ValueError("no observed actuals to score against")
    out = _scores(forecast, actual, anchors, scale, transform)
    seen = np.isfinite(actual)
    per_h = np.abs(np.where(seen, forecast - actual, 0.0)).sum(0) / np.maximum(seen.sum(0), 1)
    out["mae_by_horizon"] = [float(v) for v in per_h]
    out["last_horizon"] = _scores(forecast[:, -1:], actual[:, -1:], anchors, scale, transform)
    return out


def _scores(forecast, actual, anchors, scale, transform) -> dict:
    seen = np.isfinite(actual)
    n = int(seen.sum())
    err = np.where(seen, forecast - actual, 0.0)
    mae = float(np.abs(err).sum() / n) if n else float("nan")
    out = {
        "mae": mae,
        "rmse": float(math.sqrt((err**2).sum() / n)) if n else float("nan"),
        "mase": mae / scale if scale and math.isfinite(scale) else float("nan"),
        "count": n,
    }
    if transform in ("diff", "logret") and n:
        predicted = _change(forecast, anchors, transform)
        observed = _change(actual, anchors, transform)
        if transform == "logret":  # for diff the change errors equal the level errors
            r_err = np.where(seen, predicted - observed, 0.0)
            out["return_mae"] = float(np.abs(r_err).sum() / n)
            out["return_rmse"] = float(math.sqrt((r_err**2).sum() / n))
        moved, actual_move = np.sign(predicted), np.sign(observed)
        usable = seen & (actual_move != 0)
        if not np.any(moved[usable] != 0):
            out["direction_accuracy"] = None
        else:
            out["direction_accuracy"] = float((moved[usable] == actual_move[usable]).mean())
    return out


def _change(levels: np.ndarray, anchors: np.ndarray, transform: str) -> np.ndarray:
    """Change from ``y_T``: ``y - y_T`` (diff) or ``log(y / y_T)`` (logret); NaN stays NaN."""
    if transform == "diff":
        return levels - anchors[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(levels / anchors[:, None])


def up_fraction(actual: np.ndarray, anchors: np.ndarray) -> float:
    """Share of observed ``y_{T+h} > y_T`` among moves: the accuracy of always saying "up"."""
    move = np.sign(np.asarray(actual) - np.asarray(anchors)[:, None])
    usable = np.isfinite(move) & (move != 0)
    return float((move[usable] > 0).mean()) if usable.any() else float("nan")


__all__ = [
    "BASELINES",
    "LinearAR",
    "baseline_forecasts",
    "forecast_metrics",
    "naive_forecast",
    "seasonal_naive_forecast",
    "up_fraction",
]
