"""The task-agnostic training loop (see :mod:`rnnkit.train` for how a task plugs in)."""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from rnnkit.errors import InvalidInputError
from rnnkit.io import RunDir, append_jsonl, read_jsonl, save_tensors, write_jsonl
from rnnkit.train.callbacks import Callback, StepInfo
from rnnkit.train.checkpoint import (
    detach_state,
    load_optimizer,
    read_checkpoint,
    restore_rng,
    seed_everything,
    write_checkpoint,
)
from rnnkit.train.config import TrainConfig
from rnnkit.train.schedules import LRSchedule
from rnnkit.train.task import StepOutput, Task

log = logging.getLogger("rnnkit.train")


class NonFiniteLossError(InvalidInputError):
    """The loss (or gradient norm) became NaN/Inf; the weights were not updated."""


@dataclass
class TrainResult:
    """How training ended.

    ``stop_reason``: ``steps``, ``epochs``, ``time_budget``, ``early_stopping``,
    ``interrupted`` (Ctrl-C) or a reason passed to :meth:`Trainer.request_stop`.
    ``metrics``: the last metrics line (val_* from the last evaluation).
    """

    step: int
    epoch: int
    elapsed: float
    train_time: float
    tokens: int
    stop_reason: str
    metrics: dict = field(default_factory=dict)
    best_val_loss: float = math.inf

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.train_time if self.train_time > 0 else math.nan


def build_optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD over ``params`` from ``config``."""
    params = list(params)
    if config.optimizer == "adam":
        return torch.optim.Adam(
            params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
        )
    if config.optimizer == "adamw":
        return torch.optim.AdamW(
            params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
        )
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def _batches(source, epoch: int, start: int):
    """Batches of ``epoch`` from ``start``: a BatchSource's ``epoch()`` or any re-iterable."""
    if hasattr(source, "epoch"):
        return iter(source.epoch(epoch, start))
    it = iter(source)
    for _ in range(start):
        next(it, None)
    return it


class Trainer:
    """Train a :class:`rnnkit.tasks.base.Task` on batches; checkpoints into a run directory.

    Args:
        task: the model; ``task.step(batch, state) -> StepOutput``.
        config: :class:`TrainConfig`.
        train: a BatchSource (``epoch(e, start)`` yielding batches, ``len`` = batches per
            epoch) or a re-iterable of batches (then resume skips ``start`` batches).
        val: batches for evaluation (same forms), or None (metrics then use the training loss).
        run: run directory to write ``model.safetensors``, ``metrics.jsonl`` and
            ``trainer_state/`` into (None: nothing is written).
        callbacks: :class:`Callback` objects.

    Example::

        >>> import torch
        >>> from rnnkit.train import StepOutput, Task
        >>> class Fit(Task):
        ...     def __init__(self):
        ...         super().__init__(); self.w = torch.nn.Parameter(torch.zeros(1))
        ...     def step(self, batch, state=None):
        ...         return StepOutput(((batch - self.w) ** 2).mean(), batch.numel())
        >>> data = [torch.full((4,), 3.0)] * 10
        >>> result = Trainer(Fit(), TrainConfig(lr=0.1, steps=200, eval_every=100), data).fit()
        >>> result.stop_reason, round(result.metrics["train_loss"], 3)
        ('steps', 0.0)
    """

    def __init__(
        self,
        task: Task,
        config: TrainConfig,
        train: Iterable,
        val: Iterable | None = None,
        *,
        run: RunDir | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.task = task
        self.config = config
        self.train_data = train
        self.val_data = val
        self.run = run
        self.callbacks = list(callbacks)
        self.params = [p for p in task.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("the task has no trainable parameters")
        self.optimizer = build_optimizer(config, self.params)
        self.schedule = LRSchedule(config)
        # Position and counters; all of it is saved in checkpoints.
        self.step = 0
        self.epoch = 0
        self.batch_index = 0
        self.carry: Any = None
        self.elapsed = 0.0
        self.train_time = 0.0
        self.tokens_seen = 0
        self.best_loss = math.inf
        self.bad_evals = 0
        self.last_eval_step = -1
        self.last_checkpoint_step = -1
        self.lr = config.lr
        self.history: list[dict] = []
        self._window = {"loss_sum": 0.0, "count": 0, "tokens": 0, "train_time": 0.0}
        self._pending: dict = {}
        self._stop_reason: str | None = None

    # -- public helpers for callbacks ---------------------------------------------------------
    def log(self, **fields) -> None:
        """Add fields to the next metrics line (``metrics.jsonl``)."""
        self._pending.update(fields)

    def write_metrics(self, record: dict) -> None:
        """Write one metrics line now (``step`` is added if missing)."""
        record = {"step": self.step, **record}
        self.history.append(record)
        if self.run is not None:
            append_jsonl(self.run.metrics_path, record)

    def request_stop(self, reason: str = "callback") -> None:
        """Stop after the current step; a checkpoint is written."""
        self._stop_reason = reason

    def planned_steps(self) -> int | None:
        """Steps the run will take if bounded by steps/epochs, else None (time budget only)."""
        plans = []
        if self.config.steps is not None:
            plans.append(self.config.steps)
        if self.config.epochs is not None and hasattr(self.train_data, "__len__"):
            plans.append(self.config.epochs * len(self.train_data))
        return min(plans) if plans else None

    def progress(self) -> float:
        """Fraction of planned training done: the largest over steps, epochs and time."""
        c, p = self.config, 0.0
        if c.steps is not None:
            p = max(p, self.step / c.steps)
        if c.epochs is not None and hasattr(self.train_data, "__len__"):
            per_epoch = max(len(self.train_data), 1)
            p = max(p, (self.epoch + self.batch_index / per_epoch) / c.epochs)
        if c.time_budget is not None:
            p = max(p, self.elapsed / c.time_budget)
        return min(p, 1.0)

    def evaluate(self) -> dict[str, float]:
        """Task metrics on the validation batches (empty dict without validation data)."""
        if self.val_data is None:
            return {}
        return self.task.evaluate(
            _batches(self.val_data, 0, 0), max_batches=self.config.eval_batches
        )

    # -- the loop -------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> TrainResult:
        """Train until a limit is reached; with ``resume``, continue from ``run``'s checkpoint.

        A fresh run seeds python, numpy and torch with ``config.seed`` first (seed the model's
        initialisation yourself, before building it) and writes a step-0 checkpoint.

        Raises:
            NonFiniteLossError: NaN/Inf loss or gradient norm; the weights of that step were not
                updated and the run keeps its last checkpoint.
        """
        if resume:
            if self.run is None:
                raise ValueError("resume=True needs a run directory")
            self._load_checkpoint()
        else:
            seed_everything(self.config.seed)
        for cb in self.callbacks:
            cb.on_train_start(self)
        if not resume and self.run is not None:
            self.save_checkpoint()
        previous = self._install_sigint()
        result = None
        try:
            result = self._loop()
        except NonFiniteLossError:
            result = self._result("non-finite loss")
            raise
        finally:
            self._restore_sigint(previous)
            for cb in self.callbacks:
                cb.on_train_end(self, result or self._result("error"))
        return result

    def _limit_reached(self) -> str | None:
        c = self.config
        if self._stop_reason is not None:
            return self._stop_reason
        if c.steps is not None and self.step >= c.steps:
            return "steps"
        if c.epochs is not None and self.epoch >= c.epochs:
            return "epochs"
        if c.time_budget is not None and self.elapsed >= c.time_budget:
            return "time_budget"
        return None

    def _loop(self) -> TrainResult:
        self.task.train()
        start_clock, start_elapsed = time.monotonic(), self.elapsed
        batches = None
        while True:
            self.elapsed = start_elapsed + time.monotonic() - start_clock
            reason = self._limit_reached()
            if reason is not None:
                break
            if batches is None:
                batches = _batches(self.train_data, self.epoch, self.batch_index)
            batch = next(batches, None)
            if batch is None:  # end of epoch: streams restart, so does the carried state
                if self.batch_index == 0:
                    raise InvalidInputError("the training data yields no batches")
                self.epoch, self.batch_index, self.carry, batches = self.epoch + 1, 0, None, None
                continue
            self._train_step(batch)
            self.elapsed = start_elapsed + time.monotonic() - start_clock
            if self.step % self.config.eval_every == 0:
                self._evaluate_and_record()
                self.save_checkpoint()
            elif self.config.checkpoint_every and self.step % self.config.checkpoint_every == 0:
                self.save_checkpoint()
        # A finished run ends with an evaluation; a stopped one (Ctrl-C, request_stop) only
        # checkpoints, so that resuming it reproduces the uninterrupted run's metrics exactly.
        if reason in ("steps", "epochs", "time_budget") and self.last_eval_step != self.step:
            self._evaluate_and_record()
        if self.last_checkpoint_step != self.step and self.run is not None:
            self.save_checkpoint()
        if reason == "interrupted":
            log.warning("interrupted at step %d; checkpoint saved", self.step)
        return self._result(reason)

    def _train_step(self, batch) -> None:
        t0 = time.perf_counter()
        for cb in self.callbacks:
            cb.on_step_start(self, self.step)
        self.lr = self.config.lr * self.schedule.factor(self.step, self.progress())
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        self.optimizer.zero_grad(set_to_none=True)
        out: StepOutput = self.task.step(batch, self.carry)
        loss = out.loss.item()
        if not math.isfinite(loss):
            self._diverged(f"loss is {loss}")
        out.loss.backward()
        grads = [p.grad for p in self.params if p.grad is not None]
        total_norm = torch.nn.utils.get_total_norm(grads)
        info = StepInfo(
            step=self.step + 1,
            epoch=self.epoch,
            batch_index=self.batch_index,
            loss=loss,
            grad_norm=float(total_norm),
            lr=self.lr,
            count=out.count,
            tokens=out.tokens if out.tokens is not None else out.count,
            output=out,
        )
        if not math.isfinite(info.grad_norm):
            self._diverged(f"gradient norm is {info.grad_norm} (loss {loss:.4g})")
        for cb in self.callbacks:
            cb.on_after_backward(self, info)
        if self.config.clip_norm is not None:
            torch.nn.utils.clip_grads_with_norm_(self.params, self.config.clip_norm, total_norm)
        if self.config.clip_value is not None:
            torch.nn.utils.clip_grad_value_(self.params, self.config.clip_value)
        self.optimizer.step()
        # Truncated BPTT: the next window starts from this state, but gradients stop here.
        self.carry = detach_state(out.state)
        self.step += 1
        self.batch_index += 1
        dt = time.perf_counter() - t0
        self.train_time += dt
        self.tokens_seen += info.tokens
        w = self._window
        w["loss_sum"] += loss * out.count
        w["count"] += out.count
        w["tokens"] += info.tokens
        w["train_time"] += dt
        for cb in self.callbacks:
            cb.on_step_end(self, info)

    def _diverged(self, what: str) -> None:
        kept = (
            f"the run keeps its checkpoint from step {self.last_checkpoint_step}"
            if self.run is not None and self.last_checkpoint_step >= 0
            else "nothing was saved"
        )
        raise NonFiniteLossError(
            f"{what} at step {self.step + 1} (epoch {self.epoch}); training stopped before "
            f"updating the weights and {kept}; try a lower --lr or a --clip-norm"
        )

    def _evaluate_and_record(self) -> dict:
        w = self._window
        record: dict[str, Any] = {
            "step": self.step,
            "epoch": self.epoch,
            "elapsed": round(self.elapsed, 3),
            "lr": self.lr,
        }
        if w["count"]:
            record["train_loss"] = w["loss_sum"] / w["count"]
        if w["train_time"] > 0:
            record["tokens_per_s"] = w["tokens"] / w["train_time"]
        val = self.evaluate()
        record.update({f"val_{k}": v for k, v in val.items()})
        monitored = val.get("loss", record.get("train_loss", math.nan))
        self.schedule.observe(monitored)
        if math.isfinite(monitored) and monitored < self.best_loss - self.config.min_delta:
            self.best_loss, self.bad_evals = monitored, 0
        else:
            self.bad_evals += 1
        if self.config.early_stopping is not None and self.bad_evals >= self.config.early_stopping:
            self._stop_reason = self._stop_reason or "early_stopping"
        record.update(self._pending)
        self._pending = {}
        for cb in self.callbacks:
            cb.on_evaluate(self, record)
        self.write_metrics(record)
        self._window = {"loss_sum": 0.0, "count": 0, "tokens": 0, "train_time": 0.0}
        self.last_eval_step = self.step
        return record

    def _result(self, reason: str) -> TrainResult:
        return TrainResult(
            step=self.step,
            epoch=self.epoch,
            elapsed=self.elapsed,
            train_time=self.train_time,
            tokens=self.tokens_seen,
            stop_reason=reason,
            metrics=self.history[-1] if self.history else {},
            best_val_loss=self.best_loss,
        )

    # -- checkpoints ----------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        """Write ``trainer_state/`` then ``model.safetensors`` (both atomically)."""
        if self.run is None:
            return
        write_checkpoint(
            self.run.path,
            model=self.task,
            optimizer=self.optimizer,
            carry=self.carry,
            state={
                "step": self.step,
                "epoch": self.epoch,
                "batch_index": self.batch_index,
                "elapsed": self.elapsed,
                "train_time": self.train_time,
                "tokens_seen": self.tokens_seen,
                "best_loss": self.best_loss,
                "bad_evals": self.bad_evals,
                "last_eval_step": self.last_eval_step,
                "lr": self.lr,
                "window": self._window,
                "schedule": self.schedule.state_dict(),
                "config": self.config.to_dict(),
            },
        )
        save_tensors(self.run.model_path, self.task.state_dict())
        self.last_checkpoint_step = self.step
        for cb in self.callbacks:
            cb.on_checkpoint(self)

    def _load_checkpoint(self) -> None:
        ckpt = read_checkpoint(self.run.path)
        s = ckpt["state"]
        try:
            self.task.load_state_dict(ckpt["model"])
        except RuntimeError as exc:
            raise InvalidInputError(
                f"{self.run.path}/trainer_state does not fit this model "
                f"({str(exc).splitlines()[0]})"
            ) from None
        load_optimizer(self.optimizer, s["optimizer"], ckpt["optimizer"])
        self.schedule.load_state_dict(s["schedule"])
        self.step, self.epoch, self.batch_index = s["step"], s["epoch"], s["batch_index"]
        self.elapsed, self.train_time = s["elapsed"], s["train_time"]
        self.tokens_seen = s["tokens_seen"]
        self.best_loss = math.inf if s["best_loss"] is None else s["best_loss"]
        self.bad_evals, self.last_eval_step = s["bad_evals"], s["last_eval_step"]
        self.lr, self._window = s["lr"], dict(s["window"])
        self.carry = ckpt["carry"]
        self.last_checkpoint_step = self.step
        restore_rng(s["rng"], ckpt["tensors"])
        # Metrics lines written after this checkpoint belong to the lost part of the run.
        records = read_jsonl(self.run.metrics_path)
        kept = [r for r in records if r.get("step", 0) <= self.step]
        if self.run.metrics_path.exists():  # also drops a line torn by a kill
            write_jsonl(self.run.metrics_path, kept)
        self.history = kept
        log.info("resumed at step %d (epoch %d, batch %d)", self.step, self.epoch, self.batch_index)

    # -- Ctrl-C -----------------------------------------------------------------------------------
    def _install_sigint(self):
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, frame):
            if self._stop_reason == "interrupted":
                raise KeyboardInterrupt
            self._stop_reason = "interrupted"
            log.warning("interrupt: saving a checkpoint after this step (Ctrl-C again to abort)")

        return signal.signal(signal.SIGINT, handler)

    def _restore_sigint(self, previous) -> None:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
