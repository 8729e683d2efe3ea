"""What a task is to the training engine: a module that turns a batch into a loss.

A task (language model, classifier, tagger, seq2seq, forecaster) owns its head, its loss and its
metrics; :class:`rnnkit.train.Trainer` owns everything else (optimiser, schedule, clipping,
truncated BPTT, evaluation timing, checkpoints). The contract is one method::

    out = task.step(batch, state)   # -> StepOutput(loss, count, state=..., stats=..., tokens=...)

``loss`` is the mean over the ``count`` items the batch scored (what is optimised); ``state`` is
the recurrent state to carry into the next batch (truncated BPTT: the trainer detaches it and
passes it back with the next window of the same streams; return ``None`` for independent
batches); ``stats`` are additive sums for evaluation (``{"correct": 17.0}``); ``tokens`` counts
what the progress bar reports per second (default ``count``).

Evaluation (:meth:`Task.evaluate`) runs ``step`` without gradients over a batch source, sums
``loss * count``, ``count`` and ``stats``, and hands the sums to :meth:`Task.summarize`, which
returns the metrics dict (always with ``"loss"``; the language model adds ``bpc`` and
``perplexity``, a classifier would add ``accuracy = correct / count``).

To be saved and reloaded a task gives its constructor arguments with :meth:`Task.config` and
rebuilds from them with ``from_config``; ``name`` is the task's key (``config.json``'s
``"task"``) in :data:`TASKS`, which maps it to ``"module:Class"`` so :func:`load_task` can
rebuild any run's model from ``config["model"]`` and ``model.safetensors``. A new task adds
itself with ``TASKS["name"] = "rnnkit.tasks.module:Class"`` (or :func:`register_task`).

Example (a minimal regression task)::

    >>> import torch
    >>> class Mean(Task):
    ...     name = "mean"
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.w = torch.nn.Parameter(torch.zeros(1))
    ...     def step(self, batch, state=None):
    ...         loss = ((batch - self.w) ** 2).mean()
    ...         return StepOutput(loss=loss, count=batch.numel())
    >>> Mean().evaluate([torch.ones(4), torch.ones(2)])
    {'loss': 1.0}
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from rnnkit.errors import InvalidInputError
from rnnkit.layers.recurrent import CELL_LAYERS

CELLS = tuple(CELL_LAYERS)  # cell names every task accepts: lstm, gru, rnn, irnn


def check_positive_ints(**values: Any) -> None:
    """Raise ValueError naming the first argument that is not an int >= 1."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


# Task name (config.json "task") -> "module:Class"; imported only when a run of it is loaded.
TASKS: dict[str, str] = {
    "lm": "rnnkit.tasks.lm:LanguageModel",
    "classify": "rnnkit.tasks.classifier:Classifier",
    "forecast": "rnnkit.tasks.forecaster:Forecaster",
    "tag": "rnnkit.tasks.tagger:Tagger",
    "seq2seq": "rnnkit.tasks.seq2seq:Seq2Seq",
}


@dataclass
class StepOutput:
    """What :meth:`Task.step` returns for one batch.

    Attributes:
        loss: scalar tensor, mean loss over ``count`` items (gradients flow from it).
        count: number of items scored (characters, sequences, tags, time steps).
        state: recurrent state to carry into the next batch, or None.
        stats: additive sums for evaluation, e.g. ``{"correct": 17.0}``.
        tokens: items per step shown as throughput (default ``count``).
    """

    loss: Tensor
    count: int
    state: Any = None
    stats: dict[str, float] | None = None
    tokens: int | None = None


class Task(nn.Module):
    """Base class of trainable tasks; subclasses implement :meth:`step` (see module docstring)."""

    name: ClassVar[str] = "task"

    def step(self, batch, state=None) -> StepOutput:
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, batches: Iterable, *, max_batches: int | None = None) -> dict[str, float]:
        """Metrics over ``batches`` in eval mode, carrying state from batch to batch."""
        was_training = self.training
        self.eval()
        loss_sum, count, stats, state = 0.0, 0, {}, None
        try:
            for i, batch in enumerate(batches):
                if max_batches is not None and i >= max_batches:
                    break
                out = self.step(batch, state)
                state = out.state
                if out.count:
                    loss_sum += float(out.loss) * out.count
                    count += out.count
                for key, value in (out.stats or {}).items():
                    stats[key] = stats.get(key, 0.0) + float(value)
        finally:
            self.train(was_training)
        return self.summarize(loss_sum, count, stats)

    def summarize(self, loss_sum: float, count: int, stats: dict[str, float]) -> dict[str, float]:
        """Metrics from evaluation sums; the default is the mean loss plus stats per item."""
        if count == 0:
            return {"loss": float("nan"), "count": 0, **stats}
        return {"loss": loss_sum / count, **{k: v / count for k, v in stats.items()}}

    def config(self) -> dict:
        """Constructor arguments (JSON-able) so ``type(self).from_config(config)`` rebuilds it."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict) -> Task:
        return cls(**config)


def register_task(name: str, target: str) -> None:
    """Make runs with ``config["task"] == name`` loadable; ``target`` is ``"module:Class"``."""
    TASKS[name] = target


def task_class(name: str) -> type[Task]:
    """The class registered for task ``name``."""
    if name not in TASKS:
        raise InvalidInputError(
            f"unknown task {name!r} in config.json; known tasks: {', '.join(sorted(TASKS))}"
        )
    module, _, cls = TASKS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def load_task(run) -> Task:
    """Rebuild a run's model from ``config.json`` and load ``model.safetensors`` (no pickle).

    Args:
        run: a :class:`rnnkit.io.RunDir` (checked) or a path.

    Raises:
        InvalidInputError: not a run, corrupted weights, or weights that do not fit the config.
    """
    from rnnkit.io import RunDir

    run = run if isinstance(run, RunDir) else RunDir(run)
    run.check()
    config = run.read_config()
    cls = task_class(config["task"])
    try:
        task = cls.from_config(config.get("model", {}))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{run.config_path}: cannot build the model ({exc})") from None
    weights = run.load_weights()
    try:
        task.load_state_dict(weights)
    except RuntimeError as exc:
        raise InvalidInputError(
            f"{run.model_path} does not match {run.config_path} ({str(exc).splitlines()[0]})"
        ) from None
    task.eval()
    return task
