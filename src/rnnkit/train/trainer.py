"""The task-agnostic training loop (see :mod:`rnnkit.train` for how a task plugs in)."""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from rnnkit import distributed
from rnnkit.devices import check_precision, resolve_device, state_to_float32, to_device
from rnnkit.errors import InvalidInputError
from rnnkit.io import RunDir, append_jsonl, read_jsonl, save_tensors, write_jsonl
from rnnkit.train.callbacks import Callback, StepInfo
from rnnkit.train.checkpoint import (
    capture_rng,
    detach_state,
    load_optimizer,
    read_checkpoint,
    restore_rng,
    seed_everything,
    write_checkpoint,
)
from rnnkit.train.config import TrainConfig, evaluation_interval
from rnnkit.train.schedules import LRSchedule
from rnnkit.train.task import StepOutput, Task

log = logging.getLogger("rnnkit.train")


class NonFiniteLossError(InvalidInputError):
    """The loss (or gradient norm) became NaN/Inf; the weights were not updated."""


@dataclass
class TrainResult:
    """How training ended.

    ``stop_reason``: ``steps``, ``epochs``, ``time_budget``, ``early_stopping``,
    ``interrupted`` (Ctrl-C, SIGTERM or SIGHUP) or a reason passed to
    :meth:`Trainer.request_stop`. ``metrics``: the last metrics line (val_* from the last
    evaluation). ``best_step``: the step whose weights the task holds after training (lowest
    validation loss; None without validation data: the last weights). ``bad_evals``:
    evaluations since the best one. ``signal``: the signal number that interrupted training,
    else None.
    """

    step: int
    epoch: int
    elapsed: float
    train_time: float
    tokens: int
    stop_reason: str
    metrics: dict = field(default_factory=dict)
    best_val_loss: float = math.inf
    best_step: int | None = None
    bad_evals: int = 0
    signal: int | None = None

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.train_time if self.train_time > 0 else math.nan


def build_optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD over ``params`` from ``config``."""
    params = list(params)
    decay = config.weight_decay or 0.0
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, betas=config.betas, weight_decay=decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, betas=config.betas, weight_decay=decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=decay)


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
        callbacks: :class:`Callback` objects (under data parallelism they run on rank 0 only;
            a stop they request is applied on every rank).
        device: ``cpu`` (default), ``cuda``, ``cuda:N``, ``mps`` or ``auto`` (CUDA if
            available); the task is moved there, and so is every batch and the carried state.
            Weights and checkpoints are saved on the CPU, so a run resumes on another device.
        precision: ``32`` (default), ``bf16`` (autocast to bfloat16, CPU or GPU) or ``16``
            (autocast to float16 with a gradient scaler checkpointed with the run; GPU only).
            Device and precision are not part of :class:`TrainConfig`: they change how a
            trajectory is computed, not which one; checkpoints record them for information.

    Best weights: with validation data, every evaluation whose validation loss improves on the
    best so far keeps a copy of the weights. They are checkpointed with the last state
    (``trainer_state/best.safetensors``), written as the run's ``model.safetensors`` (the
    last weights stay in ``trainer_state/`` for an exact resume), and loaded into the task when
    :meth:`fit` returns. ``config.early_stopping`` (with validation data only) stops training
    after that many evaluations without improvement.

    Data parallelism: when the process was started by ``torchrun`` (``WORLD_SIZE`` > 1) or a
    process group is initialised, the trainer joins it (:func:`rnnkit.distributed.init`), keeps
    its rows of every global batch, normalises the loss by the global count of scored items and
    sums gradients over ranks, aggregates evaluation over ranks, and lets rank 0 alone write the
    run (see :mod:`rnnkit.distributed`). With CUDA, ``device`` ``auto``/``cuda`` means
    ``cuda:LOCAL_RANK``.

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
        device: str | torch.device = "cpu",
        precision: str = "32",
    ) -> None:
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.device = resolve_device(device)
        self.precision = str(precision)
        self.autocast_dtype = check_precision(self.precision, self.device)
        if distributed.launched_by_torchrun():
            distributed.init(self.device)
        self.world_size = distributed.world_size()
        self.rank = distributed.rank()
        self.is_main = self.rank == 0
        if self.world_size > 1 and self.device.type == "cuda" and str(device) in ("auto", "cuda"):
            self.device = torch.device("cuda", distributed.local_rank())
        self.task = task.to(self.device) if self.device.type != "cpu" else task
        self.config = config
        self.eval_every = config.eval_every or evaluation_interval(
            len(train) if hasattr(train, "__len__") else None
        )
        self.train_data = train
        self.val_data = val
        if self.world_size > 1:
            self.train_data = distributed.ShardedBatches(train, self.rank, self.world_size)
            if val is not None:
                self.val_data = distributed.ShardedBatches(
                    val, self.rank, self.world_size, skip_small=True
                )
        self.run = run
        self.callbacks = list(callbacks) if self.is_main else []
        # fp16 gradients underflow without loss scaling; bf16 has float32's exponent range.
        self.scaler = (
            torch.amp.GradScaler(self.device.type) if self.autocast_dtype is torch.float16 else None
        )
        self.params = [p for p in task.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("the task has no trainable parameters")
        groups = task.clip_groups()
        self.clip_groups = (
            [[p for p in group if p.requires_grad] for group in groups] if groups else [self.params]
        )
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
        # Weights of the best validation loss so far (CPU copies) and their step.
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_step: int | None = None
        self.last_eval_step = -1
        self.last_checkpoint_step = -1
        self.lr = config.lr
        self.history: list[dict] = []
        self._window = {"loss_sum": 0.0, "count": 0, "tokens": 0, "train_time": 0.0}
        self._pending: dict = {}
        self._stop_reason: str | None = None
        self._signal: int | None = None
        # (q0, p0): progress under this config / under the checkpoint's, where limits were raised.
        self._progress_map: tuple[float, float] | None = None
        self._last_checkpoint_clock = time.monotonic()

    # -- public helpers for callbacks ---------------------------------------------------------
    def log(self, **fields) -> None:
        """Add fields to the next metrics line (``metrics.jsonl``)."""
        self._pending.update(fields)

    def write_metrics(self, record: dict) -> None:
        """Write one metrics line now (``step`` is added if missing; rank 0 writes)."""
        record = {"step": self.step, **record}
        self.history.append(record)
        if self.run is not None and self.is_main:
            append_jsonl(self.run.metrics_path, record)

    def request_stop(self, reason: str = "callback") -> None:
        """Stop after the current step; a checkpoint is written."""
        self._stop_reason = reason

    def planned_steps(self) -> int | None:
        """Steps the run will take if bounded by steps/epochs, else None (time budget only)."""
        plans = []
        if self.config.steps is not None:
            plans.append(self.config.steps)
        epochs = self.epoch_limit()
        if epochs is not None and hasattr(self.train_data, "__len__"):
            plans.append(epochs * len(self.train_data))
        return min(plans) if plans else None

    def epoch_limit(self) -> int | None:
        """``epochs``, raised to whole epochs holding ``min_steps`` steps when that is set."""
        c = self.config
        if c.epochs is None or c.min_steps is None or not hasattr(self.train_data, "__len__"):
            return c.epochs
        per_epoch = max(len(self.train_data), 1)
        return max(c.epochs, -(-c.min_steps // per_epoch))

    def progress(self) -> float:
        """Fraction of planned training done: the largest over steps, epochs and time."""
        c, p = self.config, 0.0
        if c.steps is not None:
            p = max(p, self.step / c.steps)
        epochs = self.epoch_limit()
        if epochs is not None and hasattr(self.train_data, "__len__"):
            per_epoch = max(len(self.train_data), 1)
            p = max(p, (self.epoch + self.batch_index / per_epoch) / epochs)
        if c.time_budget is not None:
            p = max(p, self.elapsed / c.time_budget)
        return min(p, 1.0)

    # -- raised limits on resume (a separate concern from the loop) -------------------------------
    def _schedule_progress(self) -> float:
        """Progress the schedule sees. When a resume raised the limits, progress under the new
        limits restarts lower (q0 < p0): the schedule continues from p0 and covers the rest,
        p0 + (1 - p0) * (q - q0) / (1 - q0), so the learning rate never jumps. A cosine schedule
        that had finished (p0 = 1) stays at its floor, ``min_lr_ratio * lr``; one stopped part-way
        anneals the rest of the way over the new remaining budget."""
        q = self.progress()
        if self._progress_map is None:
            return q
        q0, p0 = self._progress_map
        return p0 + (1 - p0) * (q - q0) / (1 - q0) if q0 < 1 else p0

    def autocast(self):
        """The autocast context of the trainer's precision (a no-op for ``32``)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _on_device(self, batches):
        if self.device.type == "cpu":
            return batches
        return (to_device(b, self.device) for b in batches)

    def evaluate(self) -> dict[str, float]:
        """Task metrics on the validation batches (empty dict without validation data).

        Under data parallelism every rank scores its rows and the sums are added over ranks
        before ``summarize``, which equals one process scoring everything.
        """
        if self.val_data is None:
            return {}
        limit = self.config.eval_batches
        overridden = type(self.task).evaluate is not Task.evaluate
        with self.autocast():
            if overridden:  # a task with its own evaluation: every rank scores all the data
                source = getattr(self.val_data, "source", self.val_data)
                return self.task.evaluate(
                    self._on_device(_batches(source, 0, 0)), max_batches=limit
                )
            sums = self.task.evaluate_sums(
                self._on_device(_batches(self.val_data, 0, 0)), max_batches=limit
            )
        if self.world_size > 1:
            parts = distributed.all_gather_object(sums)
            loss_sum, count, stats = 0.0, 0, {}
            for part_loss, part_count, part_stats in parts:
                loss_sum += part_loss
                count += part_count
                for key, value in part_stats.items():
                    stats[key] = stats.get(key, 0.0) + value
            sums = (loss_sum, count, stats)
        return self.task.summarize(*sums)

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
            # Every rank draws from the same seed (as fairseq does): data order comes from
            # seeded generators, so the ranks agree on the global batches.
            seed_everything(self.config.seed)
            if self.world_size > 1:  # every rank starts from rank 0's weights
                for tensor in [*self.task.parameters(), *self.task.buffers()]:
                    torch.distributed.broadcast(tensor.data, src=0)
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
        self.restore_best()
        return result

    def restore_best(self) -> None:
        """Load the best weights so far into the task (nothing without validation data)."""
        if self.best_state is not None:
            with torch.no_grad():
                for name, tensor in self.task.state_dict().items():
                    tensor.copy_(self.best_state[name])

    def saved_weights(self) -> dict[str, torch.Tensor]:
        """What ``model.safetensors`` holds: the best weights so far, else the current ones."""
        return self.best_state if self.best_state is not None else self.task.state_dict()

    _REASONS = ("", "steps", "epochs", "time_budget", "early_stopping", "interrupted", "callback")

    def _limit_reached(self) -> str | None:
        reason = self._local_limit()
        if self.world_size == 1:
            return reason
        # The ranks must stop at the same step (a time budget or a callback on rank 0 decides
        # for all): the most urgent reason of any rank wins.
        if reason is None:
            code = 0
        elif reason in self._REASONS:
            code = self._REASONS.index(reason)
        else:  # a callback's own reason (rank 0): the others stop as "callback"
            code = len(self._REASONS)
        flag = torch.tensor([code], device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        code = int(flag.item())
        if code == 0:
            return None
        if code == len(self._REASONS):
            return reason or "callback"
        return self._REASONS[code]

    def _local_limit(self) -> str | None:
        c = self.config
        if self._stop_reason is not None:
            return self._stop_reason
        if c.steps is not None and self.step >= c.steps:
            return "steps"
        epochs = self.epoch_limit()
        if epochs is not None and self.epoch >= epochs:
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
            if self.step % self.eval_every == 0:
                self._evaluate_and_record()
                self.save_checkpoint()
            elif self._checkpoint_due():
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

    def _checkpoint_due(self) -> bool:
        """Whether ``checkpoint_every`` divides the step or ``checkpoint_seconds`` of wall-clock
        time passed since the last checkpoint (so a kill loses minutes, not an epoch). Under
        data parallelism rank 0's clock decides for every rank, since all take part."""
        every = self.config.checkpoint_every
        if every and self.step % every == 0:
            return True
        seconds = self.config.checkpoint_seconds
        if not seconds or self.run is None:
            return False
        due = time.monotonic() - self._last_checkpoint_clock >= seconds
        if self.world_size > 1:
            flag = torch.tensor([int(due)], device=self.device)
            torch.distributed.broadcast(flag, src=0)
            due = bool(flag.item())
        return due

    def _train_step(self, batch) -> None:
        t0 = time.perf_counter()
        for cb in self.callbacks:
            cb.on_step_start(self, self.step)
        self.lr = self.config.lr * self.schedule.factor(self.step, self._schedule_progress())
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type != "cpu":
            batch = to_device(batch, self.device)
        with self.autocast():
            out: StepOutput = self.task.step(batch, self.carry)
        objective = out.loss
        count = out.count
        tokens = out.tokens if out.tokens is not None else out.count
        if self.world_size > 1:
            # The global mean loss is sum_r n_r L_r / N: rank r back-propagates n_r L_r / N and
            # the gradients are summed over ranks below.
            totals = torch.tensor(
                [float(count), float(out.loss.detach()) * count, float(tokens)],
                dtype=torch.float64,
                device=self.device,
            )
            torch.distributed.all_reduce(totals)
            global_count, loss_sum, global_tokens = totals.tolist()
            loss = loss_sum / global_count if global_count else 0.0
            objective = out.loss * (count / global_count if global_count else 0.0)
            count, tokens = int(global_count), int(global_tokens)
        else:
            loss = out.loss.item()
        if not math.isfinite(loss):
            self._diverged(f"loss is {loss}")
        if self.scaler is not None:
            self.scaler.scale(objective).backward()
        else:
            objective.backward()
        if self.world_size > 1:
            self._all_reduce_gradients()
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)  # clip and report the true gradients
        grads = [p.grad for p in self.params if p.grad is not None]
        total_norm = torch.nn.utils.get_total_norm(grads)
        info = StepInfo(
            step=self.step + 1,
            epoch=self.epoch,
            batch_index=self.batch_index,
            loss=loss,
            grad_norm=float(total_norm),
            lr=self.lr,
            count=count,
            tokens=tokens,
            output=out,
        )
        # fp16: an overflow is the scaler's business (it skips the update and lowers the scale).
        if not math.isfinite(info.grad_norm) and self.scaler is None:
            self._diverged(f"gradient norm is {info.grad_norm} (loss {loss:.4g})")
        for cb in self.callbacks:
            cb.on_after_backward(self, info)
        if self.config.clip_norm is not None:
            for group in self.clip_groups:
                norm = total_norm
                if len(self.clip_groups) > 1:
                    norm = torch.nn.utils.get_total_norm(
                        [p.grad for p in group if p.grad is not None]
                    )
                torch.nn.utils.clip_grads_with_norm_(group, self.config.clip_norm, norm)
        if self.config.clip_value is not None:
            torch.nn.utils.clip_grad_value_(self.params, self.config.clip_value)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        # Truncated BPTT: the next window starts from this state, but gradients stop here.
        self.carry = detach_state(out.state)
        if self.autocast_dtype is not None:  # the carried state stays in float32
            self.carry = state_to_float32(self.carry)
        self.step += 1
        self.batch_index += 1
        dt = time.perf_counter() - t0
        self.train_time += dt
        self.tokens_seen += info.tokens
        w = self._window
        w["loss_sum"] += loss * count
        w["count"] += count
        w["tokens"] += info.tokens
        w["train_time"] += dt
        for cb in self.callbacks:
            cb.on_step_end(self, info)

    def _all_reduce_gradients(self) -> None:
        """Sum every parameter's gradient over ranks (one flat buffer per dtype).

        A parameter keeps ``grad = None`` only if it has no gradient on any rank, as in one
        process, so optimisers that skip such parameters behave the same.
        """
        has = torch.tensor(
            [p.grad is not None for p in self.params], dtype=torch.float32, device=self.device
        )
        torch.distributed.all_reduce(has)
        for p, flag in zip(self.params, has.tolist()):
            if flag and p.grad is None:
                p.grad = torch.zeros_like(p)
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for p in self.params:
            if p.grad is not None:
                by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
        for grads in by_dtype.values():
            flat = torch.cat([g.reshape(-1) for g in grads])
            torch.distributed.all_reduce(flat)
            offset = 0
            for g in grads:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()

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
            if "loss" in val:  # only validation decides which weights are kept
                self.best_step = self.step
                self.best_state = {
                    k: v.detach().to("cpu", copy=True) for k, v in self.task.state_dict().items()
                }
        else:
            self.bad_evals += 1
        patience = self.config.early_stopping
        if patience and "loss" in val and self.bad_evals >= patience:
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
            best_step=self.best_step,
            bad_evals=self.bad_evals,
            signal=self._signal if reason == "interrupted" else None,
        )

    # -- checkpoints ----------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        """Write ``trainer_state/`` then ``model.safetensors`` (both atomically).

        Under data parallelism every rank sends its carried state and RNG states to rank 0,
        which alone writes.
        """
        if self.run is None:
            return
        # A poisoned step (an overflow the loss check missed) must never replace the last good
        # checkpoint: every rank holds the same weights, so each checks and raises alike.
        bad = [n for n, t in self.task.state_dict().items() if t.is_floating_point()
               and not bool(torch.isfinite(t).all())]  # fmt: skip
        if bad:
            kept = self.last_checkpoint_step
            raise NonFiniteLossError(
                f"non-finite weights ({', '.join(bad[:3])}) at step {self.step} (epoch "
                f"{self.epoch}); the checkpoint was not written and the run keeps "
                + (f"its checkpoint from step {kept}" if kept >= 0 else "no checkpoint")
                + "; try a lower --lr or a --clip-norm"
            )
        ranks = ()
        if self.world_size > 1:
            rng_json, rng_tensors = capture_rng(self.device)
            part = (to_device(self.carry, "cpu"), rng_json, rng_tensors)
            parts = distributed.gather_object(part)
            if not self.is_main:
                self.last_checkpoint_step = self.step
                return
            ranks = parts[1:]
        write_checkpoint(
            self.run.path,
            model=self.task,
            optimizer=self.optimizer,
            carry=self.carry,
            device=self.device,
            ranks=ranks,
            best=self.best_state,
            state={
                "step": self.step,
                "epoch": self.epoch,
                "batch_index": self.batch_index,
                "elapsed": self.elapsed,
                "train_time": self.train_time,
                "tokens_seen": self.tokens_seen,
                "best_loss": self.best_loss,
                "best_step": self.best_step,
                "bad_evals": self.bad_evals,
                "last_eval_step": self.last_eval_step,
                "lr": self.lr,
                "window": self._window,
                "schedule": self.schedule.state_dict(),
                "progress": self._schedule_progress(),
                "progress_map": self._progress_map,
                "config": self.config.to_dict(),
                "device": str(self.device),
                "precision": self.precision,
                "world_size": self.world_size,
                **({"scaler": self.scaler.state_dict()} if self.scaler is not None else {}),
            },
        )
        save_tensors(self.run.model_path, self.saved_weights())
        self.last_checkpoint_step = self.step
        self._last_checkpoint_clock = time.monotonic()
        for cb in self.callbacks:
            cb.on_checkpoint(self)

    def _load_checkpoint(self) -> None:
        ckpt = read_checkpoint(self.run.path)
        s = ckpt["state"]
        saved_world = s.get("world_size", 1)
        if saved_world != self.world_size:
            raise InvalidInputError(
                f"{self.run.path} was trained by {saved_world} process(es) and is resumed by "
                f"{self.world_size}; resume with --nproc {saved_world} (torchrun "
                f"--nproc-per-node {saved_world}) so every rank finds its carried state"
            )
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
        # Checkpoints from before best-weight tracking have neither: the best starts afresh.
        self.best_step, self.best_state = s.get("best_step"), ckpt.get("best")
        self.lr, self._window = s["lr"], dict(s["window"])
        if self.scaler is not None and "scaler" in s:
            self.scaler.load_state_dict(s["scaler"])
        if s.get("progress") is not None:  # checkpoints from before raised-limit handling lack it
            saved = s.get("progress_map")
            self._progress_map = tuple(saved) if saved is not None else None
            if self._schedule_progress() != s["progress"]:  # the limits changed since
                q = self.progress()
                self._progress_map = (q, s["progress"]) if q < s["progress"] or saved else None
        if self.rank == 0:
            carry, rng_json, rng_tensors = ckpt["carry"], s["rng"], ckpt["tensors"]
        else:
            part = ckpt["ranks"][self.rank - 1]
            carry, rng_json, rng_tensors = part["carry"], part["rng"], part["tensors"]
        self.carry = carry if self.device.type == "cpu" else to_device(carry, self.device)
        self.last_checkpoint_step = self.step
        restore_rng(rng_json, rng_tensors)
        # Metrics lines written after this checkpoint belong to the lost part of the run.
        records = read_jsonl(self.run.metrics_path)
        kept = [r for r in records if r.get("step", 0) <= self.step]
        if self.run.metrics_path.exists() and self.is_main:  # also drops a line torn by a kill
            write_jsonl(self.run.metrics_path, kept)
        self.history = kept
        log.info("resumed at step %d (epoch %d, batch %d)", self.step, self.epoch, self.batch_index)

    # -- Ctrl-C, SIGTERM, SIGHUP ------------------------------------------------------------------
    # Schedulers preempt with SIGTERM (Slurm, Kubernetes, spot instances); a closed terminal sends
    # SIGHUP. Each finishes the step, checkpoints and stops like Ctrl-C; a second one aborts.
    STOP_SIGNALS = tuple(
        getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
    )

    def _install_sigint(self):
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, frame):
            if self._stop_reason == "interrupted":
                raise KeyboardInterrupt
            self._stop_reason = "interrupted"
            self._signal = signum
            log.warning(
                "%s: saving a checkpoint after this step (again to abort)",
                signal.Signals(signum).name,
            )

        return {signum: signal.signal(signum, handler) for signum in self.STOP_SIGNALS}

    def _restore_sigint(self, previous) -> None:
        if previous is not None:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
