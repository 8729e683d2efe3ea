"""Time series from CSV for forecasting: loading, gaps, chronological splits, scaling, windows,
batches.

A forecasting example is an *origin* ``T``: the model sees the window of rows ``T-W+1 … T`` and
predicts the target at ``T+1 … T+H`` (direct multi-horizon output). Everything here is arranged
so that nothing about the future can reach an input or a statistic:

* **Chronological split.** Rows are cut into train / validation / test spans in time order
  (defaults 70 / 15 / 15 %). An origin belongs to the span that holds its first target ``T+1``
  and all of ``T+1 … T+H`` lie inside that span; its window may reach back into earlier spans
  (that is the past, which a forecaster legitimately sees).
* **Scaling fitted on the training span only.** Every input channel ``c`` is standardised,
  ``x' = (x - mean_c) / std_c``, with ``mean_c`` and ``std_c`` computed over training rows only.
* **Gaps filled causally.** A missing value at row ``t`` seen from origin ``T`` is filled with
  what was known at ``T``: with ``fill="interpolate"`` linearly between its neighbours when the
  next observation is at or before ``T``, otherwise carried forward from the last observation;
  with ``fill="forward"`` always carried forward; ``fill="none"`` refuses and names the rows.
  Training targets are filled as known at the end of the training span, so a gap at the end of
  the training span is never interpolated towards a validation or test value. Metrics are only
  ever computed against *observed* values (missing actuals are skipped, never invented).
* **Transforms.** The target ``y`` enters the model as ``z``:

  ======== =============================== =====================================================
  levels   ``z_t = y_t``                   ``ŷ_{T+h} = ẑ_{T+h}``
  diff     ``z_t = y_t - y_{t-1}``         ``ŷ_{T+h} = y_T + Σ_{k≤h} ẑ_{T+k}``
  logret   ``z_t = log(y_t / y_{t-1})``    ``ŷ_{T+h} = y_T · exp(Σ_{k≤h} ẑ_{T+k})``
  ======== =============================== =====================================================

  so predictions always come back in the target's original units. Extra ``features`` enter as
  they are (standardised), beside the transformed target in channel 0.

Shapes: ``N`` rows, ``F`` extra features, ``C = 1 + F`` input channels, ``W`` window, ``H``
horizon, ``M`` origins.

Example::

    >>> import numpy as np
    >>> from rnnkit.data.series import ForecastData, SeriesConfig
    >>> y = np.arange(100.0)
    >>> data = ForecastData(y, config=SeriesConfig(target="y", window=8, horizon=2))
    >>> origins = data.origins("test")
    >>> data.inputs(origins).shape, data.targets("test", origins).shape
    ((14, 8, 1), (14, 2))
"""

from __future__ import annotations

import csv
import logging
import lzma
import os
import zlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from rnnkit.data.batching import IndexBatches
from rnnkit.data.packages import package_file
from rnnkit.data.textclass import channel_vectors
from rnnkit.errors import InvalidInputError

log = logging.getLogger(__name__)

TRANSFORMS = ("levels", "diff", "logret")
FILLS = ("interpolate", "forward", "none")
SPANS = ("train", "val", "test")
_MISSING_TOKENS = {"", "na", "nan", "n/a", "null", "none"}
_MAX_NAMED = 8  # rows named in an error before "… and N more"


@dataclass(frozen=True)
class SeriesConfig:
    """How a CSV becomes forecasting examples (saved with a run, so ``forecast`` can rebuild it).

    Args:
        target: column to forecast.
        features: extra input columns (standardised, not transformed).
        date_column: column of dates; rows must be strictly increasing in it.
        date_format: ``strptime`` format of the dates (default: inferred from the first one).
        window: ``W``, rows the model sees per forecast.
        horizon: ``H``, the model predicts ``T+1 … T+H``.
        transform: ``levels``, ``diff`` or ``logret`` (see module docstring).
        fill: ``interpolate``, ``forward`` or ``none`` for missing values.
        val_fraction, test_fraction: shares of rows for the validation and test spans.
    """

    target: str
    window: int
    horizon: int
    features: tuple[str, ...] = ()
    date_column: str | None = None
    date_format: str | None = None
    transform: str = "levels"
    fill: str = "interpolate"
    val_fraction: float = 0.15
    test_fraction: float = 0.15

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features))
        for name in ("window", "horizon"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if self.transform not in TRANSFORMS:
            raise ValueError(
                f"transform must be one of {', '.join(TRANSFORMS)}; got {self.transform!r}"
            )
        if self.fill not in FILLS:
            raise ValueError(f"fill must be one of {', '.join(FILLS)}; got {self.fill!r}")
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1); got {value!r}")
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError(
                "val_fraction + test_fraction must leave at least 10% for training; "
                f"got {self.val_fraction} + {self.test_fraction}"
            )
        if self.target in self.features:
            raise ValueError(f"target {self.target!r} is also listed in features; list it once")

    @property
    def lag(self) -> int:
        """Extra level rows a window needs before its first input: 1 for diff/logret, else 0."""
        return 0 if self.transform == "levels" else 1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["features"] = list(self.features)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SeriesConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise InvalidInputError(f"unknown series config keys {sorted(unknown)}")
        return cls(**d)


# -- reading a CSV ---------------------------------------------------------------------------
@dataclass
class SeriesTable:
    """Columns read from a CSV: the target, the features, dates and file line numbers.

    ``values`` is float64 ``[N, C]`` with the target in column 0 and NaN where a cell was blank;
    ``lines[i]`` is the file line of row ``i`` (header = line 1), used to name rows in errors.
    """

    values: np.ndarray
    columns: list[str]
    lines: np.ndarray
    dates: pd.DatetimeIndex | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.values)

    def date_strings(self) -> list[str] | None:
        if self.dates is None:
            return None
        return [d.strftime("%Y-%m-%d") if pd.notna(d) else "" for d in self.dates]


def read_series_csv(
    path: str | os.PathLike,
    target: str,
    features: tuple[str, ...] | list[str] = (),
    date_column: str | None = None,
    date_format: str | None = None,
) -> SeriesTable:
    """Read a target (and feature) columns from a CSV file, checking every value.

    Blank cells (and ``NA``, ``NaN``, ``null``) are missing values, kept as NaN; a blank line is a
    row whose values are all missing (a gap in a one-column file). Compressed files
    (``.gz``, ``.bz2``, ``.zip``, ``.xz``) are read directly.

    Raises:
        InvalidInputError: the file is missing or unreadable, a column is missing, a value is not
            a number (naming its line), a date is unreadable, dates are unsorted or duplicated.
    """
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"CSV file {path} does not exist")
    if path.is_dir():
        raise InvalidInputError(f"{path} is a directory; pass a CSV file")
    try:
        frame = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            quoting=csv.QUOTE_MINIMAL,
        )
    except pd.errors.EmptyDataError:
        raise InvalidInputError(f"{path} is empty; it needs a header line and rows") from None
    except (
        pd.errors.ParserError,
        UnicodeDecodeError,
        OSError,
        EOFError,
        ValueError,
        zlib.error,  # a corrupt .gz fails inside the decompressor
        lzma.LZMAError,
    ) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInputError(f"{path} is not a readable CSV file ({first})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    wanted = [target, *features] + ([date_column] if date_column else [])
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise InvalidInputError(
            f"{path} has no column {missing[0]!r}; its columns are {', '.join(frame.columns)}"
        )
    if len(frame) == 0:
        raise InvalidInputError(f"{path} has a header but no rows")
    # Blank lines are kept as rows (all values missing), so row i is file line i + 2.
    lines = np.arange(len(frame)) + 2

    columns = [target, *features]
    values = np.empty((len(frame), len(columns)), dtype=np.float64)
    for j, name in enumerate(columns):
        raw = frame[name].str.strip()
        is_missing = raw.str.lower().isin(_MISSING_TOKENS).to_numpy()
        parsed = pd.to_numeric(raw.where(~is_missing, None), errors="coerce").to_numpy(dtype=float)
        bad = ~is_missing & ~np.isfinite(parsed)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InvalidInputError(
                f"{path} line {lines[i]}: column {name!r} has {raw.iloc[i]!r}, not a number; "
                "fix the value or leave the cell blank to mark it missing"
            )
        values[:, j] = parsed

    dates = None
    if date_column:
        dates = _parse_dates(frame[date_column].str.strip(), lines, path, date_column, date_format)
    return SeriesTable(values=values, columns=columns, lines=lines, dates=dates, source=str(path))


def _parse_dates(raw: pd.Series, lines, path, column, date_format) -> pd.DatetimeIndex:
    blank = (raw == "").to_numpy()
    if blank.any():
        line = lines[np.flatnonzero(blank)[0]]
        raise InvalidInputError(f"{path} line {line}: column {column!r} has no date")
    try:
        parsed = pd.to_datetime(raw, format=date_format, errors="coerce")
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"{path}: column {column!r} has unreadable dates ({exc})") from None
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        hint = f"format {date_format!r}" if date_format else f"the format of {raw.iloc[0]!r}"
        raise InvalidInputError(
            f"{path} line {lines[i]}: date {raw.iloc[i]!r} does not match {hint}; "
            "fix it or pass --date-format"
        )
    dates = pd.DatetimeIndex(parsed)
    step = np.diff(dates.asi8)
    if (step == 0).any():
        i = int(np.flatnonzero(step == 0)[0])
        raise InvalidInputError(
            f"{path} line {lines[i + 1]}: date {raw.iloc[i + 1]} duplicates line {lines[i]}; "
            "keep one row per date"
        )
    if (step < 0).any():
        i = int(np.flatnonzero(step < 0)[0])
        raise InvalidInputError(
            f"{path} line {lines[i + 1]}: date {raw.iloc[i + 1]} comes before line {lines[i]} "
            f"({raw.iloc[i]}); sort the rows by date"
        )
    return dates


def check_missing(table: SeriesTable, fill: str) -> None:
    """Refuse missing values that ``fill`` cannot handle, naming the rows.

    ``none`` refuses every gap; ``interpolate`` and ``forward`` refuse gaps before a column's
    first observation (there is nothing to fill them from).
    """
    for j, name in enumerate(table.columns):
        gaps = np.flatnonzero(np.isnan(table.values[:, j]))
        if len(gaps) == 0:
            continue
        if fill == "none":
            raise InvalidInputError(
                f"{table.source}: column {name!r} has {len(gaps)} missing value(s) at "
                f"{_name_lines(table.lines[gaps])}; pass --fill interpolate or --fill forward, "
                "or remove those rows"
            )
        observed = np.flatnonzero(~np.isnan(table.values[:, j]))
        if len(observed) == 0:
            raise InvalidInputError(f"{table.source}: column {name!r} has no values at all")
        leading = gaps[gaps < observed[0]]
        if len(leading):
            raise InvalidInputError(
                f"{table.source}: column {name!r} is missing at {_name_lines(table.lines[leading])}"
                " before its first value, where nothing can fill it; remove those rows"
            )


def _name_lines(lines: np.ndarray) -> str:
    shown = ", ".join(str(int(x)) for x in lines[:_MAX_NAMED])
    more = f" and {len(lines) - _MAX_NAMED} more" if len(lines) > _MAX_NAMED else ""
    return f"line{'s' if len(lines) > 1 else ''} {shown}{more}"


# -- datasets that ship inside packages --------------------------------------------------------
@dataclass(frozen=True)
class PackagedSeries:
    """A series shipped inside an installed package, with the settings it is usually run with."""

    package: str
    pin: str
    relative: str
    target: str
    date_column: str
    date_format: str
    description: str
    defaults: dict = field(default_factory=dict)

    def path(self) -> Path:
        return package_file(self.package, self.relative, pin=self.pin)


PACKAGED = {
    "co2": PackagedSeries(
        package="statsmodels",
        pin="statsmodels==0.15.0",
        relative="datasets/co2/co2.csv",
        target="co2",
        date_column="date",
        date_format="%Y%m%d",
        description="weekly Mauna Loa CO2 (ppm), 1958-2001, 2,284 rows, 59 missing",
        defaults={"transform": "diff", "window": 104, "horizon": 4, "season": 52},
    ),
    "sp500": PackagedSeries(
        package="arch",
        pin="arch==8.0.0",
        relative="data/sp500/sp500.csv.gz",
        target="Adj Close",
        date_column="Date",
        date_format="%m/%d/%Y",
        description="S&P 500 daily adjusted close, 1999-2018, 5,031 days",
        defaults={"transform": "logret", "window": 60, "horizon": 5, "season": 5},
    ),
    "nasdaq": PackagedSeries(
        package="arch",
        pin="arch==8.0.0",
        relative="data/nasdaq/nasdaq.csv.gz",
        target="Adj Close",
        date_column="Date",
        date_format="%m/%d/%Y",
        description="NASDAQ composite daily adjusted close, 1999-2018, 5,031 days",
        defaults={"transform": "logret", "window": 60, "horizon": 5, "season": 5},
    ),
}


# -- scaling ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scaler:
    """Per-channel standardisation ``x' = (x - mean) / std``; a constant channel keeps std 1."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray) -> Scaler:
        """Fit on ``values[R, C]`` (rows of the training span only)."""
        mean = values.mean(axis=0)
        std = values.std(axis=0)
        std = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
        return cls(mean=mean, std=std)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> Scaler:
        mean, std = channel_vectors(d, "scaler", "mean", "std")
        return cls(mean=mean, std=std)


# -- transforms ------------------------------------------------------------------------------
def transform_levels(levels: np.ndarray, transform: str) -> np.ndarray:
    """Levels ``[..., L + lag]`` -> transformed ``[..., L]`` along the last axis."""
    if transform == "levels":
        return levels
    if transform == "diff":
        return levels[..., 1:] - levels[..., :-1]
    return np.log(levels[..., 1:] / levels[..., :-1])


def invert_transform(z: np.ndarray, anchors: np.ndarray, transform: str) -> np.ndarray:
    """Transformed forecasts ``z[M, H]`` and ``anchors[M]`` (``y_T``) -> levels ``[M, H]``."""
    if transform == "levels":
        return z
    if transform == "diff":
        return anchors[:, None] + np.cumsum(z, axis=1)
    return anchors[:, None] * np.exp(np.cumsum(z, axis=1))


# -- causal gap filling ----------------------------------------------------------------------
class _CausalFill:
    """Values of ``x[N, K]`` as known at an origin ``T`` (see module docstring, "Gaps")."""

    def __init__(self, x: np.ndarray, method: str) -> None:
        n, k = x.shape
        self.interp = x.copy()
        self.ffill = x.copy()
        self.next_obs = np.broadcast_to(np.arange(n)[:, None], (n, k)).copy()
        for j in range(k):
            observed = ~np.isnan(x[:, j])
            if observed.all():
                continue
            idx = np.flatnonzero(observed)
            self.ffill[:, j] = pd.Series(x[:, j]).ffill().to_numpy()
            self.interp[:, j] = (
                np.interp(np.arange(n), idx, x[idx, j])
                if method == "interpolate"
                else self.ffill[:, j]
            )
            # index of the next observation at or after each row (n if none)
            nxt = np.full(n, n)
            pos = np.searchsorted(idx, np.arange(n))
            has = pos < len(idx)
            nxt[has] = idx[pos[has]]
            self.next_obs[:, j] = nxt

    def at(self, rows: np.ndarray, origin: np.ndarray) -> np.ndarray:
        """Values at ``rows[M, L]`` as known at ``origin[M]``: ``[M, L, K]``."""
        known = self.next_obs[rows] <= np.asarray(origin)[:, None, None]
        return np.where(known, self.interp[rows], self.ffill[rows])


# -- the dataset -----------------------------------------------------------------------------
class ForecastData:
    """A target series (plus features), split in time, scaled on the training span, windowed.

    Args:
        levels: ``[N]`` target in original units (NaN = missing).
        features: ``[N, F]`` extra inputs or ``None``.
        config: :class:`SeriesConfig`.
        dates: optional dates of the rows (for plots and output files).
        lines: optional file line of each row (for error messages).
        scaler: a fitted :class:`Scaler` to reuse (``rnnkit forecast``); default fits on train.
        source: name of the data in error messages.
        split: cut into train/val/test spans (default); ``False`` keeps one span ``"all"``
            and needs ``scaler`` (recent data given to a trained run).

    Raises:
        InvalidInputError: too few rows for ``window + horizon`` or for one example per span,
            a missing value ``fill`` cannot handle, a non-positive value under ``logret``.
    """

    def __init__(
        self,
        levels: np.ndarray,
        features: np.ndarray | None = None,
        *,
        config: SeriesConfig,
        dates: pd.DatetimeIndex | None = None,
        lines: np.ndarray | None = None,
        scaler: Scaler | None = None,
        source: str = "series",
        split: bool = True,
    ) -> None:
        levels = np.asarray(levels, dtype=np.float64).reshape(-1)
        n = len(levels)
        features = np.zeros((n, 0)) if features is None else np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or len(features) != n:
            raise ValueError(f"features must have shape [N={n}, F]; got {features.shape}")
        if features.shape[1] != len(config.features):
            raise ValueError(
                f"features has {features.shape[1]} columns but config.features names "
                f"{len(config.features)}"
            )
        self.config = config
        self.levels = levels
        self.features = features
        self.dates = dates
        self.lines = np.arange(n) + 2 if lines is None else np.asarray(lines)
        self.source = source
        table = SeriesTable(
            values=np.column_stack([levels, features]),
            columns=[config.target, *config.features],
            lines=self.lines,
            source=source,
        )
        check_missing(table, config.fill)
        W, H, lag = config.window, config.horizon, config.lag
        if config.transform == "logret":
            bad = np.flatnonzero(~(levels > 0) & ~np.isnan(levels))
            if len(bad):
                raise InvalidInputError(
                    f"{source} line {self.lines[bad[0]]}: {config.target} is {levels[bad[0]]:g}; "
                    "--transform logret needs positive values (use diff or levels)"
                )
        # Forecasting from a fitted run needs one window; training and scoring need targets too.
        need = W + H + lag if split else W + lag
        if n < need:
            extra = " + 1 (the first difference)" if lag else ""
            what = f"--window {W} + --horizon {H}{extra}" if split else f"--window {W}{extra}"
            raise InvalidInputError(
                f"{source} has {n} rows, shorter than {what} = {need}; "
                + (
                    "use a shorter window or horizon, or a longer series"
                    if split
                    else "give at least that many recent rows"
                )
            )
        self._fill = _CausalFill(table.values, config.fill)
        self.spans = self._split(n) if split else {"all": (0, n)}
        if scaler is None:
            if not split:
                raise ValueError("a ForecastData without a split needs a fitted scaler")
            scaler = self._fit_scaler()
        self.scaler = scaler

    # -- spans --------------------------------------------------------------------------------
    def _split(self, n: int) -> dict[str, tuple[int, int]]:
        c = self.config
        n_test = int(round(n * c.test_fraction))
        n_val = int(round(n * c.val_fraction))
        n_train = n - n_val - n_test
        spans = {
            "train": (0, n_train),
            "val": (n_train, n_train + n_val),
            "test": (n_train + n_val, n),
        }
        for name in SPANS:
            if name == "val" and c.val_fraction == 0:
                continue
            if name == "test" and c.test_fraction == 0:
                continue
            s, e = spans[name]
            if len(self._origins(s, e)) == 0:
                raise InvalidInputError(
                    f"{self.source} has {n} rows: the {name} span (rows {s}-{e - 1}, "
                    f"{e - s} rows) holds no complete example of --window {c.window} + "
                    f"--horizon {c.horizon}; use a longer series, a shorter window or horizon, "
                    "or other split fractions"
                )
            if name != "train":
                # Scores compare forecasts with observed targets only; a span whose targets
                # are all gaps would fail after training, so refuse it before.
                origins = self._origins(s, e)
                rows = np.arange(origins[0] + 1, origins[-1] + c.horizon + 1)
                if np.isnan(self.levels[rows]).all():
                    raise InvalidInputError(
                        f"{self.source}: the {name} span (lines {self.lines[rows[0]]}-"
                        f"{self.lines[rows[-1]]}) has no observed {c.target!r} value to score "
                        "against; fill those rows, remove them, or change "
                        "--val-fraction/--test-fraction"
                    )
        return spans

    def _origins(self, start: int, end: int) -> np.ndarray:
        c = self.config
        lo = max(start - 1, c.window - 1 + c.lag)
        hi = end - 1 - c.horizon
        return np.arange(lo, hi + 1) if hi >= lo else np.arange(0)

    def origins(self, span: str) -> np.ndarray:
        """Origins ``T`` whose targets ``T+1 … T+H`` all lie in ``span`` (``[M]`` ints)."""
        if span not in self.spans:
            raise ValueError(f"span must be one of {', '.join(self.spans)}; got {span!r}")
        return self._origins(*self.spans[span])

    def forecast_origins(self) -> np.ndarray:
        """Every row with a full window behind it, up to the last row (targets may be unknown)."""
        c = self.config
        return np.arange(c.window - 1 + c.lag, len(self.levels))

    def last_origin(self) -> int:
        """The last row: the origin of a forecast into the unknown future."""
        return len(self.levels) - 1

    @property
    def n_channels(self) -> int:
        return 1 + self.features.shape[1]

    # -- scaling ------------------------------------------------------------------------------
    def _fit_scaler(self) -> Scaler:
        """Mean and std of each input channel over the training span, as known at its end."""
        lag = self.config.lag
        _, end = self.spans["train"]
        rows = np.arange(end)[None, :]
        known = self._fill.at(rows, np.array([end - 1]))[0]  # [end, C]
        z = transform_levels(known[:, 0], self.config.transform)  # [end - lag]
        channels = np.column_stack([z, known[lag:, 1:]])
        return Scaler.fit(channels)

    # -- windows ------------------------------------------------------------------------------
    def anchors(self, origins: np.ndarray) -> np.ndarray:
        """``y_T`` as known at each origin (a missing ``y_T`` is carried forward): ``[M]``."""
        origins = np.asarray(origins)
        return self._fill.at(origins[:, None], origins)[:, 0, 0]

    def raw_inputs(self, origins: np.ndarray) -> np.ndarray:
        """Unscaled inputs ``[M, W, C]``: channel 0 the transformed target, then the features."""
        c = self.config
        origins = np.asarray(origins)
        rows = origins[:, None] + np.arange(-c.window + 1 - c.lag, 1)[None, :]  # [M, W + lag]
        known = self._fill.at(rows, origins)  # [M, W + lag, C]
        z = transform_levels(known[..., 0], c.transform)  # [M, W]
        return np.concatenate([z[..., None], known[:, c.lag :, 1:]], axis=-1)

    def inputs(self, origins: np.ndarray) -> np.ndarray:
        """Scaled model inputs ``[M, W, C]`` for ``origins``, each built from rows ``<= T``."""
        return self.scaler.transform(self.raw_inputs(origins))

    def target_levels(self, span: str, origins: np.ndarray) -> np.ndarray:
        """Levels at ``T+1 … T+H`` with gaps filled as known at the end of ``span``: ``[M, H]``."""
        _, end = self.spans[span]
        origins = np.asarray(origins)
        rows = origins[:, None] + np.arange(1, self.config.horizon + 1)[None, :]
        return self._fill.at(rows, np.full(len(origins), end - 1))[..., 0]

    def targets(self, span: str, origins: np.ndarray) -> np.ndarray:
        """Scaled transformed targets ``[M, H]`` for training on ``span`` (channel-0 scaling)."""
        origins = np.asarray(origins)
        path = np.column_stack([self.anchors(origins), self.target_levels(span, origins)])
        z = transform_levels(path, self.config.transform)
        if self.config.transform == "levels":
            z = z[:, 1:]
        return (z - self.scaler.mean[0]) / self.scaler.std[0]

    def actuals(self, origins: np.ndarray) -> np.ndarray:
        """Observed levels at ``T+1 … T+H`` (NaN where missing or past the end): ``[M, H]``."""
        origins = np.asarray(origins)
        rows = origins[:, None] + np.arange(1, self.config.horizon + 1)[None, :]
        padded = np.concatenate([self.levels, np.full(self.config.horizon, np.nan)])
        return padded[rows]

    def to_levels(self, scaled: np.ndarray, origins: np.ndarray) -> np.ndarray:
        """Model outputs (scaled transformed ``[M, H]``) -> forecasts in original units."""
        z = np.asarray(scaled, dtype=np.float64) * self.scaler.std[0] + self.scaler.mean[0]
        return invert_transform(z, self.anchors(origins), self.config.transform)

    def levels_at(self, rows: np.ndarray, origins: np.ndarray) -> np.ndarray:
        """Target levels at ``rows[M, L]`` as known at ``origins[M]`` (for baselines)."""
        return self._fill.at(np.asarray(rows), np.asarray(origins))[..., 0]

    def training_scale(self) -> float:
        """Mean absolute one-step change of the observed target over the training span (MASE)."""
        s, e = self.spans.get("train", (0, len(self.levels)))
        y = self.levels[s:e]
        step = np.abs(np.diff(y))
        step = step[np.isfinite(step)]
        if len(step) == 0 or step.mean() == 0:
            return float("nan")
        return float(step.mean())

    def date_of(self, rows: np.ndarray) -> list[str]:
        """Dates (``YYYY-MM-DD``) of rows, or row numbers as strings without a date column."""
        rows = np.asarray(rows)
        if self.dates is None:
            return [str(int(r)) for r in rows]
        return [self.dates[int(r)].strftime("%Y-%m-%d") for r in rows]


class WindowBatches(IndexBatches):
    """Mini-batches of ``(inputs, targets)`` windows for :class:`rnnkit.train.Trainer`.

    Shapes: ``inputs`` (M, W, C) and ``targets`` (M, H) arrays in; batches of (B, W, C) and
    (B, H) tensors of ``dtype`` out. Shuffled per epoch with a ``torch.Generator`` seeded by
    ``(seed, epoch)``, so a resumed run sees the same order; ``shuffle=False`` keeps time order
    (validation).

    >>> batches = WindowBatches(np.zeros((5, 3, 1)), np.zeros((5, 2)), 2, shuffle=False)
    >>> len(batches), [tuple(x.shape) for x, _ in batches.epoch(0)]
    (3, [(2, 3, 1), (2, 3, 1), (1, 3, 1)])
    """

    generator = "torch"

    def __init__(
        self,
        inputs: np.ndarray,
        targets: np.ndarray,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if len(inputs) != len(targets):
            raise ValueError(f"{len(inputs)} inputs but {len(targets)} targets")
        if len(inputs) == 0:
            raise ValueError("no windows to batch")
        self.inputs = torch.as_tensor(inputs, dtype=dtype)
        self.targets = torch.as_tensor(targets, dtype=dtype)
        super().__init__(len(self.inputs), batch_size, shuffle=shuffle, seed=seed)

    def make_batch(self, indices: list[int]) -> tuple[Tensor, Tensor]:
        index = torch.as_tensor(indices, dtype=torch.int64)
        return self.inputs[index], self.targets[index]


def load_series(config: SeriesConfig, csv_path: str | os.PathLike, **kwargs) -> ForecastData:
    """Read ``csv_path`` with ``config`` and build :class:`ForecastData` (``kwargs`` passed on)."""
    table = read_series_csv(
        csv_path, config.target, config.features, config.date_column, config.date_format
    )
    return ForecastData(
        table.values[:, 0],
        table.values[:, 1:],
        config=config,
        dates=table.dates,
        lines=table.lines,
        source=str(csv_path),
        **kwargs,
    )


def resolve_dataset(name: str) -> PackagedSeries:
    """The packaged series called ``name`` (``co2``, ``sp500``, ``nasdaq``)."""
    if name not in PACKAGED:
        raise InvalidInputError(f"unknown dataset {name!r}; choose one of {', '.join(PACKAGED)}")
    return PACKAGED[name]


def with_overrides(config: SeriesConfig, **changes) -> SeriesConfig:
    """A copy of ``config`` with ``changes`` (``None`` values ignored)."""
    return replace(config, **{k: v for k, v in changes.items() if v is not None})


__all__ = [
    "FILLS",
    "PACKAGED",
    "TRANSFORMS",
    "ForecastData",
    "PackagedSeries",
    "Scaler",
    "SeriesConfig",
    "SeriesTable",
    "WindowBatches",
    "check_missing",
    "invert_transform",
    "load_series",
    "read_series_csv",
    "resolve_dataset",
    "transform_levels",
    "with_overrides",
]
