"""UEA/UCR ``.ts`` time-series classification files, and per-channel standardisation.

Format: ``#`` comment lines, ``@`` header lines (``@problemName``, ``@dimensions C``,
``@equalLength``, ``@classLabel true A B …``), then after ``@data`` one case per line::

    x1,x2,…,xT : y1,y2,…,yT : … : label        (C channel series, then the class label)

Channels of one case have one length; cases may differ in length (``@equalLength false``).
Each case becomes a float32 array of shape (T_i, C).

Standardisation is per channel over every time step of every *training* case::

    x̂[t, c] = (x[t, c] − μ_c) / σ_c,   μ_c, σ_c = mean, std of channel c over the training steps

Example::

    train = read_ts("JapaneseVowels_TRAIN.ts")
    test = read_ts("JapaneseVowels_TEST.ts", like=train)
    scaler = Standardizer.fit(train.series)
    x = scaler.transform(train.series[0])        # (T_0, 12)
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field

import numpy as np

from rnnkit.data.packages import package_dir
from rnnkit.data.textclass import channel_vectors, check_file
from rnnkit.errors import InvalidInputError

SKTIME_DATASETS = ("JapaneseVowels", "BasicMotions")


def sktime_ts_paths(name: str) -> tuple[pathlib.Path, pathlib.Path]:
    """``(train, test)`` paths of a UEA dataset shipped in the ``sktime`` package."""
    folder = package_dir("sktime", pin="sktime==1.2.0") / "datasets" / "data" / name
    train, test = folder / f"{name}_TRAIN.ts", folder / f"{name}_TEST.ts"
    if not train.is_file() or not test.is_file():
        raise InvalidInputError(f"dataset {name!r} is not in the installed sktime ({folder})")
    return train, test


@dataclass
class TsData:
    """Cases of a ``.ts`` file: ``series[i]`` is (T_i, C) float32, ``labels[i]`` its class."""

    series: list[np.ndarray]
    labels: list[str]
    dimensions: int
    class_labels: list[str] | None = None  # from @classLabel, in the file's order
    problem_name: str | None = None
    path: str = ""
    lengths: list[int] = field(default_factory=list)


def read_ts(path, like: TsData | None = None, labelled: bool = True) -> TsData:
    """Read a ``.ts`` file. ``like`` (the training data) makes a channel-count mismatch an error;
    ``labelled=False`` reads files whose lines carry no label (or ignores ``@classLabel false``)."""
    path = check_file(path)
    header: dict[str, str] = {}
    series: list[np.ndarray] = []
    labels: list[str] = []
    in_data = False
    dims = None
    try:
        # utf-8-sig: a byte-order mark (Notepad, Excel) is not part of the first header line.
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{path}: not valid UTF-8 at byte {exc.start}") from None
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    for line_number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if not line.startswith("@"):
                raise InvalidInputError(
                    f"{path}: line {line_number}: expected an @ header line or @data before data"
                )
            key, _, value = line[1:].partition(" ")
            key = key.lower()
            if key == "data":
                in_data = True
                if header.get("timestamps", "false").lower() == "true":
                    raise InvalidInputError(
                        f"{path}: @timeStamps true is not supported; give plain value lists"
                    )
                flag = header.get("classlabel", "true").split()[:1]
                if not flag or flag[0].lower() not in ("true", "false"):
                    raise InvalidInputError(
                        f"{path}: @classLabel needs 'true' followed by the class names, or "
                        f"'false'; got {('@classLabel ' + header['classlabel']).strip()!r}"
                    )
                labelled = labelled and flag[0].lower() == "true"
                if "dimensions" in header:
                    dims = _positive_int(header["dimensions"], path, "@dimensions")
                continue
            header[key] = value.strip()
            continue
        parts = line.split(":")
        label = parts.pop().strip() if labelled else ""
        if labelled and not label:
            raise InvalidInputError(f"{path}: line {line_number}: empty class label")
        if dims is None:
            dims = len(parts)
        if len(parts) != dims:
            raise InvalidInputError(
                f"{path}: line {line_number} has {len(parts)} dimensions, expected {dims} "
                f"({'@dimensions' if 'dimensions' in header else 'the first case'})"
            )
        channels = []
        for c, part in enumerate(parts):
            values = part.strip().split(",")
            if "?" in (v.strip() for v in values) or any(
                v.strip().lower() == "nan" for v in values
            ):
                raise InvalidInputError(
                    f"{path}: line {line_number}, dimension {c + 1}: missing values ('?') are "
                    "not supported; fill or drop them first"
                )
            try:
                channel = np.asarray([float(v) for v in values], dtype=np.float64)
            except ValueError:
                raise InvalidInputError(
                    f"{path}: line {line_number}, dimension {c + 1}: a value is not a number"
                ) from None
            # float() reads "-nan", "+nan", "inf"; 1e39 overflows float32: refuse them all.
            bad = ~np.isfinite(channel) | (np.abs(channel) > np.finfo(np.float32).max)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise InvalidInputError(
                    f"{path}: line {line_number}, dimension {c + 1}, value {i + 1} is "
                    f"{values[i].strip()!r}, not a finite float32 number; fix or drop the case"
                )
            channels.append(channel.astype(np.float32))
        lengths = {len(ch) for ch in channels}
        if len(lengths) != 1:
            raise InvalidInputError(
                f"{path}: line {line_number}: dimensions have different lengths "
                f"{sorted(lengths)}; every dimension of a case must have the same length"
            )
        series.append(np.stack(channels, axis=1))
        labels.append(label)
    if not in_data:
        raise InvalidInputError(f"{path}: no @data line; is this a .ts file?")
    if not series:
        raise InvalidInputError(f"{path}: no cases after @data")
    if like is not None and dims != like.dimensions:
        raise InvalidInputError(
            f"{path}: {dims} dimensions but the training file {like.path} has {like.dimensions}"
        )
    class_labels = None
    if header.get("classlabel", "").split()[:1] == ["true"]:
        class_labels = header["classlabel"].split()[1:] or None
    return TsData(
        series=series,
        labels=labels,
        dimensions=dims,
        class_labels=class_labels,
        problem_name=header.get("problemname"),
        path=str(path),
        lengths=[len(s) for s in series],
    )


def _positive_int(value: str, path, what: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise InvalidInputError(f"{path}: {what} must be a positive integer, got {value!r}")
    return number


class Standardizer:
    """Per-channel ``(x − mean) / std``, fitted on training cases only (see module docstring).

    A channel that is constant in training gets std 1 (it is only centred).

    >>> s = Standardizer.fit([np.array([[0.0, 1.0], [2.0, 1.0]])])
    >>> s.mean.tolist(), s.std.tolist()
    ([1.0, 1.0], [1.0, 1.0])
    """

    def __init__(self, mean, std) -> None:
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)

    @classmethod
    def fit(cls, series: list[np.ndarray]) -> Standardizer:
        steps = np.concatenate([np.asarray(s, dtype=np.float64) for s in series], axis=0)
        mean = steps.mean(axis=0)
        std = steps.std(axis=0)
        std = np.where(std > 1e-12, std, 1.0)
        return cls(mean, std)

    def transform(self, x: np.ndarray) -> np.ndarray:
        if x.shape[-1] != self.mean.shape[0]:
            raise InvalidInputError(
                f"series has {x.shape[-1]} dimensions; the model was trained on "
                f"{self.mean.shape[0]}"
            )
        return ((x - self.mean) / self.std).astype(np.float32)

    def to_json(self) -> dict:
        return {"type": "series", "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_json(cls, obj: dict) -> Standardizer:
        return cls(*channel_vectors(obj, "series scaler", "mean", "std"))
