"""``rnnkit train classify``: sequence classification of CSV text or ``.ts`` series."""

from __future__ import annotations

import argparse
import dataclasses

from rnnkit.cli.main import UsageError
from rnnkit.cli.options import (
    TRAIN_FLAGS,
    add_command_tail,
    add_config_flags,
    add_layer_options,
    add_limit_flags,
    add_train_flags,
    cell_names,
    check_cell_options,
    check_non_negative,
    check_positive,
    check_probability,
    check_training_options,
    config_from_args,
    layer_options_from_args,
    run_training,
    train_config,
)

# Data fields with flags of their own (names or actions that differ from the field's).
DATA_FLAGS = ("csv", "test_csv", "text_column", "label_column", "lowercase", "min_freq",
              "max_length", "embeddings", "ts_train", "ts_test", "val_fraction", "test_fraction",
              "batch_size", "class_weights")  # fmt: skip
STEP_FLAGS = tuple(f for f in TRAIN_FLAGS if f != "eval_every")


def _default(cls, name: str):
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def register(subparsers) -> None:
    from rnnkit.tasks.classify import (
        BUILTIN_DATASETS,
        SPEC,
        ClassifyData,
        ClassifyModel,
    )

    default = SPEC.default_train()
    parser = subparsers.add_parser(
        "classify",
        help="sequence classification of CSV text or .ts series",
        description=(
            "Train a sequence classifier:\n"
            "  (embedding | numeric input) -> optional strided Conv1d -> recurrent layers\n"
            "  -> pooling (last, mean, max, attention) -> linear.\n"
            "Text comes from a CSV file (--csv, --text-column, --label-column), series from\n"
            "UEA/UCR .ts files (--ts-train, --ts-test), or a built-in --dataset. Without a test\n"
            "file a seeded random --test-fraction is the test split; --val-fraction of the rest\n"
            "validates. Writes a run directory (config.json, encoders.json, split.json,\n"
            "model.safetensors, metrics.jsonl, trainer_state/) and at the end the test split's\n"
            "accuracy, macro-F1 and confusion matrix (test_metrics.json, confusion_test.png).\n"
            f"Default length: --epochs {default.epochs} but at least {default.min_steps} steps, "
            "evaluated once per epoch (at least every 25 steps).\n"
            "Ctrl-C saves a checkpoint; --resume continues exactly where it stopped."
        ),
        epilog=(
            "examples (the figures in the README):\n"
            "  rnnkit train classify --dataset rotten-tomatoes --embedding-size 256 --epochs 5 "
            "--out runs/rt\n"
            "  rnnkit train classify --dataset japanese-vowels --out runs/jv\n"
            "  rnnkit train classify --dataset basic-motions --epochs 60 --batch-size 8 "
            "--val-fraction 0 --conv-frontend 32 --conv-kernel-size 5 --conv-stride 2 "
            "--out runs/bm\n"
            "your data:\n"
            "  rnnkit train classify --csv reviews.csv --text-column review --label-column "
            "stars --class-weights --out runs/reviews\n"
            "  rnnkit train classify --ts-train X_TRAIN.ts --ts-test X_TEST.ts --out runs/x\n"
            "  rnnkit train classify --resume runs/x --epochs 20\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset",
        choices=BUILTIN_DATASETS,
        help="a dataset shipped in an installed package (see DATASETS.md)",
    )
    add_config_flags(data, ClassifyData, DATA_FLAGS)
    data.add_argument(
        "--skip-label",
        action="append",
        default=[],
        metavar="LABEL",
        help="drop rows with this label (repeatable)",
    )
    data.add_argument(
        "--tokens",
        choices=("word", "char"),
        default=_default(ClassifyData, "level"),
        help=f"tokenise text by words or characters (default {_default(ClassifyData, 'level')})",
    )
    model = parser.add_argument_group("model")
    add_config_flags(model, ClassifyModel, choices={"cell": cell_names()})
    model.add_argument(
        "--conv-frontend",
        type=int,
        default=_default(ClassifyModel, "conv_channels"),
        metavar="CHANNELS",
        help="Conv1d+ReLU with this many channels before the RNN (0: off; default: 32 for "
        "series longer than 128 steps, with a stride that brings them to at most 128, else off)",
    )
    variants = parser.add_argument_group("cell variants and regularisers (rnnkit layers)")
    add_layer_options(variants)
    optimisation = parser.add_argument_group("optimisation")
    add_train_flags(optimisation, STEP_FLAGS, defaults=default.to_dict())
    stop = parser.add_argument_group("length of training and evaluation")
    add_limit_flags(
        stop,
        epochs_help=f"passes over the training split (default {default.epochs} when no limit "
        "is given)",
    )
    stop.add_argument(
        "--eval-every",
        type=int,
        metavar="N",
        default=default.eval_every,
        help="evaluate and checkpoint every N steps (default: once per epoch)",
    )
    add_command_tail(parser.add_argument_group("run"), "classify")
    parser.set_defaults(func=run)


def _check(args) -> None:
    check_positive(
        args,
        "--batch-size",
        "--min-freq",
        "--max-length",
        "--embedding-size",
        "--hidden-size",
        "--num-layers",
        "--conv-kernel-size",
        "--conv-stride",
        "--step-size",
        "--gamma",
        "--plateau-patience",
        "--clip-value",
    )
    check_training_options(args)
    check_non_negative(args, "--conv-frontend")
    check_probability(
        args,
        "--val-fraction",
        "--test-fraction",
        "--dropout",
        "--input-dropout",
        "--output-dropout",
        "--token-dropout",
        "--variational-dropout",
        "--weight-drop",
        "--zoneout",
    )
    if (args.val_fraction or 0.0) + args.test_fraction >= 1:
        raise UsageError("--val-fraction + --test-fraction must be < 1")
    check_cell_options(args, args.cell)


def _data(args):
    """The data config: a built-in --dataset, --csv text or --ts-train series."""
    from rnnkit.tasks.classify import ClassifyData, builtin_dataset

    sources = [f for f in ("dataset", "csv", "ts_train") if getattr(args, f)]
    if len(sources) != 1:
        raise UsageError("give exactly one of --dataset, --csv FILE and --ts-train FILE")
    fixed = builtin_dataset(args.dataset) if args.dataset else {}
    text = "csv" in fixed or bool(args.csv)
    if not text:
        for name in ("test_csv", "embeddings"):
            if getattr(args, name):
                raise UsageError(f"--{name.replace('_', '-')} applies to CSV text input only")
    elif args.ts_test:
        raise UsageError("--ts-test applies to .ts input (--ts-train) only")
    if "skip_labels" not in fixed:
        fixed["skip_labels"] = args.skip_label
    return config_from_args(ClassifyData, args, level=args.tokens, **fixed)


def run(args) -> int:
    from rnnkit.tasks.classify import SPEC, ClassifyModel

    _check(args)

    def make_run():
        data = _data(args)
        model = config_from_args(
            ClassifyModel,
            args,
            conv_channels=args.conv_frontend,
            layer_options=layer_options_from_args(args),
        )
        train = train_config(args, SPEC.default_train(), (*STEP_FLAGS, "eval_every"))
        return data, model, train

    return run_training(args, "classify", make_run)
