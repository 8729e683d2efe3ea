"""Train every cell on a long-memory task with the same budget; tables and learning curves.

Each contender is a :class:`TaskModel` (one recurrent layer and a linear read-out) trained by
the engine (:class:`rnnkit.train.Trainer`: Adam, gradient-norm clipping, cosine schedule over
the budget) on fresh batches from the task's generator; the fixed test set is evaluated every
``eval_every`` steps and at the end. The result holds the final and best test figures beside
the task's baseline, and the learning curve.

Example::

    >>> from rnnkit.bench.tasks import Adding
    >>> result = train_on_task(Adding(20), "lstm", BenchSettings(max_steps=200, eval_every=100))
    >>> result["final"]["mse"] < result["baseline"]
    True
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from rnnkit.bench.tasks import MemoryTask
from rnnkit.init import chrono
from rnnkit.layers import cell_families, make_layer
from rnnkit.tasks.base import StepOutput, Task
from rnnkit.train import Callback, TrainConfig, Trainer, seed_everything

log = logging.getLogger(__name__)

# Every registered cell family (rnn, irnn, lstm, gru, mingru, minlstm, slstm and any added
# later): a live view of the registry.
CELLS = cell_families()

# Adam learning rates per cell (1e-3 for a family not listed). IRNN's ReLU state is unbounded,
# so it takes a smaller step; on adding (T=100, H=64, batch 32) 3e-4 reached MSE 0.005 in 3,000
# steps where 1e-4 was at 0.04 after 5,000.
DEFAULT_LR = {"irnn": 3e-4}


def default_lr(cell: str) -> float:
    """:data:`DEFAULT_LR` of ``cell``, else 1e-3."""
    return DEFAULT_LR.get(cell, 1e-3)


@dataclass(frozen=True)
class Contender:
    """One line of a benchmark: a cell name and an optional initialiser name.

    Written ``cell`` or ``cell:init`` (``lstm:chrono``, ``rnn:orthogonal``,
    ``lstm:forget_bias:2``). A bare ``chrono`` takes ``T_max`` from the task's dependency length.
    """

    cell: str
    init: str | None = None

    @classmethod
    def parse(cls, text: str) -> Contender:
        cell, _, init = text.strip().partition(":")
        if cell not in CELLS:
            raise ValueError(
                f"cell must be one of {', '.join(CELLS)} (optionally cell:init); got {text!r}"
            )
        return cls(cell, init or None)

    @property
    def label(self) -> str:
        return self.cell if self.init is None else f"{self.cell}:{self.init}"


@dataclass
class BenchSettings:
    """Settings shared by every contender (``lr=None``: the cell's :data:`DEFAULT_LR`).

    ``time_budget`` (seconds, evaluations included) and ``max_steps`` bound each contender;
    ``stop_at`` ends a contender early once its test metric reaches that value.
    """

    hidden_size: int = 128
    batch_size: int = 64
    lr: float | None = None
    clip_norm: float = 1.0
    schedule: str = "cosine"
    time_budget: float | None = 60.0
    max_steps: int | None = None
    eval_every: int = 100
    stop_at: float | None = None
    seed: int = 0


def resolve_init(init, task: MemoryTask):
    """``chrono`` without a value means ``chrono:<task.memory>``; anything else unchanged."""
    if init == "chrono":
        return chrono(task.memory)
    return init


class TaskModel(Task):
    """A recurrent layer and a linear read-out, at the last step or at every step.

    Shapes: x (B, T, I) → (B, O), or (B, T, O) for per-step tasks such as ``copy``.
    """

    name = "long_memory"

    def __init__(self, task: MemoryTask, cell: str, hidden_size: int, init=None) -> None:
        super().__init__()
        self.task = task
        options = {"batch_first": True}
        if init is not None:
            options["init"] = resolve_init(init, task)
        self.rnn = make_layer(cell, task.input_size, hidden_size, **options)
        self.head = nn.Linear(hidden_size, task.output_size)

    def forward(self, x: Tensor) -> Tensor:
        output, _ = self.rnn(x)  # (B, T, H)
        if not self.task.per_step:
            output = output[:, -1]
        return self.head(output)

    def step(self, batch, state=None) -> StepOutput:
        x, y = batch
        loss, count, stats = self.task.score(self(x), y)
        return StepOutput(loss=loss, count=count, stats=stats, tokens=len(x))

    def summarize(self, loss_sum, count, stats):
        return self.task.summarize(loss_sum, count, stats)

    def diagnostic_input(self, batch_size: int) -> Tensor:
        """Test sequences for :func:`rnnkit.diagnostics.diagnose` (B, T, I)."""
        return self.task.test_set()[0][:batch_size]


class FreshBatches:
    """Training batches drawn from the task's generator; epoch ``e`` is seeded by (seed, e)."""

    def __init__(self, task: MemoryTask, batch_size: int, seed: int, per_epoch: int = 100):
        self.task, self.batch_size, self.seed, self.per_epoch = task, batch_size, seed, per_epoch

    def __len__(self) -> int:
        return self.per_epoch

    def epoch(self, epoch: int, start: int = 0):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        for index in range(self.per_epoch):
            batch = self.task.train_batch(self.batch_size, generator)
            if index >= start:
                yield batch


class StopAt(Callback):
    """Stop once the test metric reaches ``target`` (``val_<metric>`` of an evaluation)."""

    def __init__(self, metric: str, target: float, lower_is_better: bool) -> None:
        self.metric, self.target, self.lower = metric, target, lower_is_better

    def on_evaluate(self, trainer, metrics: dict) -> None:
        value = metrics.get(f"val_{self.metric}")
        if value is None or not math.isfinite(value):
            return
        if (value <= self.target) if self.lower else (value >= self.target):
            trainer.request_stop("target_reached")


class Progress(Callback):
    """Pass each metrics line to ``report(line)``."""

    def __init__(self, report: Callable[[dict], None]) -> None:
        self.report = report

    def on_evaluate(self, trainer, metrics: dict) -> None:
        self.report(dict(metrics))


def train_on_task(
    task: MemoryTask,
    contender: Contender | str,
    settings: BenchSettings | None = None,
    *,
    progress: Callable[[dict], None] | None = None,
    callbacks: Sequence[Callback] = (),
    run=None,
) -> dict:
    """Train one contender on ``task``; a result dict.

    Returns: ``cell``, ``init``, ``label``, ``metric``, ``baseline``, ``final`` (test metrics
    at the end), ``best`` (best test value of the metric), ``steps``, ``seconds``,
    ``stop_reason``, ``lr``, ``settings``, ``curve`` (the metrics lines).
    """
    settings = settings or BenchSettings()
    if isinstance(contender, str):
        contender = Contender.parse(contender)
    seed_everything(settings.seed)
    model = TaskModel(task, contender.cell, settings.hidden_size, contender.init)
    lr = settings.lr if settings.lr is not None else default_lr(contender.cell)
    config = TrainConfig(
        lr=lr,
        clip_norm=settings.clip_norm,
        schedule=settings.schedule,
        eval_every=settings.eval_every,
        steps=settings.max_steps,
        time_budget=settings.time_budget,
        seed=settings.seed,
    )
    metric = task.metric
    extra = list(callbacks)
    if settings.stop_at is not None:
        extra.append(StopAt(metric.name, settings.stop_at, metric.lower_is_better))
    if progress is not None:
        extra.append(Progress(progress))
    train = FreshBatches(task, settings.batch_size, settings.seed)
    trainer = Trainer(model, config, train, task.test_batches(), run=run, callbacks=extra)
    first = {"step": 0, "elapsed": 0.0, **{f"val_{k}": v for k, v in trainer.evaluate().items()}}
    result = trainer.fit()
    curve = [first] + [dict(line) for line in trainer.history if f"val_{metric.name}" in line]
    values = [line[f"val_{metric.name}"] for line in curve]
    finite = [v for v in values if v is not None and math.isfinite(v)]
    best = (min if metric.lower_is_better else max)(finite) if finite else None
    final = {k.removeprefix("val_"): v for k, v in curve[-1].items() if k.startswith("val_")}
    return {
        "cell": contender.cell,
        "init": contender.init,
        "label": contender.label,
        "metric": metric.name,
        "baseline": task.baseline,
        "final": final,
        "best": best,
        "steps": result.step,
        "seconds": round(result.elapsed, 1),
        "stop_reason": result.stop_reason,
        "lr": lr,
        "settings": asdict(settings),
        "curve": curve,
    }


def run_benchmark(
    task: MemoryTask,
    contenders: Sequence[Contender | str],
    settings: BenchSettings | None = None,
    *,
    progress: Callable[[str, dict], None] | None = None,
) -> dict:
    """Train every contender with the same settings and budget: ``{"task": …, "results": […]}``."""
    results = []
    for contender in contenders:
        if isinstance(contender, str):
            contender = Contender.parse(contender)
        report = None
        if progress is not None:
            report = lambda line, label=contender.label: progress(label, line)  # noqa: E731
        results.append(train_on_task(task, contender, settings, progress=report))
    return {"task": task.describe(), "results": results}


def format_table(report: dict) -> str:
    """Plain text: one row per contender, the baseline on the first line."""
    task = report["task"]
    metric = task["metric"]
    header = f"{'cell':<22}{'test ' + metric:>18}{'best':>10}{'steps':>8}{'seconds':>9}  stop"
    lines = [
        f"{task['task']} (T={task['length']}, {task['steps']} steps): baseline {metric} "
        f"{task['baseline']:.4f} ({task['baseline_note']})",
        header,
        "-" * len(header),
    ]
    for r in report["results"]:
        value = r["final"].get(metric)
        shown = "nan" if value is None else f"{value:.4f}"
        best = "nan" if r["best"] is None else f"{r['best']:.4f}"
        lines.append(
            f"{r['label']:<22}{shown:>18}{best:>10}{r['steps']:>8}{r['seconds']:>9.0f}"
            f"  {r['stop_reason']}"
        )
    return "\n".join(lines)


def plot_learning_curves(report: dict, path) -> None:
    """PNG: test metric against elapsed seconds, one line per contender, baseline dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rnnkit.io import atomic_write_bytes

    task = report["task"]
    metric = task["metric"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in report["results"]:
        points = [(p["elapsed"], p.get(f"val_{metric}")) for p in r["curve"]]
        points = [(x, y) for x, y in points if y is not None and math.isfinite(y)]
        if points:
            ax.plot(*zip(*points), label=r["label"])
    ax.axhline(task["baseline"], color="gray", linestyle="--", label="baseline")
    if metric != "accuracy":
        ax.set_yscale("log")
    ax.set_xlabel("seconds")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"{task['task']} (T={task['length']})")
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
