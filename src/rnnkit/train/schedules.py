"""Learning-rate schedules as plain objects with JSON state (no pickled torch schedulers).

``LRSchedule.factor(step, progress)`` multiplies the peak learning rate before optimiser step
``step`` (0-based); ``progress`` in [0, 1] is the fraction of the planned training done (see
:class:`rnnkit.train.TrainConfig`). ``observe(loss)`` is called after every evaluation (used by
reduce-on-plateau). ``state_dict``/``load_state_dict`` round-trip through JSON.

Example::

    >>> s = LRSchedule(TrainConfig(schedule="cosine", warmup_steps=10, steps=100))
    >>> round(s.factor(0, 0.0), 3), round(s.factor(9, 0.09), 3), round(s.factor(99, 1.0), 3)
    (0.1, 0.98, 0.0)
"""

from __future__ import annotations

import math

from rnnkit.train.config import TrainConfig

# The longest warm-up, as a share of the planned training (steps, epochs or time budget).
# Language model on the tragedies (100 warm-up steps), validation nats/char: --steps 200 1.927
# with the full warm-up, 1.905 with this cap; --time-budget 20 1.859 (236 steps) and 1.792 (262
# steps). Runs of the main job's length (2,200 steps in 180 s) warm up as before.
WARMUP_SHARE = 0.05


class LRSchedule:
    """Warm-up times one of constant / cosine / step / reduce-on-plateau (see TrainConfig)."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.plateau_scale = 1.0
        self.best = math.inf
        self.bad_evals = 0

    def factor(self, step: int, progress: float) -> float:
        c = self.config
        if c.schedule == "cosine":
            p = min(max(progress, 0.0), 1.0)
            f = c.min_lr_ratio + (1 - c.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p))
        elif c.schedule == "step":
            f = c.gamma ** (step // c.step_size)
        elif c.schedule == "plateau":
            f = self.plateau_scale
        else:
            f = 1.0
        if c.warmup_steps and step < c.warmup_steps:
            # Linear over warmup_steps, but never over more than WARMUP_SHARE of the planned
            # training: a short run is not spent warming up.
            f *= min(1.0, max((step + 1) / c.warmup_steps, progress / WARMUP_SHARE))
        return f

    def observe(self, loss: float) -> None:
        """Record an evaluation's loss; on a plateau, scale the learning rate down."""
        if not math.isfinite(loss):
            return
        if loss < self.best - self.config.min_delta:
            self.best, self.bad_evals = loss, 0
            return
        self.bad_evals += 1
        if self.config.schedule == "plateau" and self.bad_evals >= self.config.plateau_patience:
            self.plateau_scale *= self.config.plateau_factor
            self.bad_evals = 0

    def state_dict(self) -> dict:
        return {"plateau_scale": self.plateau_scale, "best": self.best, "bad_evals": self.bad_evals}

    def load_state_dict(self, state: dict) -> None:
        self.plateau_scale = float(state["plateau_scale"])
        best = state["best"]
        self.best = math.inf if best is None else float(best)
        self.bad_evals = int(state["bad_evals"])
