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
``"task"``), so :mod:`rnnkit.runs` can rebuild any run's model from ``config["model"]`` and
``model.safetensors``.

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

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from rnnkit.devices import device_of, state_to_float32, to_device


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

    def evaluate(self, batches: Iterable, *, max_batches: int | None = None) -> dict[str, float]:
        """Metrics over ``batches`` in eval mode, carrying state from batch to batch."""
        return self.summarize(*self.evaluate_sums(batches, max_batches=max_batches))

    @torch.no_grad()
    def evaluate_sums(
        self, batches: Iterable, *, max_batches: int | None = None
    ) -> tuple[float, int, dict[str, float]]:
        """``(loss_sum, count, stats)`` over ``batches`` in eval mode: additive, so sums from
        shards of the data (data-parallel ranks) add up to the sums over all of it."""
        was_training = self.training
        self.eval()
        device = device_of(self)  # batches come from the CPU; the model may be elsewhere
        loss_sum, count, stats, state = 0.0, 0, {}, None
        try:
            for i, batch in enumerate(batches):
                if max_batches is not None and i >= max_batches:
                    break
                out = self.step(to_device(batch, device), state)
                state = state_to_float32(out.state)  # under autocast, as training carries it
                if out.count:
                    loss_sum += float(out.loss) * out.count
                    count += out.count
                for key, value in (out.stats or {}).items():
                    stats[key] = stats.get(key, 0.0) + float(value)
        finally:
            self.train(was_training)
        return loss_sum, count, stats

    def summarize(self, loss_sum: float, count: int, stats: dict[str, float]) -> dict[str, float]:
        """Metrics from evaluation sums; the default is the mean loss plus stats per item."""
        if count == 0:
            return {"loss": float("nan"), "count": 0, **stats}
        return {"loss": loss_sum / count, **{k: v / count for k, v in stats.items()}}

    def clip_groups(self) -> list[list[nn.Parameter]] | None:
        """Parameter groups whose gradient norms are clipped each on its own (``clip_norm``),
        or None (the default): one global norm over all parameters. An ensemble returns one
        group per member, so each member is clipped as if it trained alone."""
        return None

    def config(self) -> dict:
        """Constructor arguments (JSON-able) so ``type(self).from_config(config)`` rebuilds it."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict) -> Task:
        return cls(**config)
