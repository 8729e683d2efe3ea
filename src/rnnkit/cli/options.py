"""Option groups and argument checks shared by the ``rnnkit train <task>`` commands.

Each ``add_*`` function adds one group of flags to an argparse parser or argument group;
per-task defaults and help wording are arguments, so every command keeps its own. The
``*_from_args`` functions turn the parsed flags into library objects, and the ``check_*``
functions raise :class:`~rnnkit.cli.main.UsageError` (``error: <msg>``, exit 2) naming the flag.

Example::

    opt = parser.add_argument_group("optimisation")
    add_optimisation_options(opt, lr=2e-3, clip_norm=1.0)
    ...
    config = train_config_from_args(args, default_limits={"epochs": 10})
"""

from __future__ import annotations

import argparse
import math

from rnnkit.cli.main import UsageError

CELLS = ("lstm", "gru", "rnn", "irnn")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step", "plateau")
BACKENDS = ("auto", "native", "fused", "reference")
LIMITS = ("steps", "epochs", "time_budget")

# Options that only one cell family takes (checked here so the message names the flag).
CELL_ONLY = {
    "peephole": "lstm",
    "coupled": "lstm",
    "layer_norm": "lstm",
    "proj_size": "lstm",
    "forget_bias": "lstm",
    "reset_after": "gru",
    "nonlinearity": "rnn",
}
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


def add_optimisation_options(
    group,
    *,
    lr: float,
    clip_norm: float,
    schedule: str = "cosine",
    optimizer: bool = True,
    warmup: bool = True,
) -> None:
    """--optimizer, --lr, --weight-decay, --clip-norm, --schedule, --warmup-steps.

    ``optimizer=False`` / ``warmup=False`` leave those flags out (the TrainConfig default holds).
    """
    if optimizer:
        group.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    group.add_argument(
        "--lr", type=float, default=lr, help=f"peak learning rate (default {_lr_text(lr)})"
    )
    group.add_argument("--weight-decay", type=float, default=0.0)
    group.add_argument(
        "--clip-norm",
        type=float,
        default=clip_norm,
        help=f"clip the global gradient norm (default {clip_norm:g}; 0 turns it off)",
    )
    group.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default=schedule,
        help=f"learning-rate schedule (default {schedule})",
    )
    if warmup:
        group.add_argument("--warmup-steps", type=int, default=0, help="linear warm-up steps")


def add_stopping_options(
    group,
    *,
    what: str,
    eval_help: str,
    eval_every: int | None = None,
    steps_help: str = "optimiser steps",
    early_help: str = "stop after this many validations without improvement",
) -> None:
    """--time-budget, --epochs (help ``what``), --steps, --eval-every, --early-stopping."""
    group.add_argument("--time-budget", type=float, metavar="SECONDS", help="wall-clock seconds")
    group.add_argument("--epochs", type=int, help=what)
    group.add_argument("--steps", type=int, help=steps_help)
    group.add_argument("--eval-every", type=int, default=eval_every, help=eval_help)
    group.add_argument("--early-stopping", type=int, metavar="EVALS", help=early_help)


def add_run_options(
    group,
    *,
    default_out: str,
    resume: bool = False,
    seed_help: str = "random seed (default 0)",
    threads_help: str | None = None,
    json_help: str | None = None,
) -> None:
    """--out, --force, [--resume], --seed, [--threads (default 1)], --progress, [--json].

    ``threads_help`` / ``json_help`` add those flags with that help.
    """
    group.add_argument("--out", default=default_out, help=f"run directory (default {default_out})")
    group.add_argument("--force", action="store_true", help="replace an existing run at --out")
    if resume:
        group.add_argument(
            "--resume",
            metavar="RUN_DIR",
            help="continue this run from its last checkpoint (limits may be raised)",
        )
    group.add_argument("--seed", type=int, default=0, help=seed_help)
    if threads_help is not None:
        group.add_argument("--threads", type=int, default=1, help=threads_help)
    group.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="progress bar on stderr (default on)",
    )
    if json_help is not None:
        group.add_argument("--json", action="store_true", help=json_help)


def check_positive(args, *flags: str) -> None:
    """Each given flag must be None or a finite number > 0."""
    for name in flags:
        value = getattr(args, _dest(name))
        if value is not None and (not math.isfinite(value) or value <= 0):
            raise UsageError(f"{name} must be > 0, got {value}")


def check_non_negative(args, *flags: str) -> None:
    """Each given flag must be a finite number >= 0."""
    for name in flags:
        value = getattr(args, _dest(name))
        if not math.isfinite(value) or value < 0:
            raise UsageError(f"{name} must be >= 0, got {value}")


def check_probability(args, *flags: str) -> None:
    """Each given flag must be None or in [0, 1)."""
    for name in flags:
        value = getattr(args, _dest(name))
        if value is not None and not 0 <= value < 1:
            raise UsageError(f"{name} must be in [0, 1), got {value}")


def check_training_options(args) -> None:
    """The optimisation, stopping and seed flags a command has: > 0 or >= 0 as they must be."""
    present = [f for f in ("--lr", "--eval-every", "--early-stopping") if hasattr(args, _dest(f))]
    check_positive(args, *present, "--time-budget", "--epochs", "--steps")
    check_non_negative(
        args,
        *[f for f in ("--weight-decay", "--warmup-steps") if hasattr(args, _dest(f))],
        "--seed",
        "--clip-norm",
    )


def check_cell_options(args, cell: str) -> None:
    """Refuse a cell-specific flag (e.g. --peephole) given with another --cell."""
    family = "rnn" if cell == "irnn" else cell
    for option, wanted in CELL_ONLY.items():
        if getattr(args, option, None) is not None and family != wanted:
            raise UsageError(f"{flag(option)} applies to --cell {wanted} only, got --cell {cell}")


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


def train_config_from_args(args, default_limits: dict):
    """A :class:`rnnkit.train.TrainConfig` from the optimisation, stopping and run flags.

    ``--clip-norm 0`` turns clipping off; no ``--eval-every`` means no evaluation on a step
    count (the command evaluates per epoch instead). Flags a command lacks (``--optimizer``,
    ``--warmup-steps``) keep the TrainConfig default. A rejected value is a UsageError.
    """
    from rnnkit.train import TrainConfig

    extra = {k: getattr(args, k) for k in ("optimizer", "warmup_steps") if hasattr(args, k)}
    try:
        return TrainConfig(
            lr=args.lr,
            weight_decay=args.weight_decay,
            clip_norm=args.clip_norm or None,
            schedule=args.schedule,
            eval_every=args.eval_every or 10**9,
            early_stopping=args.early_stopping,
            seed=args.seed,
            **extra,
            **limits_from_args(args, default_limits),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
