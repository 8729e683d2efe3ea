"""Training hyperparameters: one validated dataclass, saved in ``config.json`` as ``"train"``."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step", "plateau")
EARLY_STOPPING = 10  # evaluations without improvement (patience), when validation data exists
MAX_EVAL_EVERY = 500  # steps between evaluations at most, when eval_every is left to the data


def evaluation_interval(steps_per_epoch: int | None) -> int:
    """Steps between evaluations when ``eval_every`` is None: once per epoch, at most every
    :data:`MAX_EVAL_EVERY` steps (that many when the epoch's length is unknown).

    >>> evaluation_interval(15), evaluation_interval(313), evaluation_interval(20_000)
    (15, 313, 500)
    """
    if steps_per_epoch is None:
        return MAX_EVAL_EVERY
    return max(1, min(MAX_EVAL_EVERY, int(steps_per_epoch)))


@dataclass
class TrainConfig:
    """Everything the engine needs besides the task and the data.

    Stopping: training ends at the first limit reached among ``steps`` (optimiser steps),
    ``epochs`` and ``time_budget`` (seconds of wall-clock time, evaluations included); at least
    one must be set. Learning-rate schedules see *progress* in [0, 1], the largest fraction of
    any limit used so far, so a time-bounded run anneals over its budget. Runs bounded only by
    ``time_budget`` depend on the machine's speed; bound by ``steps`` or ``epochs`` for
    bit-reproducible runs.

    Attributes:
        optimizer: ``adam``, ``adamw`` or ``sgd``.
        lr: peak learning rate.
        weight_decay: L2 (adam, sgd) or decoupled (adamw) weight decay; None: left to the
            task's data (:meth:`rnnkit.runs.TaskSpec.data_defaults`), 0 when it chooses none.
        momentum: SGD momentum.
        betas: Adam/AdamW betas.
        clip_norm: rescale gradients so their global L2 norm is at most this (None: off).
        clip_value: clamp each gradient element to [-clip_value, clip_value] (None: off).
        schedule: ``constant``; ``cosine`` (lr * (r + (1 - r) * (1 + cos(pi * progress)) / 2),
            r = ``min_lr_ratio``); ``step`` (lr * gamma ** floor(step / step_size)); ``plateau``
            (lr * plateau_factor each time the monitored loss has not improved for
            ``plateau_patience`` evaluations).
        warmup_steps: linear warm-up from lr / warmup_steps to lr over the first steps (any
            schedule), ending early once 5% of the planned training is done
            (:data:`rnnkit.train.schedules.WARMUP_SHARE`).
        eval_every: evaluate (and checkpoint) every this many steps; the end of training
            always evaluates. None: once per epoch, at most every 500 steps
            (:func:`evaluation_interval`), so small data is watched closely enough for early
            stopping and best weights to act before it overfits.
        eval_batches: evaluate on at most this many validation batches (None: all).
        checkpoint_every: extra checkpoints every this many steps (None: at evaluations only).
        checkpoint_seconds: also checkpoint when this many seconds of wall-clock time have
            passed since the last checkpoint (None: off), so a kill loses minutes, not an epoch.
            Checkpoints do not change the trajectory; resumes stay exact.
        early_stopping: with validation data, stop after this many evaluations without an
            improvement of the validation loss (0 or None: off). Default
            :data:`EARLY_STOPPING` = 10: the weights of the best evaluation are kept either way
            (see :class:`rnnkit.train.Trainer`), so stopping only saves the time a model that
            has begun to overfit would spend; ten evaluations leave a learning-rate schedule
            room to recover from a plateau.
        min_delta: improvement smaller than this does not count (early stopping, plateau).
        min_steps: with ``epochs``, train at least this many steps, in whole epochs: the epoch
            limit becomes ``max(epochs, ceil(min_steps / batches per epoch))`` (None: off), so
            a few epochs of a tiny data set are not a handful of updates.
        seed: seed of python, numpy and torch RNGs at the start of a fresh run.
    """

    optimizer: str = "adam"
    lr: float = 2e-3
    weight_decay: float | None = 0.0
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    clip_norm: float | None = 1.0
    clip_value: float | None = None
    schedule: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    step_size: int = 1000
    gamma: float = 0.5
    plateau_patience: int = 2
    plateau_factor: float = 0.5
    eval_every: int | None = 500
    eval_batches: int | None = None
    checkpoint_every: int | None = None
    checkpoint_seconds: float | None = 300.0
    early_stopping: int | None = EARLY_STOPPING
    min_delta: float = 0.0
    steps: int | None = None
    epochs: int | None = None
    time_budget: float | None = None
    min_steps: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first nonsensical value."""

        def positive(name, value, allow_none=False, integer=False):
            if value is None and allow_none:
                return
            bad = value is None or isinstance(value, bool)
            bad = bad or (integer and not isinstance(value, int))
            bad = bad or not isinstance(value, int | float) or not math.isfinite(value)
            if bad or value <= 0:
                raise ValueError(
                    f"{name} must be a positive {'integer' if integer else 'number'}, got {value!r}"
                )

        def non_negative(name, value):
            if isinstance(value, bool) or not isinstance(value, int | float) or not (value >= 0):
                raise ValueError(f"{name} must be >= 0, got {value!r}")

        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"
            )
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"
            )
        positive("lr", self.lr)
        if self.weight_decay is not None:
            non_negative("weight_decay", self.weight_decay)
        non_negative("momentum", self.momentum)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        positive("clip_norm", self.clip_norm, allow_none=True)
        positive("clip_value", self.clip_value, allow_none=True)
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an integer >= 0, got {self.warmup_steps!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")
        positive("step_size", self.step_size, integer=True)
        positive("gamma", self.gamma)
        positive("plateau_patience", self.plateau_patience, integer=True)
        if not 0 < self.plateau_factor < 1:
            raise ValueError(f"plateau_factor must be in (0, 1), got {self.plateau_factor!r}")
        positive("eval_every", self.eval_every, allow_none=True, integer=True)
        positive("eval_batches", self.eval_batches, allow_none=True, integer=True)
        positive("checkpoint_every", self.checkpoint_every, allow_none=True, integer=True)
        positive("checkpoint_seconds", self.checkpoint_seconds, allow_none=True)
        if self.early_stopping is not None and (
            isinstance(self.early_stopping, bool)
            or not isinstance(self.early_stopping, int)
            or self.early_stopping < 0
        ):
            raise ValueError(
                f"early_stopping must be an integer >= 0 (0: off), got {self.early_stopping!r}"
            )
        non_negative("min_delta", self.min_delta)
        positive("steps", self.steps, allow_none=True, integer=True)
        positive("epochs", self.epochs, allow_none=True, integer=True)
        positive("time_budget", self.time_budget, allow_none=True)
        positive("min_steps", self.min_steps, allow_none=True, integer=True)
        if self.steps is None and self.epochs is None and self.time_budget is None:
            raise ValueError("set at least one of steps, epochs or time_budget")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Build from ``config.json``'s ``"train"``; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(
                f"unknown training option(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(names))}"
            )
        return cls(**data)

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)
