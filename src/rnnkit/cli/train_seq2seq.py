"""``rnnkit train seq2seq``: train an encoder-decoder with attention on SOURCE<TAB>TARGET pairs."""

from __future__ import annotations

import argparse
import json
import sys

from rnnkit.cli.main import UsageError
from rnnkit.cli.options import (
    CELLS,
    add_layer_options,
    add_optimisation_options,
    add_run_options,
    add_stopping_options,
    check_non_negative,
    check_positive,
    check_training_options,
    train_config_from_args,
)


def register(subparsers) -> None:
    from rnnkit.tasks.seq2seq import DEFAULT_EPOCHS

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
            f"--time-budget, --epochs, --steps (default: --epochs {DEFAULT_EPOCHS})."
        ),
        epilog=(
            "examples:\n"
            "  rnnkit data dates --n 20000 --seed 0 > dates.tsv\n"
            "  rnnkit train seq2seq --pairs dates.tsv --out runs/dates\n"
            "  rnnkit train seq2seq --pairs dates.tsv --attention none --out runs/dates-plain\n"
            '  rnnkit translate runs/dates --text "7 mars 2021" --beam 5'
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument("--pairs", required=True, metavar="FILE", help="SOURCE<TAB>TARGET lines")
    data.add_argument("--test", metavar="FILE", help="test pairs (default: hold out a fraction)")
    data.add_argument(
        "--val-fraction", type=float, default=0.05, help="held out for validation (default 0.05)"
    )
    data.add_argument(
        "--test-fraction", type=float, default=0.1, help="held out for testing (default 0.1)"
    )
    data.add_argument("--batch-size", type=int, default=64, help="pairs per batch (default 64)")

    model = parser.add_argument_group("model")
    model.add_argument(
        "--encoder-cell",
        choices=CELLS,
        default="lstm",
        help="encoder cell (default lstm)",
    )
    model.add_argument(
        "--decoder-cell",
        choices=("lstm", "gru"),
        default="lstm",
        help="decoder cell (default lstm)",
    )
    model.add_argument(
        "--attention",
        choices=("general", "dot", "additive", "none"),
        default="general",
        help="Luong general/dot, Bahdanau additive, or none (default general)",
    )
    model.add_argument("--embedding-size", type=int, default=64, help="default 64")
    model.add_argument(
        "--hidden-size", type=int, default=128, help="encoder, per direction (default 128)"
    )
    model.add_argument(
        "--decoder-hidden-size",
        type=int,
        help="default: the encoder's output size (2 x --hidden-size when bidirectional)",
    )
    model.add_argument("--encoder-layers", type=int, default=1, help="default 1")
    model.add_argument("--decoder-layers", type=int, default=1, help="default 1")
    model.add_argument(
        "--bidirectional",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="bidirectional encoder (default on)",
    )
    model.add_argument("--dropout", type=float, default=0.0, help="default 0")
    model.add_argument(
        "--scheduled-sampling",
        type=float,
        default=0.0,
        metavar="P",
        help="feed the model's own previous prediction with probability P (default 0)",
    )
    model.add_argument(
        "--max-length",
        type=int,
        help="longest output when decoding (default: longest training target + 10)",
    )
    model.add_argument(
        "--length-penalty",
        type=float,
        default=1.0,
        help="beam search ranks by log p / length^ALPHA (default 1.0)",
    )
    model.add_argument(
        "--beam",
        type=int,
        default=1,
        help="also test with beam search of this width (default 1: greedy only)",
    )
    add_layer_options(
        model,
        ("backend", "init"),
        help={
            "backend": "how the encoder runs (default auto)",
            "init": "encoder initialiser name: rnnkit, torch, ...",
        },
    )
    add_optimisation_options(parser.add_argument_group("optimisation"), lr=3e-3, clip_norm=1.0)
    add_stopping_options(
        parser.add_argument_group("length of training and evaluation"),
        what="passes over the training pairs",
        eval_every=500,
        eval_help="validate (greedy decoding) and checkpoint every N steps (default 500)",
    )
    add_run_options(
        parser.add_argument_group("run"),
        default_out="runs/seq2seq",
        seed_help="random seed of the split and the training (default 0)",
        json_help="print the test metrics as one JSON object on stdout",
    )
    parser.set_defaults(func=run)


def _check(args) -> None:
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
    check_training_options(args)
    check_non_negative(args, "--length-penalty")
    if not 0 <= args.dropout < 1:
        raise UsageError(f"--dropout must be in [0, 1), got {args.dropout}")
    if not 0 <= args.scheduled_sampling <= 1:
        raise UsageError(f"--scheduled-sampling must be in [0, 1], got {args.scheduled_sampling}")
    for flag in ("--val-fraction", "--test-fraction"):
        value = getattr(args, flag[2:].replace("-", "_"))
        if not 0 <= value < 1:
            raise UsageError(f"{flag} must be in [0, 1), got {value}")
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
    from rnnkit.tasks.seq2seq import DEFAULT_EPOCHS, PairData, train_seq2seq
    from rnnkit.train import ProgressBar

    _check(args)
    model = {
        "embedding_size": args.embedding_size,
        "encoder_cell": args.encoder_cell,
        "hidden_size": args.hidden_size,
        "encoder_layers": args.encoder_layers,
        "bidirectional": args.bidirectional,
        "decoder_cell": args.decoder_cell,
        "decoder_hidden_size": args.decoder_hidden_size,
        "decoder_layers": args.decoder_layers,
        "attention": args.attention,
        "dropout": args.dropout,
        "scheduled_sampling": args.scheduled_sampling,
        "length_penalty": args.length_penalty,
        "encoder_options": {k: getattr(args, k) for k in ("backend", "init") if getattr(args, k)},
    }
    data = PairData(
        pairs=args.pairs,
        test=args.test,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        batch_size=args.batch_size,
        max_length=args.max_length,
    )
    config = train_config_from_args(args, {"epochs": DEFAULT_EPOCHS})
    callbacks = [ProgressBar(unit_name="char")] if args.progress else []
    result, run_dir, test = train_seq2seq(
        args.out,
        data=data,
        model=model,
        train=config,
        beam=args.beam,
        force=args.force,
        callbacks=callbacks,
    )
    if args.json:
        payload = {
            "run": str(run_dir.path),
            "stop_reason": result.stop_reason,
            "steps": result.step,
            "elapsed": result.elapsed,
            "test": test,
        }
        print(json.dumps(payload, ensure_ascii=False))
        return 130 if result.stop_reason == "interrupted" else 0
    m = result.metrics
    line = (
        f"{result.stop_reason} after {result.step} steps ({result.epoch} epochs), "
        f"{result.elapsed:.0f} s ({result.tokens_per_second:,.0f} chars/s training)"
    )
    if "val_exact_match" in m:
        line += f"; validation exact match {m['val_exact_match']:.4f}"
    print(line)
    if test is not None:
        print(
            f"test ({test['pairs']:,} pairs, greedy): exact match {test['exact_match']:.4f}, "
            f"character accuracy {test['char_accuracy']:.4f}, BLEU {test['bleu']:.4f}"
        )
        if "beam" in test:
            b = test["beam"]
            print(
                f"test (beam {b['beam']}): exact match {b['exact_match']:.4f}, character "
                f"accuracy {b['char_accuracy']:.4f}, BLEU {b['bleu']:.4f}"
            )
    print(f"run saved in {run_dir.path}")
    if result.stop_reason == "interrupted":
        print("interrupted: the run holds the last checkpoint", file=sys.stderr)
        return 130
    return 0
