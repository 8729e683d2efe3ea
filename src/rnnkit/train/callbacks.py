"""Callbacks: observe (or stop) training without changing the loop.

Subclass :class:`Callback` and override any hook; every hook receives the trainer, through which
the task (``trainer.task``), the optimiser, the step count and the run directory are reachable.

Order of hooks in one optimiser step::

    on_step_start(trainer, step)        step = 0-based index of the step about to run
    <forward, loss, backward>
    on_after_backward(trainer, info)    raw gradients in p.grad; info.grad_norm before clipping
    <clip, optimizer.step()>
    on_step_end(trainer, info)          weights updated; p.grad holds the clipped gradients
    on_evaluate(trainer, metrics)       after an evaluation, before its metrics line is written
    on_checkpoint(trainer)              after trainer_state/ and model.safetensors are written

and ``on_train_start(trainer)`` / ``on_train_end(trainer, result)`` around the loop. To add
fields to ``metrics.jsonl`` call ``trainer.log(name=value, ...)`` (merged into the next metrics
line) or ``trainer.write_metrics({...})`` (a line of its own). ``trainer.request_stop(reason)``
ends training after the current step with a checkpoint (no final evaluation; resuming continues).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from rnnkit.train.trainer import Trainer, TrainResult


@dataclass
class StepInfo:
    """One optimiser step, as the hooks see it.

    Attributes:
        step: number of this step, 1-based (equals ``trainer.step`` after the update).
        epoch: epoch index (0-based); ``batch_index``: batch within the epoch (0-based).
        loss: the batch's mean loss (float).
        grad_norm: global L2 norm of the gradients before clipping.
        lr: learning rate used for this step.
        count / tokens: items scored / items counted as throughput.
        output: the task's :class:`rnnkit.tasks.base.StepOutput` (loss tensor, state, stats).
    """

    step: int
    epoch: int
    batch_index: int
    loss: float
    grad_norm: float
    lr: float
    count: int
    tokens: int
    output: Any = None


class Callback:
    """Base class: every hook does nothing."""

    def on_train_start(self, trainer: Trainer) -> None: ...

    def on_step_start(self, trainer: Trainer, step: int) -> None: ...

    def on_after_backward(self, trainer: Trainer, info: StepInfo) -> None: ...

    def on_step_end(self, trainer: Trainer, info: StepInfo) -> None: ...

    def on_evaluate(self, trainer: Trainer, metrics: dict) -> None: ...

    def on_checkpoint(self, trainer: Trainer) -> None: ...

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None: ...


class ProgressBar(Callback):
    """A tqdm bar on stderr with the loss (running mean) and tokens per second.

    The bar counts steps when ``steps`` or ``epochs`` bound the run, else seconds of the time
    budget. Tokens/s is measured over training steps only (evaluations excluded).
    """

    def __init__(self, unit_name: str = "tok", file=None, mininterval: float = 0.5) -> None:
        self.unit_name = unit_name
        self.file = file or sys.stderr
        self.mininterval = mininterval
        self.bar = None

    def on_train_start(self, trainer: Trainer) -> None:
        from tqdm.auto import tqdm

        total = trainer.planned_steps()
        self.by_time = total is None
        if self.by_time:
            total = trainer.config.time_budget
            initial = int(trainer.elapsed)
        else:
            initial = trainer.step
        self.bar = tqdm(
            total=total,
            initial=initial,
            file=self.file,
            mininterval=self.mininterval,
            unit="s" if self.by_time else "step",
            dynamic_ncols=True,
            leave=True,
            bar_format=None
            if not self.by_time
            else "{l_bar}{bar}| {n:.0f}/{total:.0f}s [{elapsed}<{remaining}{postfix}]",
        )
        self.smoothed = math.nan
        self.window = (time.perf_counter(), trainer.train_time, trainer.tokens_seen)
        self.rate = math.nan
        self.last_post = 0.0

    def on_step_end(self, trainer: Trainer, info: StepInfo) -> None:
        if self.bar is None:
            return
        self.smoothed = (
            info.loss if math.isnan(self.smoothed) else (0.95 * self.smoothed + 0.05 * info.loss)
        )
        if self.by_time:
            self.bar.update(trainer.elapsed - self.bar.n)
        else:
            self.bar.update(1)
        now = time.perf_counter()
        if now - self.last_post >= self.mininterval:
            _, t0, k0 = self.window
            dt = trainer.train_time - t0
            if dt > 1.0:
                self.rate = (trainer.tokens_seen - k0) / dt
                self.window = (now, trainer.train_time, trainer.tokens_seen)
            post = {"loss": f"{self.smoothed:.3f}"}
            if not math.isnan(self.rate):
                post[f"{self.unit_name}/s"] = f"{self.rate:,.0f}"
            self.bar.set_postfix(post, refresh=False)
            self.last_post = now

    def on_evaluate(self, trainer: Trainer, metrics: dict) -> None:
        if self.bar is not None and "val_loss" in metrics:
            self.bar.write(
                f"step {trainer.step}: val_loss {metrics['val_loss']:.4f}", file=self.file
            )

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None:
        if self.bar is not None:
            if self.by_time:
                self.bar.update(max(0.0, min(trainer.elapsed, self.bar.total) - self.bar.n))
            self.bar.close()
            self.bar = None


class TensorBoard(Callback):
    """Scalars of every metrics line to ``<run>/tensorboard`` when ``tensorboard`` is installed.

    ``TensorBoard.available()`` says whether it is; the CLI adds this callback only then.
    """

    def __init__(self, log_dir=None) -> None:
        self.log_dir = log_dir
        self.writer = None

    @staticmethod
    def available() -> bool:
        try:
            import tensorboard  # noqa: F401
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401
        except Exception:
            return False
        return True

    def on_train_start(self, trainer: Trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter

        log_dir = self.log_dir or (trainer.run.path / "tensorboard" if trainer.run else None)
        self.writer = SummaryWriter(
            log_dir=None if log_dir is None else str(log_dir), purge_step=trainer.step or None
        )

    def on_evaluate(self, trainer: Trainer, metrics: dict) -> None:
        if self.writer is None:
            return
        for key, value in metrics.items():
            if isinstance(value, int | float) and key not in ("step", "epoch"):
                self.writer.add_scalar(key, value, trainer.step)
        self.writer.flush()

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
