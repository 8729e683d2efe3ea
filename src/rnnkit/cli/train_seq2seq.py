"""``rnnkit train seq2seq``: train an encoder-decoder with attention on SOURCE<TAB>TARGET pairs."""

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
    check_non_negative,
    check_positive,
    check_training_options,
    config_from_args,
    layer_options_from_args,
    run_training,
    train_config,
)

ENCODER_OPTIONS = ("backend", "init", "residual")


def register(subparsers) -> None:
    from rnnkit.tasks.seq2seq import DEFAULT_EPOCHS, SPEC, PairData, Seq2SeqConfig

    parser = subparsers.add_parser(
        "seq2seq",
        help="sequence to sequence with attention (character level)",
        description=(
            "Train an encoder-decoder on a UTF-8 file of SOURCE<TAB>TARGET lines, character by "
            "character: the encoder (any cell, bidirectional by default) reads the source, its "
            "final states start the decoder (LSTM or GRU), which writes the target after <S> "
            "until <E>, fed the true previous character (teacher forcing; --scheduled-sampling "
            "feeds its own predictions with that probability) and attending to the source. "
            "A seeded random --test-fraction of the pairs is held out for testing (unless "
            "--test) and --val-fraction for validation. Writes config.json, vocab.json, "
            "split.json, model.safetensors, metrics.jsonl, test_metrics.json (exact match, "
            "character accuracy, BLEU), attention.png, trainer_state/. Stops at the first of "
            f"--time-budget, --epochs, --steps (default: --epochs {DEFAULT_EPOCHS}). "
            "Ctrl-C saves a checkpoint; --resume continues exactly where it stopped."
        ),
        epilog=(
            "examples:\n"
            "  rnnkit data dates --n 20000 --seed 0 > dates.tsv\n"
            "  rnnkit train seq2seq --pairs dates.tsv --out runs/dates\n"
            "  rnnkit train seq2seq --pairs dates.tsv --attention none --out runs/dates-plain\n"
            "  rnnkit train seq2seq --resume runs/dates --epochs 5\n"
            '  rnnkit translate runs/dates --text "7 mars 2021" --beam 5'
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_flags(parser.add_argument_group("data and testing"), PairData)
    model = parser.add_argument_group("model")
    add_config_flags(model, Seq2SeqConfig, choices={"encoder_cell": cell_names()})
    add_layer_options(
        model,
        ENCODER_OPTIONS,
        help={
            "backend": "how the encoder runs (default auto)",
            "init": "encoder initialiser name: rnnkit, torch, ...",
            "residual": "residual encoder stack: each layer from the second adds its input",
        },
    )
    default = SPEC.default_train()
    add_train_flags(
        parser.add_argument_group("optimisation"),
        BASIC_TRAIN_FLAGS,
        defaults=default,
    )
    add_limit_flags(
        parser.add_argument_group("length of training"),
        epochs_help="passes over the training pairs",
    )
    add_command_tail(parser.add_argument_group("run"), "seq2seq")
    parser.set_defaults(func=run)


def _check(args) -> None:
    if args.resume:
        return  # the run's own settings apply
    if args.pairs is None:
        raise UsageError("--pairs FILE is required (SOURCE<TAB>TARGET lines), unless --resume")
    check_positive(
        args,
        "--batch-size",
        "--embedding-size",
        "--hidden-size",
        "--decoder-hidden-size",
        "--encoder-layers",
        "--decoder-layers",
        "--max-length",
        "--beam",
    )
    check_non_negative(args, "--length-penalty")
    if not 0 <= args.dropout < 1:
        raise UsageError(f"--dropout must be in [0, 1), got {args.dropout}")
    if not 0 <= args.scheduled_sampling <= 1:
        raise UsageError(f"--scheduled-sampling must be in [0, 1], got {args.scheduled_sampling}")
    for name in ("--val-fraction", "--test-fraction"):
        value = getattr(args, name[2:].replace("-", "_"))
        if not 0 <= value < 1:
            raise UsageError(f"{name} must be in [0, 1), got {value}")
    if args.val_fraction + (0 if args.test else args.test_fraction) >= 1:
        raise UsageError("--val-fraction plus --test-fraction must be < 1")
    if args.attention == "dot":
        encoder_out = args.hidden_size * (2 if args.bidirectional else 1)
        if args.decoder_hidden_size not in (None, encoder_out):
            raise UsageError(
                f"--attention dot needs --decoder-hidden-size equal to the encoder's output size "
                f"({encoder_out}); use --attention general or drop --decoder-hidden-size"
            )


def run(args) -> int:
    from rnnkit.tasks.seq2seq import SPEC, PairData, Seq2SeqConfig

    check_training_options(args)
    _check(args)

    def make_run():
        data = config_from_args(PairData, args)
        encoder_options = layer_options_from_args(args, ENCODER_OPTIONS)
        model = config_from_args(Seq2SeqConfig, args, encoder_options=encoder_options)
        return data, model, train_config(args, SPEC.default_train(), BASIC_TRAIN_FLAGS)

    return run_training(args, "seq2seq", make_run)
