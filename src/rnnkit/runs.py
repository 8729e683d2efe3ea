"""One run lifecycle for every task: train, resume, load, evaluate.

A task family contributes a small :class:`TaskSpec`: its data-config and model-config
dataclasses, ``prepare`` (data → batch sources, encoders, split record), ``build`` (model
config + prepared data → :class:`rnnkit.train.Task`) and ``report`` (metrics of a trained task
on held-out data). Everything else is written once, here:

- the single seeding (``seed_everything(train.seed)`` after the data is read, before the model
  is built), so a run is reproducible from its ``config.json``;
- the run directory (:class:`rnnkit.io.RunDir`): ``config.json`` (task, model, data record,
  train, versions, ``created``), the task's encoders (``vocab.json`` …, one file), the data
  split (``split.json``), ``model.safetensors``, ``metrics.jsonl``, ``trainer_state/``, the
  held-out report ``test_metrics.json`` and the task's plots;
- best weights: with validation data ``model.safetensors`` holds the weights of the lowest
  validation loss (every task; evaluation, sampling, prediction and export read it), the last
  state stays in ``trainer_state/`` for ``--resume``, and the report's ``best_step`` says
  which step the weights are from (:func:`best_step`);
- every input validated before anything on disk changes; ``--force`` and ``--resume`` rules;
- resume: the data is read again and must be unchanged (every ``*sha256`` in the data record),
  the split and encoders are the run's own, limits may be raised; the continuation is
  bit-identical to an uninterrupted run for runs bounded by steps or epochs;
- loading (weights checked against the config, no pickle) and evaluation on the run's own
  held-out data or on another file.

Lifecycle::

    spec = task_spec("classify")
    run = train_run(spec, "runs/jv", data=spec.data_config(dataset="japanese-vowels"),
                    model=spec.model_config(hidden_size=64), train=TrainConfig(epochs=30))
    run.report["accuracy"]                     # held-out split, also in test_metrics.json
    resume_run("runs/jv", limits={"epochs": 40})
    loaded = load_run("runs/jv")               # LoadedRun(spec, task, encoders, config, run)
    evaluate_run("runs/jv")                    # the same report, recomputed from the files

A new task family is one module with a spec and one line in :data:`SPECS`.
"""

from __future__ import annotations

import datetime
import importlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from rnnkit import distributed
from rnnkit.devices import check_precision, resolve_device
from rnnkit.errors import InvalidInputError
from rnnkit.io import RunDir, atomic_write_json, read_json, tensor_shapes
from rnnkit.train import Callback, TrainConfig, Trainer, TrainResult, seed_everything
from rnnkit.train.config import evaluation_interval
from rnnkit.train.task import Task

log = logging.getLogger("rnnkit.runs")

# Task name (config.json "task") -> "module:SPEC"; a module is imported when its task is used.
SPECS: dict[str, str] = {
    "lm": "rnnkit.tasks.lm:SPEC",
    "classify": "rnnkit.tasks.classify:SPEC",
    "tag": "rnnkit.tasks.tagger:SPEC",
    "seq2seq": "rnnkit.tasks.seq2seq:SPEC",
    "forecast": "rnnkit.tasks.forecaster:SPEC",
    "music": "rnnkit.tasks.music:SPEC",
}


@dataclass
class Prepared:
    """What :meth:`TaskSpec.prepare` returns: batch sources and what encodes the data.

    Attributes:
        train: batch source for training (``epoch(e, start)`` and ``len``, see
            :mod:`rnnkit.train`).
        val: batch source for validation, or None.
        encoders: whatever turns raw data into model inputs and back (vocabulary, label names,
            scaler); saved to the spec's ``encoders_file`` with :meth:`TaskSpec.encoders_to_json`.
        split: JSON-able record of which examples went where (``split.json``), or None when
            the split is a pure function of the data config (a text's last fraction).
        record: facts about the data for ``config.json`` (sources, ``sha256`` of each file,
            sizes). Keys ending in ``sha256`` are checked on resume and evaluation.
    """

    train: Any
    val: Any
    encoders: Any
    split: dict | None = None
    record: dict = field(default_factory=dict)


class Predictor:
    """A trained run, ready to use from Python: what :func:`load` returns.

    Every predictor has :meth:`evaluate`; each task's subclass adds its own verbs
    (``sample``/``stream`` for language models, ``predict``, ``tag``, ``translate``,
    ``forecast``, ``generate`` for music), the same calls the command line makes.

    Attributes:
        model: the task module, weights loaded, in eval mode; encoders: the run's vocabulary,
        labels or scaler; config: its ``config.json``; run: its :class:`rnnkit.io.RunDir`.
    """

    def __init__(self, loaded: LoadedRun):
        self.loaded = loaded
        self.model, self.encoders = loaded.task, loaded.encoders
        self.config, self.run = loaded.config, loaded.run

    @property
    def task(self) -> str:
        return self.config["task"]

    def evaluate(self, data_file: str | os.PathLike | None = None, **options) -> dict:
        """The held-out report again (its own data, unchanged), or the report on ``data_file``
        (:func:`evaluate_run`)."""
        return evaluate_run(self.loaded, data_file=data_file, **options)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.run.path)!r}, task={self.task!r})"


@dataclass(frozen=True)
class Headline:
    """A run's headline figure beside the honest baseline it must beat (``rnnkit bench
    quality``): ``metric`` and ``value`` of the model, whether higher is better, and the
    strongest baseline's name and value (None when the report holds none)."""

    metric: str
    value: float
    higher_is_better: bool
    baseline: str
    baseline_value: float | None

    @property
    def beats(self) -> bool | None:
        """Whether the model beats the baseline (None without one)."""
        if self.baseline_value is None:
            return None
        if self.higher_is_better:
            return self.value > self.baseline_value
        return self.value < self.baseline_value


class TaskSpec:
    """What a task family tells the lifecycle. Subclass, set the class attributes, implement
    :meth:`prepare`, :meth:`build`, :meth:`report` and the two encoder methods."""

    name: ClassVar[str]
    task_class: ClassVar[type[Task]]
    data_config: ClassVar[type]
    model_config: ClassVar[type]
    encoders_file: ClassVar[str] = "vocab.json"
    # What rnnkit.load returns for the task's runs.
    predictor: ClassVar[type[Predictor]] = Predictor
    # What the progress bar and the summary count per second.
    throughput_unit: ClassVar[str] = "items"
    # What plot_report draws ("" when the task has none).
    report_plot: ClassVar[str] = ""

    # -- what every task implements --------------------------------------------------------------
    def default_train(self) -> TrainConfig:
        """Training options when the caller gives none (each task's measured defaults)."""
        return TrainConfig(epochs=10)

    def prepare(self, data, seed: int, *, encoders=None, split: dict | None = None) -> Prepared:
        """Read, split, encode and batch ``data``. With ``encoders``/``split`` (a run's own,
        on resume and evaluation) rebuild exactly that run's split and encoding."""
        raise NotImplementedError

    def build(self, model, prepared: Prepared) -> Task:
        """The model for ``model`` (a :attr:`model_config`) on the prepared data."""
        raise NotImplementedError

    def encoders_to_json(self, encoders) -> dict:
        raise NotImplementedError

    def encoders_from_json(self, obj: dict):
        raise NotImplementedError

    def report(self, loaded: LoadedRun, prepared: Prepared | None = None, **options) -> dict:
        """Metrics of a trained run on held-out data, with ``"data"`` naming what was scored.

        ``prepared``: the run's own data (its held-out split); ``options`` are the task's
        evaluation options (``data_file`` for another file, ``batch_size``, ``beam`` …). Return
        ``{}`` when there is nothing held out.
        """
        raise NotImplementedError

    # -- optional hooks ------------------------------------------------------------------------
    def saved_data(self, record: dict):
        """The data config of a run from its ``config.json`` data record (resume, evaluate)."""
        return self.data_config.from_dict(record, strict=False)

    def data_defaults(self, model, train: TrainConfig, prepared: Prepared) -> tuple:
        """Settings left to the data, chosen from the prepared data before the model is built:
        ``(model, train, note)``. ``train.eval_every`` None becomes once per epoch (at most
        every 500 steps); a task may also fill its model config's None fields. ``note`` is one
        line saying what was chosen and why ('' when nothing was); the summary prints it and
        ``config.json`` keeps it as ``"data_defaults"``."""
        if train.eval_every is None:
            train = train.replace(eval_every=evaluation_interval(len(prepared.train)))
        return model, train, ""

    def training_batches(self, task: Task, prepared: Prepared):
        """The batch source the trainer reads for ``task`` (fresh and resumed runs alike):
        ``prepared.train`` unless the task reads its data another way (an ensemble's
        members, one order each)."""
        return prepared.train

    def callbacks(self, run: RunDir) -> list[Callback]:
        """Callbacks the task always trains with (besides the caller's)."""
        return []

    def after_training(self, task: Task, run: RunDir, callbacks: Sequence[Callback]) -> None:
        """Called when training stops, before the held-out report (e.g. restore best weights)."""

    def write_plots(self, loaded: LoadedRun, prepared: Prepared, report: dict) -> None:
        """Write the task's plots into ``loaded.run`` after the held-out report."""

    def plot_report(self, report: dict, path: str | os.PathLike) -> None:
        """Draw a held-out report (from :meth:`report`) at ``path``: the plot that
        ``rnnkit evaluate --plot`` writes, named by :attr:`report_plot`."""
        raise InvalidInputError(f"{self.name} runs have no plot of a held-out report")

    def export_model(self, loaded: LoadedRun):
        """What ``rnnkit export`` writes for a trained run: a :class:`rnnkit.export.TaskExport`
        (graphs with named example inputs and outputs, the sidecar's task facts, how a
        validation batch feeds them and which metric to compare)."""
        raise InvalidInputError(f"{self.name} runs cannot be exported yet")

    def headline(self, report: dict) -> Headline | None:
        """The held-out report's headline figure and the strongest baseline in it (None when
        the task reports none)."""
        return None

    def format_report(self, report: dict) -> str:
        """The held-out report as text for the command line."""
        return "\n".join(f"{k}: {v}" for k, v in report.items() if not isinstance(v, list | dict))

    def format_evaluation(self, report: dict) -> dict:
        """The report as the ``key  value`` lines ``rnnkit evaluate`` prints without --json
        (a task may flatten nested parts, e.g. one line per tag)."""
        return report

    def format_metrics(self, metrics: dict) -> str:
        """The last validation metrics of training as one line ('' to print none)."""
        shown = {k[4:]: v for k, v in metrics.items() if k.startswith("val_")}
        if not shown:
            return ""
        return "validation: " + ", ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items()
        )


def task_spec(name: str) -> TaskSpec:
    """The spec registered for task ``name``."""
    if not isinstance(name, str) or name not in SPECS:
        raise InvalidInputError(f"unknown task {name!r}; known tasks: {', '.join(sorted(SPECS))}")
    module, _, attr = SPECS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def register_spec(name: str, target: str) -> None:
    """Make task ``name`` trainable and its runs loadable; ``target`` is ``"module:SPEC"``."""
    SPECS[name] = target


@dataclass
class LoadedRun:
    """A trained run: its spec, model (weights loaded, eval mode), encoders and config."""

    spec: TaskSpec
    task: Task
    encoders: Any
    config: dict
    run: RunDir


@dataclass
class RunResult:
    """What :func:`train_run` / :func:`resume_run` return."""

    result: TrainResult
    run: RunDir
    report: dict
    note: str = ""  # what the data chose (TaskSpec.data_defaults), on a fresh run

    def to_dict(self) -> dict:
        """The summary ``--json`` prints: how training ended, last metrics, held-out report."""
        r = self.result
        return {
            "run": str(self.run.path),
            "task": self.run.read_config()["task"],
            "steps": r.step,
            "epochs": r.epoch,
            "elapsed": r.elapsed,
            "stop_reason": r.stop_reason,
            "best_step": r.best_step,
            "tokens_per_second": r.tokens_per_second,
            "metrics": r.metrics,
            "test": self.report,
            **({"data_defaults": self.note} if self.note else {}),
        }


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _config_obj(cls, value, what: str):
    if isinstance(value, cls):
        return value
    try:
        return cls.from_dict(dict(value or {}))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"bad {what} options: {exc}") from None


# -- training ----------------------------------------------------------------------------------
def train_run(
    spec: TaskSpec | str,
    out: str | os.PathLike,
    *,
    data=None,
    model=None,
    train: TrainConfig | None = None,
    force: bool = False,
    callbacks: Sequence[Callback] = (),
    device: str = "cpu",
    precision: str = "32",
) -> RunResult:
    """Train a fresh run of ``spec`` into ``out``; every input is validated before ``out`` is
    touched (an existing run there is replaced only with ``force``).

    Args:
        data / model: the spec's ``data_config`` / ``model_config`` (or dicts of their fields).
        train: :class:`TrainConfig` (default: the spec's :meth:`TaskSpec.default_train`).
        device / precision: where and how to train (:mod:`rnnkit.devices`); weights are saved on
            the CPU, so the run loads anywhere. Under ``torchrun`` every rank calls this; rank 0
            alone writes the run, and ``data.batch_size`` is the global batch.
    """
    spec = task_spec(spec) if isinstance(spec, str) else spec
    data = _config_obj(spec.data_config, data, "data")
    model = _config_obj(spec.model_config, model, "model")
    train = train or spec.default_train()
    _join_processes(device, precision, getattr(data, "batch_size", None))
    run = RunDir.prepare(out, force=force, tasks=SPECS)
    prepared = spec.prepare(data, train.seed)
    model, train, note = spec.data_defaults(model, train, prepared)
    seed_everything(train.seed)
    try:
        task = spec.build(model, prepared)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"bad model options: {exc}") from None
    run.check_replaceable()  # with the inputs valid: is what --force replaces an rnnkit run?
    distributed.barrier()  # every rank has checked --out before rank 0 replaces anything
    if distributed.is_main():
        run.create().lock()  # one writer per run: a second train/resume gets "in use by pid N"
        atomic_write_json(run / spec.encoders_file, spec.encoders_to_json(prepared.encoders))
        if prepared.split is not None:
            atomic_write_json(run.split_path, prepared.split)
        run.write_config(
            {
                "task": spec.name,
                "model": task.config(),
                "data": {**data.to_dict(), **prepared.record},
                "train": train.to_dict(),
                **({"data_defaults": note} if note else {}),
                "created": _now(),
            }
        )
    distributed.barrier()  # the other ranks read nothing before rank 0 has written the run
    log.info("training %s: %d parameters", spec.name, sum(p.numel() for p in task.parameters()))
    try:
        done = _train_new(spec, task, train, prepared, run, callbacks, device, precision)
        done.note = note
        return done
    finally:
        run.unlock()


def _train_new(spec, task, train, prepared, run, callbacks, device, precision) -> RunResult:
    if getattr(run, "replaced", None) is None:
        return _fit(spec, task, train, prepared, run, callbacks, False, device, precision)
    # A replaced run (--force) is kept aside until the new one has trained a step and saved it.
    try:
        done = _fit(
            spec, task, train, prepared, run, [*callbacks, _DiscardReplaced(run)], False,
            device, precision,
        )  # fmt: skip
    except BaseException:
        if run.replaced is not None:
            log.warning("training failed before a checkpoint; %s restored", run.path)
            run.restore_replaced()
        raise
    run.discard_replaced()
    return done


class _DiscardReplaced(Callback):
    """Deletes the run that ``--force`` replaced at the new run's first checkpoint after a
    training step (the step-0 checkpoint alone is not worth the old run)."""

    def __init__(self, run: RunDir) -> None:
        self.run = run

    def on_checkpoint(self, trainer) -> None:
        if trainer.step > 0:
            self.run.discard_replaced()


# Training options that do not change the trajectory: limits and when checkpoints are written.
FREE_ON_RESUME = ("steps", "epochs", "time_budget", "checkpoint_every", "checkpoint_seconds")


def resume_run(
    path: str | os.PathLike,
    *,
    limits: dict | None = None,
    callbacks: Sequence[Callback] = (),
    task: str | None = None,
    device: str = "cpu",
    precision: str = "32",
    changes: dict | None = None,
    override: bool = False,
) -> RunResult:
    """Continue a run from its last checkpoint with its own settings; ``limits`` may change
    ``steps``, ``epochs`` or ``time_budget`` (and ``checkpoint_every``/``checkpoint_seconds``).
    A limit that already stopped the run and is not given is dropped, so a run stopped by its
    time budget and resumed with ``steps=N`` trains to N; the schedule continues without a jump
    (see :meth:`rnnkit.train.Trainer._schedule_progress`). The data must be unchanged (same
    SHA-256). ``task``: if given, the task the run must be; ``device``/``precision`` as
    :func:`train_run` (a run may resume on another device, not with another world size).

    ``changes``: other training options the caller asked for. They, and any difference between
    ``config.json``'s training options and those the checkpoint was written with, change the
    trajectory: :class:`InvalidInputError` lists them unless ``override``, which applies them.
    """
    _join_processes(device, precision, None)
    run = RunDir.for_resume(path)
    if distributed.is_main():
        run.lock()  # before anything is read: the run must not change under us
    try:
        return _resume(run, limits, callbacks, task, device, precision, changes, override)
    finally:
        run.unlock()


def _resume(run, limits, callbacks, task, device, precision, changes, override) -> RunResult:
    from rnnkit.train.checkpoint import find_checkpoint

    config = run.read_config()
    _check_task(run, config, task)
    spec = task_spec(config["task"])
    saved = config.get("train")
    if not isinstance(saved, dict):
        raise InvalidInputError(f"{run.config_path}: no training options ('train'); not a run")
    folder = find_checkpoint(run.path)
    state = read_json(folder / "state.json") if folder is not None else {}
    state = state if isinstance(state, dict) else {}
    differences = _differences(state.get("config"), saved, "checkpoint", "config.json")
    differences += _differences(saved, changes or {}, "run", "given")
    if differences and not override:
        raise InvalidInputError(
            f"--resume {run.path} continues with the run's own settings, and these differ: "
            f"{'; '.join(differences)}; drop the options, or pass --override to apply them"
        )
    try:
        train = TrainConfig.from_dict(saved)
        updates = {**(changes or {}), **(limits or {})}
        for name in ("steps", "epochs", "time_budget"):  # a limit that stopped the run goes
            raised = any(k in (limits or {}) for k in ("steps", "epochs", "time_budget"))
            if name not in updates and raised and _reached(name, getattr(train, name), state):
                updates[name] = None
        if updates:
            train = train.replace(**updates)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"{run.config_path}: bad training options ({exc})") from None
    prepared = _reload_data(spec, run, config, seed=train.seed)
    task = _build_saved(spec, run, config)
    if train.to_dict() != saved and distributed.is_main():
        atomic_write_json(run.config_path, {**config, "train": train.to_dict()})
    return _fit(spec, task, train, prepared, run, callbacks, True, device, precision)


def _reached(name: str, limit, state: dict) -> bool:
    """Whether the checkpoint ``state`` has used up the limit ``name`` (value ``limit``)."""
    if limit is None:
        return False
    used = {"steps": "step", "epochs": "epoch", "time_budget": "elapsed"}[name]
    value = state.get(used)
    return isinstance(value, int | float) and value >= limit


def _differences(base, other: dict, base_name: str, other_name: str) -> list[str]:
    """``name: base_name X, other_name Y`` for each trajectory option of ``other`` that differs
    from ``base`` (limits and checkpoint timing are free to change)."""
    if not isinstance(base, dict):
        return []
    out = []
    for key in sorted(other):
        if key in FREE_ON_RESUME:
            continue
        a, b = base.get(key), other[key]
        if isinstance(a, list | tuple) and isinstance(b, list | tuple):
            a, b = list(a), list(b)
        if a != b:
            out.append(f"{key}: {base_name} {a!r}, {other_name} {b!r}")
    return out


def _join_processes(device: str, precision: str, batch_size: int | None) -> None:
    """Check device and precision; under torchrun, join the process group first."""
    resolved = resolve_device(device)
    check_precision(precision, resolved)
    if distributed.launched_by_torchrun():
        distributed.init(resolved)
        if batch_size is not None:
            distributed.check_batch_size(batch_size)


def _fit(spec, task, train, prepared, run, callbacks, resume, device, precision) -> RunResult:
    own = spec.callbacks(run)
    trainer = Trainer(
        task,
        train,
        spec.training_batches(task, prepared),
        prepared.val,
        run=run,
        callbacks=[*callbacks, *own],
        device=device,
        precision=precision,
    )
    result = trainer.fit(resume=resume)
    if not trainer.is_main:  # rank 0 reports and writes; the others are done
        return RunResult(result, run, {})
    spec.after_training(task, run, own)
    task.cpu().eval()  # held-out reports and later use run on the CPU, like the saved weights
    loaded = LoadedRun(spec, task, prepared.encoders, run.read_config(), run)
    report = _with_best_step(spec.report(loaded, prepared), run)
    if report:
        atomic_write_json(run.test_metrics_path, report)
        spec.write_plots(loaded, prepared, report)
    return RunResult(result, run, report)


def best_step(run: RunDir) -> int | None:
    """The step whose weights ``model.safetensors`` holds (the lowest validation loss), from the
    run's checkpoint; None without validation (the last weights) or in runs written before
    best weights were tracked."""
    from rnnkit.train.checkpoint import find_checkpoint

    folder = find_checkpoint(run.path)
    try:
        state = read_json(folder / "state.json") if folder is not None else {}
    except InvalidInputError:  # a damaged checkpoint does not stop the weights being scored
        return None
    step = state.get("best_step") if isinstance(state, dict) else None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def _with_best_step(report: dict, run: RunDir) -> dict:
    """``report`` with ``best_step`` added (held-out reports of a run's own data only)."""
    if report and "best_step" not in report:
        step = best_step(run)
        if step is not None:
            report["best_step"] = step
    return report


# -- loading and evaluation --------------------------------------------------------------------
def read_encoders(spec: TaskSpec, run: RunDir):
    """The run's encoders, rebuilt from its encoders file."""
    obj = read_json(run / spec.encoders_file)
    try:
        return spec.encoders_from_json(obj)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"{run / spec.encoders_file} is not valid ({exc})") from None


def _check_task(run: RunDir, config: dict, task: str | None) -> None:
    if task is not None and config.get("task") != task:
        raise InvalidInputError(f"{run.path} is a {config.get('task')!r} run, not a {task!r} run")


def _build_saved(spec: TaskSpec, run: RunDir, config: dict) -> Task:
    """The model of ``config``, built only once its shapes match the weights file's header, so
    an untrusted config (``hidden_size: 200000``) cannot make rnnkit allocate memory it would
    never fill."""
    weights = run.model_path
    if not weights.is_file():
        weights = run.trainer_state_path / RunDir.MODEL
    if weights.is_file():
        _check_shapes(spec, run, config, weights)
    try:
        return spec.task_class.from_config(config.get("model", {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"{run.config_path}: cannot build the model ({exc})") from None


def _check_shapes(spec: TaskSpec, run: RunDir, config: dict, weights) -> None:
    """Compare the model ``config`` describes (built on the ``meta`` device: shapes, no
    memory) with the tensor shapes in the header of ``weights``."""
    try:
        with torch.device("meta"):
            meta = spec.task_class.from_config(config.get("model", {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"{run.config_path}: cannot build the model ({exc})") from None
    except (RuntimeError, NotImplementedError):  # an initialiser without a meta kernel
        log.debug("cannot build %s on the meta device; shapes checked at load", spec.name)
        return
    expected = {k: tuple(v.shape) for k, v in meta.state_dict().items()}
    saved = tensor_shapes(weights)
    problems = [f"missing {k}" for k in sorted(expected.keys() - saved.keys())]
    problems += [f"unexpected {k}" for k in sorted(saved.keys() - expected.keys())]
    problems += [
        f"{k}: config {list(expected[k])}, file {list(saved[k])}"
        for k in sorted(expected.keys() & saved.keys())
        if expected[k] != saved[k]
    ]
    if problems:
        shown = "; ".join(problems[:3]) + ("; …" if len(problems) > 3 else "")
        raise InvalidInputError(
            f"{run.config_path} does not match {weights.name} ({shown}); "
            "restore the run's config.json or train again"
        )


def load_model(path: str | os.PathLike, *, task: str | None = None, trust: bool = False) -> Task:
    """The model of a trained run with its weights, in eval mode (no encoders needed).

    Args:
        task: if given, the task the run must be (``"lm"`` …); another task is an error.
        trust: load weights that carry no rnnkit checksum (``--trust``).

    Raises:
        InvalidInputError: not a run, another task, corrupted weights or weights that do not
            fit the config.
    """
    run = RunDir(path).check()
    config = run.read_config()
    _check_task(run, config, task)
    model = _build_saved(task_spec(config["task"]), run, config)
    weights = run.load_weights(trust=trust)
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise InvalidInputError(
            f"{run.model_path} does not match {run.config_path} ({str(exc).splitlines()[0]})"
        ) from None
    return model.eval()


def load_run(path: str | os.PathLike, *, task: str | None = None, trust: bool = False) -> LoadedRun:
    """A trained run, ready to use: model with its weights (eval mode), encoders, config.

    Raises:
        InvalidInputError: as :func:`load_model`, or missing/invalid encoders.
    """
    model = load_model(path, task=task, trust=trust)
    run = RunDir(path)
    config = run.read_config()
    spec = task_spec(config["task"])
    return LoadedRun(spec, model, read_encoders(spec, run), config, run)


def load(
    path: str | os.PathLike,
    *,
    task: str | None = None,
    trust: bool = False,
    device: str | torch.device = "cpu",
) -> Predictor:
    """A trained run as its task's :class:`Predictor` (``rnnkit.load``), its model on
    ``device`` (a name as :func:`rnnkit.devices.resolve_device` takes; inputs are moved there
    and results come back to the CPU).

    Example (a language model's run)::

        predictor = rnnkit.load("runs/main")
        print(predictor.sample("KING LEAR:", 200, temperature=0.8, seed=1))

    Raises:
        InvalidInputError: as :func:`load_run`.
    """
    target = resolve_device(device)
    loaded = load_run(path, task=task, trust=trust)
    loaded.task.to(target)
    return loaded.spec.predictor(loaded)


def _reload_data(spec: TaskSpec, run: RunDir, config: dict, *, seed: int) -> Prepared:
    """The run's data read again with its own split and encoders; unchanged files only."""
    record = config.get("data", {})
    try:
        data = spec.saved_data(record)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{run.config_path}: bad data options ({exc})") from None
    split = read_json(run.split_path) if run.split_path.is_file() else None
    prepared = spec.prepare(data, seed, encoders=read_encoders(spec, run), split=split)
    for key, value in prepared.record.items():
        if key.endswith("sha256") and record.get(key) and record[key] != value:
            source = record.get(key.replace("sha256", "source")) or record.get("source", "data")
            raise InvalidInputError(
                f"{source} changed since the run was trained (SHA-256 differs); "
                "the run's split and encoders no longer apply"
            )
    return prepared


def _saved_seed(loaded: LoadedRun) -> int:
    train = loaded.config.get("train")
    seed = train.get("seed", 0) if isinstance(train, dict) else None
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidInputError(f"{loaded.run.config_path}: train.seed is not an integer >= 0")
    return seed


def evaluate_run(path: str | os.PathLike | LoadedRun, **options) -> dict:
    """The held-out report of a trained run (a path or a :class:`LoadedRun`), recomputed from
    its files.

    Without ``data_file`` the run's own held-out data is read again (it must be unchanged);
    with ``data_file`` that file is scored instead. Other ``options`` are the task's
    (``batch_size``, ``bptt``, ``beam`` …).
    """
    loaded = path if isinstance(path, LoadedRun) else load_run(path)
    prepared = None
    if options.get("data_file") is None:
        try:
            prepared = _reload_data(
                loaded.spec, loaded.run, loaded.config, seed=_saved_seed(loaded)
            )
        except InvalidInputError as exc:
            raise InvalidInputError(f"{exc}; pass a data file to evaluate on another") from None
    report = loaded.spec.report(loaded, prepared, **options)
    if prepared is not None:
        report = _with_best_step(report, loaded.run)
    if not report:
        raise InvalidInputError(f"{loaded.run.path} has no held-out data; pass a data file")
    return report
