"""Flags, checks and the shared command tail of the ``rnnkit train <task>`` commands.

A command's flags are generated from the task's config dataclasses (:func:`add_config_flags`:
type, default and help from each field, so a default lives once), the training flags from
:class:`rnnkit.train.TrainConfig` with the task's defaults (:func:`add_train_flags`), and every
command ends with the same tail (:func:`add_command_tail`: ``--out --force --resume --seed
--threads --progress --json``) and the same run (:func:`run_training`, over :mod:`rnnkit.runs`).
The ``check_*`` functions raise :class:`~rnnkit.cli.main.UsageError` (``error: <msg>``, exit 2)
naming the flag.

Example (what ``rnnkit train lm`` does)::

    add_config_flags(parser.add_argument_group("data"), TextData)
    add_train_flags(parser.add_argument_group("optimisation"), defaults=LM_DEFAULTS)
    add_limit_flags(parser.add_argument_group("length of training"))
    add_command_tail(parser.add_argument_group("run"), "lm")
    ...
    return run_training(args, "lm", lambda: (config_from_args(TextData, args), ...))
"""

from __future__ import annotations

import argparse
import math
import sys

from rnnkit.cli.main import UsageError

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step", "plateau")
BACKENDS = ("auto", "native", "fused", "reference")
LIMITS = ("steps", "epochs", "time_budget")


def cell_names() -> tuple[str, ...]:
    """The registered cell families (``--cell`` choices), read when a parser is built."""
    from rnnkit.layers import cell_families

    return tuple(cell_families())


# Keyword options of rnnkit.layers.make_layer, as flags: name -> (add_argument keywords).
_FLAG = argparse.BooleanOptionalAction
LAYER_FLAGS = {
    "peephole": {"action": _FLAG, "default": None, "help": "LSTM peephole connections"},
    "coupled": {
        "action": _FLAG,
        "default": None,
        "help": "LSTM with coupled input and forget gates",
    },
    "layer_norm": {"action": _FLAG, "default": None, "help": "layer-normalised LSTM"},
    "proj_size": {"type": int, "help": "LSTM projection size"},
    "forget_bias": {"type": float, "help": "LSTM forget-gate bias added"},
    "reset_after": {
        "action": _FLAG,
        "default": None,
        "help": "GRU reset gate after the matmul (torch's form)",
    },
    "nonlinearity": {"help": "Elman RNN nonlinearity: tanh, relu, ..."},
    "init": {"help": "initialiser name: rnnkit, torch, identity, ..."},
    "backend": {"choices": BACKENDS, "help": "how sequences run (default auto)"},
    "variational_dropout": {
        "type": float,
        "help": "same dropout mask at every time step between layers",
    },
    "weight_drop": {"type": float, "help": "DropConnect on recurrent weights"},
    "zoneout": {"type": float, "help": "zoneout probability"},
    "learn_initial_state": {
        "action": _FLAG,
        "default": None,
        "help": "learn the initial hidden state",
    },
    "residual": {
        "action": _FLAG,
        "default": None,
        "help": "residual stack: each layer from the second on adds its input to its output",
    },
}
LAYER_OPTIONS = tuple(LAYER_FLAGS)


def flag(name: str) -> str:
    """``"time_budget"`` -> ``"--time-budget"``."""
    return "--" + name.replace("_", "-")


def _dest(flag_name: str) -> str:
    return flag_name[2:].replace("-", "_")


def _lr_text(lr: float) -> str:
    """``2e-3`` -> ``"2e-3"``, ``0.01`` -> ``"1e-2"`` (how the help texts write rates)."""
    mantissa, exponent = f"{lr:e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


def add_layer_options(group, names=LAYER_OPTIONS, help: dict | None = None) -> None:
    """Add the rnnkit layer flags ``names`` (in that order) to ``group``.

    All default to None, meaning "the layer's default"; ``help`` maps names to task wording.
    """
    for name in names:
        kwargs = dict(LAYER_FLAGS[name])
        if help and name in help:
            kwargs["help"] = help[name]
        group.add_argument(flag(name), **kwargs)


def check_positive(args, *flags: str) -> None:
    """Each given flag must be None or a finite number > 0."""
    for name in flags:
        value = getattr(args, _dest(name))
        if value is not None and (not math.isfinite(value) or value <= 0):
            raise UsageError(f"{name} must be > 0, got {value}")


def check_non_negative(args, *flags: str) -> None:
    """Each given flag must be None or a finite number >= 0."""
    for name in flags:
        value = getattr(args, _dest(name))
        if value is not None and (not math.isfinite(value) or value < 0):
            raise UsageError(f"{name} must be >= 0, got {value}")


def check_probability(args, *flags: str) -> None:
    """Each given flag must be None or in [0, 1)."""
    for name in flags:
        value = getattr(args, _dest(name))
        if value is not None and not 0 <= value < 1:
            raise UsageError(f"{name} must be in [0, 1), got {value}")


def check_training_options(args) -> None:
    """The optimisation, stopping and seed flags a command has: > 0 or >= 0 as they must be."""
    present = [f for f in ("--lr", "--eval-every") if hasattr(args, _dest(f))]
    check_positive(args, *present, "--time-budget", "--epochs", "--steps")
    check_non_negative(
        args,
        *[
            f
            for f in ("--weight-decay", "--warmup-steps", "--early-stopping")
            if hasattr(args, _dest(f))
        ],
        "--seed",
        "--clip-norm",
    )


def check_cell_options(args, cell: str) -> None:
    """Refuse a family-specific flag (e.g. --peephole) given with a --cell that lacks it; the
    families' own ``family_options`` say which is which."""
    from rnnkit.layers import cell_families

    families = cell_families()
    if cell not in families:
        return  # the library names the known cells
    own = set(families[cell].family_options)
    for option in LAYER_FLAGS:
        if getattr(args, option, None) is None or option in own:
            continue
        takers = [name for name, layer in families.items() if option in layer.family_options]
        if takers:
            raise UsageError(
                f"{flag(option)} applies to --cell {' or '.join(takers)} only, got --cell {cell}"
            )


def check_resume(args) -> None:
    """--resume continues an existing run, so --force (replace it) makes no sense with it."""
    if args.resume and args.force:
        raise UsageError("--resume continues a run; it cannot be combined with --force")


def layer_options_from_args(args, names=LAYER_OPTIONS) -> dict:
    """The layer flags among ``names`` that the command has and that were given."""
    return {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}


def limits_from_args(args, defaults: dict | None = None) -> dict:
    """{steps, epochs, time_budget} from the flags; ``defaults`` when none was given.

    Without ``defaults``, only the limits given (as ``resume_*`` functions take them).
    """
    limits = {k: getattr(args, k) for k in LIMITS}
    if defaults is None:
        return {k: v for k, v in limits.items() if v is not None}
    if all(v is None for v in limits.values()):
        limits.update(defaults)
    return limits


# -- flags generated from config dataclasses ---------------------------------------------------
# Help of the TrainConfig fields that commands expose (the dataclass documents them in full).
TRAIN_HELP = {
    "optimizer": "optimiser",
    "lr": "peak learning rate",
    "weight_decay": "weight decay (L2; decoupled with adamw)",
    "momentum": "SGD momentum",
    "clip_norm": "clip the global gradient norm (0 turns it off)",
    "clip_value": "clip each gradient element",
    "schedule": "learning-rate schedule",
    "warmup_steps": "linear warm-up steps",
    "step_size": "step schedule: steps per decay",
    "gamma": "step schedule: decay factor",
    "plateau_patience": "plateau schedule: evaluations without improvement before decay",
    "eval_every": "evaluate and checkpoint every N steps",
    "early_stopping": "with validation data, stop after N evaluations without improvement of "
    "the validation loss (0: off); the best evaluation's weights are kept either way",
}
TRAIN_CHOICES = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES}
TRAIN_FLAGS = tuple(TRAIN_HELP)
# The optimisation flags of the commands that do not expose the schedule's fine settings.
BASIC_TRAIN_FLAGS = (
    "optimizer",
    "lr",
    "weight_decay",
    "clip_norm",
    "schedule",
    "warmup_steps",
    "eval_every",
    "early_stopping",
)


def _field_kind(annotation) -> type | None:
    """int, float, bool or str for a field annotation such as ``int | None``; None otherwise."""
    import typing

    args = typing.get_args(annotation) or (annotation,)
    for kind in (bool, int, float, str):
        if kind in args:
            return kind
    return None


def _default_text(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value and (abs(value) <= 1e-2 or abs(value) >= 1e5):
        return _lr_text(value)
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def add_config_flags(
    group,
    cls,
    names=None,
    *,
    defaults: dict | None = None,
    help: dict | None = None,
    choices: dict | None = None,
) -> None:
    """One flag per field of the dataclass ``cls`` (``names``: those fields, in that order).

    Type from the field's annotation (``bool`` becomes ``--x/--no-x``), default from the field
    (or ``defaults``), help from ``metadata["help"]`` (or ``help``), ``choices`` and
    ``metavar`` from the metadata (or ``choices``). Fields with ``metadata["flag"] is False``
    are skipped when ``names`` is None.
    """
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = names or [n for n, f in fields.items() if f.metadata.get("flag", True)]
    for name in names:
        f = fields[name]
        if defaults and name in defaults:
            default = defaults[name]
        elif f.default is not dataclasses.MISSING:
            default = f.default
        else:
            default = None
        kind = _field_kind(hints[name])
        text = (help or {}).get(name) or f.metadata.get("help", "")
        kwargs: dict = {"default": default}
        options = (choices or {}).get(name) or f.metadata.get("choices")
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = kind or str
            kwargs["metavar"] = f.metadata.get("metavar") or (
                "N" if kind is int else "X" if kind is float else None
            )
            if options:
                kwargs["choices"] = tuple(options)
                kwargs.pop("metavar")
        if kwargs.get("metavar") is None:
            kwargs.pop("metavar", None)
        if default is not None:
            text = f"{text} (default {_default_text(default)})" if text else ""
        group.add_argument(flag(name), help=text or None, **kwargs)


def config_from_args(cls, args, names=None, **fixed):
    """An instance of the dataclass ``cls`` from the flags of its fields (plus ``fixed``)."""
    import dataclasses

    names = names or [f.name for f in dataclasses.fields(cls)]
    values = {n: getattr(args, n) for n in names if hasattr(args, n)}
    try:
        return cls(**{**values, **fixed})
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def add_train_flags(group, names=TRAIN_FLAGS, *, defaults=None) -> None:
    """Flags of :class:`rnnkit.train.TrainConfig` fields ``names``; ``defaults`` is the task's
    default TrainConfig (or a dict of field values)."""
    import dataclasses

    from rnnkit.train import TrainConfig

    if dataclasses.is_dataclass(defaults):
        defaults = {n: getattr(defaults, n) for n in names}
    text = dict(TRAIN_HELP)
    if (defaults or {}).get("eval_every", 0) is None:
        text["eval_every"] += " (default: once per epoch, at most every 500)"
    if (defaults or {}).get("weight_decay", 0) is None:
        text["weight_decay"] += " (default: from the size of the training data; the summary says"
        text["weight_decay"] += " which)"
    add_config_flags(group, TrainConfig, names, defaults=defaults, help=text, choices=TRAIN_CHOICES)


def add_limit_flags(group, *, epochs_help: str = "passes over the training data") -> None:
    """--time-budget, --epochs, --steps (no default: the task's default limit applies)."""
    group.add_argument("--time-budget", type=float, metavar="SECONDS", help="wall-clock seconds")
    group.add_argument("--epochs", type=int, metavar="N", help=epochs_help)
    group.add_argument("--steps", type=int, metavar="N", help="optimiser steps")


def checkpoint_options(args) -> dict:
    """``checkpoint_seconds`` / ``checkpoint_every`` from the tail's flags, when given
    (``--checkpoint-every 0`` turns the timer off)."""
    options = {}
    seconds = getattr(args, "checkpoint_seconds", None)
    if seconds is not None:
        if not math.isfinite(seconds) or seconds < 0:
            raise UsageError(f"--checkpoint-every must be >= 0 seconds, got {seconds}")
        options["checkpoint_seconds"] = seconds or None
    steps = getattr(args, "checkpoint_every", None)
    if steps is not None:
        if steps < 1:
            raise UsageError(f"--checkpoint-every-steps must be >= 1, got {steps}")
        options["checkpoint_every"] = steps
    return options


def train_config(args, default, names=TRAIN_FLAGS):
    """The task's default TrainConfig with the given flags and limits applied."""
    import dataclasses

    changes = {n: getattr(args, n) for n in (*names, "seed") if hasattr(args, n)}
    changes.update(checkpoint_options(args))
    if "clip_norm" in changes:
        changes["clip_norm"] = changes["clip_norm"] or None
    limits = limits_from_args(args)
    if limits:  # given limits replace the default ones (and the default's minimum of steps)
        changes.update({k: None for k in LIMITS}, min_steps=None, **limits)
    try:
        return dataclasses.replace(default, **changes)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def add_command_tail(group, task: str, *, resume: bool = True) -> None:
    """What every training command ends with: --out, --force, --resume, --seed, --threads,
    --progress, --json."""
    group.add_argument("--out", metavar="DIR", help=f"run directory (default runs/{task})")
    group.add_argument("--force", action="store_true", help="replace an existing run at --out")
    if resume:
        group.add_argument(
            "--resume",
            metavar="RUN_DIR",
            help="continue this run from its last checkpoint with its own settings (raise "
            "--steps, --epochs or --time-budget to extend it; other options that differ from "
            "the run's are refused unless --override)",
        )
        group.add_argument(
            "--override",
            action="store_true",
            help="with --resume: apply training options that differ from the run's (changes "
            "its trajectory; the model and data stay the run's)",
        )
    group.add_argument("--seed", type=int, metavar="N", default=0, help="random seed (default 0)")
    group.add_argument(
        "--checkpoint-every",
        dest="checkpoint_seconds",
        type=float,
        metavar="SECONDS",
        help="also checkpoint after this many seconds since the last checkpoint, so a kill "
        "loses minutes, not an epoch (0: off; default 300)",
    )
    group.add_argument(
        "--checkpoint-every-steps",
        dest="checkpoint_every",
        type=int,
        metavar="N",
        help="also checkpoint every N steps (default: at evaluations only)",
    )
    add_threads_flag(group)
    add_device_flag(group)
    group.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="32",
        help="32 (float32), bf16 or 16 (float16 with a gradient scaler; CUDA only) (default 32)",
    )
    group.add_argument(
        "--nproc",
        type=int,
        metavar="N",
        default=1,
        help="data-parallel processes on this machine, launched with torchrun; --batch-size "
        "is the global batch (default 1)",
    )
    group.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="progress bar on stderr (default on)",
    )
    add_json_flag(group)


def add_threads_flag(group) -> None:
    group.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch CPU threads (default: torch's, one per core)",
    )


PRECISIONS = ("32", "bf16", "16")


def add_device_flag(group) -> None:
    group.add_argument(
        "--device",
        default="auto",
        metavar="DEVICE",
        help="auto (CUDA if available, else CPU), cpu, cuda, cuda:N or mps (default auto)",
    )


def add_trust_flag(group) -> None:
    group.add_argument(
        "--trust",
        action="store_true",
        help="load weights that carry no rnnkit checksum (written elsewhere or edited); "
        "safetensors never runs code, but only trust files you know",
    )


def add_json_flag(group) -> None:
    group.add_argument(
        "--json", action="store_true", help="print one JSON object on stdout and nothing else"
    )


def set_threads(threads: int | None) -> None:
    """``--threads``: torch's intra-op CPU threads (None keeps torch's choice)."""
    if threads is None:
        return
    if threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


STOP_REASONS = {
    "steps": "--steps reached",
    "epochs": "--epochs reached",
    "time_budget": "time budget reached",
    "early_stopping": "early stopping",
    "interrupted": "interrupted",
}


def run_training(args, task: str, make_run) -> int:
    """The shared tail of ``rnnkit train <task>``: threads, callbacks, --resume or a fresh run
    (``make_run()`` -> ``(data, model, train)`` configs), then the summary or ``--json``.

    Returns the exit code: 0, or 128 + the signal when interrupted (130 Ctrl-C, 143 SIGTERM,
    129 SIGHUP; the run keeps its checkpoint).
    """

    from rnnkit import runs
    from rnnkit.train import ProgressBar, TensorBoard

    check_resume(args)
    if args.nproc < 1:
        raise UsageError(f"--nproc must be >= 1, got {args.nproc}")
    if args.nproc > 1:
        return _relaunch(args)
    set_threads(args.threads)
    callbacks = [ProgressBar()] if args.progress else []
    if TensorBoard.available():
        callbacks.append(TensorBoard())
    spec = runs.task_spec(task)
    if args.resume:
        if args.out is not None:
            raise UsageError("--resume writes into the run it continues; drop --out")
        changes, fixed = _resume_changes(args, args.resume)
        if fixed:
            raise UsageError(
                f"--resume {args.resume} keeps the run's model and data; these options differ "
                f"from the run's: {'; '.join(fixed)}; drop them"
            )
        done = runs.resume_run(
            args.resume,
            limits={**limits_from_args(args), **checkpoint_options(args)},
            callbacks=callbacks,
            task=task,
            device=args.device,
            precision=args.precision,
            changes=changes,
            override=args.override,
        )
    else:
        data, model, train = make_run()
        done = runs.train_run(
            spec,
            args.out or f"runs/{task}",
            data=data,
            model=model,
            train=train,
            force=args.force,
            callbacks=callbacks,
            device=args.device,
            precision=args.precision,
        )
    from rnnkit import distributed

    if not distributed.is_main():
        return 0  # rank 0 prints
    r = done.result
    if args.json:
        from rnnkit.io import json_line

        print(json_line(done.to_dict()))
    else:
        why = STOP_REASONS.get(r.stop_reason, r.stop_reason)
        if done.note:
            print(done.note)
        print(
            f"trained {r.step:,} steps in {r.elapsed:.0f} s ({why}), "
            f"{r.tokens_per_second:,.0f} {spec.throughput_unit}/s"
        )
        if r.stop_reason == "early_stopping":
            print(
                f"stopped: early_stopping after {r.bad_evals} evaluations without improvement; "
                f"best step {r.best_step}"
            )
        elif r.best_step is not None and r.best_step != r.step:
            print(f"weights of step {r.best_step} (best validation loss)")
        summary = spec.format_metrics(r.metrics)
        if summary:
            print(summary)
        if done.report:
            print(spec.format_report(done.report))
        print(f"run saved in {done.run.path}")
    if r.stop_reason == "interrupted":
        print(
            f"interrupted; continue with: rnnkit train {task} --resume {done.run.path}",
            file=sys.stderr,
        )
        return 128 + (r.signal or 2)
    return 0


# Flags of the shared tail that --resume takes as they are (limits, checkpoint timing, where
# and how to run, output).
RESUME_FREE = {
    "resume", "override", "out", "force", "threads", "device", "precision", "nproc", "progress",
    "json", "checkpoint_seconds", "checkpoint_every", *LIMITS,
}  # fmt: skip


def _given_dests(args) -> list[str]:
    """The destinations of the flags given on the command line (``--x-y`` / ``--no-x-y``)."""
    dests = []
    for arg in getattr(args, "argv", []):
        if not arg.startswith("--") or arg == "--":
            continue
        dest = arg[2:].split("=", 1)[0].replace("-", "_")
        if not hasattr(args, dest) and dest.startswith("no_"):
            dest = dest[3:]
        if hasattr(args, dest) and dest not in dests:
            dests.append(dest)
    return dests


def _resume_changes(args, path) -> tuple[dict, list[str]]:
    """``(training changes, differences that cannot apply)`` of the flags given with
    ``--resume``: training options go to :func:`rnnkit.runs.resume_run` (refused there unless
    ``--override``); model and data options that differ from the run's are listed."""
    import dataclasses

    from rnnkit.io import RunDir
    from rnnkit.train import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    given = [d for d in _given_dests(args) if d not in RESUME_FREE]
    if not given:
        return {}, []
    run = RunDir.for_resume(path)
    config = run.read_config()
    changes, fixed = {}, []
    for dest in given:
        value = getattr(args, dest)
        if dest in names:
            changes[dest] = value or None if dest == "clip_norm" else value
            continue
        recorded = _recorded(config, dest)
        if recorded is _MISSING:
            fixed.append(f"--{dest.replace('_', '-')} (not an option of the run)")
        elif not _same_value(recorded, value):
            fixed.append(f"{dest}: run {recorded!r}, given {value!r}")
    return changes, fixed


_MISSING = object()


def _recorded(config: dict, dest: str):
    for part in ("model", "data"):
        section = config.get(part)
        if isinstance(section, dict):
            if dest in section:
                return section[dest]
            options = section.get("layer_options")
            if isinstance(options, dict) and dest in options:
                return options[dest]
    return _MISSING


def _same_value(recorded, value) -> bool:
    if recorded == value:
        return True
    if isinstance(recorded, list | tuple) and isinstance(value, list | tuple):
        return list(recorded) == list(value)
    if isinstance(recorded, str) and isinstance(value, str):  # the same file named otherwise
        import os

        try:
            return os.path.samefile(recorded, value)
        except OSError:
            return False
    return False


def _relaunch(args) -> int:
    """``--nproc N``: the same command in N processes under PyTorch's launcher (torchrun)."""
    from rnnkit import distributed

    if distributed.launched_by_torchrun():
        raise UsageError("--nproc inside a torchrun job: torchrun already started the processes")
    batch_size = getattr(args, "batch_size", None)
    if not args.resume and batch_size and batch_size % args.nproc:
        raise UsageError(
            f"--batch-size {batch_size} (the global batch) must divide by --nproc {args.nproc}"
        )
    argv, skip = [], False
    for arg in args.argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            argv.append(arg)
    import signal

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    # The launcher installs its own signal handlers in this process; put ours back afterwards.
    names = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")
    saved = {
        s: signal.getsignal(s) for s in (getattr(signal, n) for n in names if hasattr(signal, n))
    }
    try:
        torchrun(["--standalone", f"--nproc-per-node={args.nproc}", "-m", "rnnkit", *argv])
    except ChildFailedError as exc:
        failures = "; ".join(f"rank {r}: exit {f.exitcode}" for r, f in exc.failures.items())
        print(f"error: a worker failed ({failures}); the run keeps its last checkpoint",
              file=sys.stderr)  # fmt: skip
        return 1
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)
    return 0
