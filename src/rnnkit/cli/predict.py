"""``rnnkit predict RUN_DIR``: class labels and probabilities from a trained classifier."""

from __future__ import annotations

import argparse

from rnnkit.cli.main import UsageError
from rnnkit.cli.options import add_device_flag, add_json_flag, add_trust_flag


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="classify text or series with a trained classifier",
        description=(
            "Predict the class of each input with a run of `rnnkit train classify`: a text "
            "(--text, repeatable), every row of a CSV file (--csv, the run's text column), or "
            "every case of a .ts file (--ts; labels in the file are ignored). Prints one line "
            "per input: the label, its probability, and the input's beginning; with --json one "
            "object {predictions: [{label, probabilities}]}."
        ),
        epilog=(
            "examples:\n"
            '  rnnkit predict runs/rt --text "a gorgeous, witty, seductive movie."\n'
            "  rnnkit predict runs/rt --csv new_reviews.csv --json\n"
            "  rnnkit predict runs/jv --ts JapaneseVowels_TEST.ts"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory of a classifier")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", action="append", help="a text to classify (repeatable)")
    source.add_argument("--csv", metavar="FILE", help="CSV file with the run's text column")
    source.add_argument("--ts", metavar="FILE", help=".ts file of series (labels ignored)")
    parser.add_argument("--text-column", help="CSV text column (default: the run's)")
    parser.add_argument("--top-k", type=int, help="text output: show the K most probable classes")
    parser.add_argument("--batch-size", type=int, default=64, help="default 64")
    add_json_flag(parser)
    add_trust_flag(parser)
    add_device_flag(parser)
    parser.set_defaults(func=run)


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def run(args) -> int:
    from rnnkit import runs
    from rnnkit.tasks.classify import read_unlabelled

    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.top_k is not None and args.top_k < 1:
        raise UsageError(f"--top-k must be >= 1, got {args.top_k}")
    if args.text_column and not args.csv:
        raise UsageError("--text-column applies to --csv only")
    model = runs.load(args.run_dir, task="classify", trust=args.trust, device=args.device)
    items = read_unlabelled(
        model.loaded, texts=args.text, csv=args.csv, text_column=args.text_column, ts=args.ts
    )
    predictions = model.predict(items, batch_size=args.batch_size)
    if args.json:
        from rnnkit.io import json_line

        print(json_line({"predictions": predictions}))
        return 0
    names = [f"case {i + 1}" for i in range(len(items))] if args.ts else map(_short, items)
    for name, p in zip(names, predictions):
        ranked = sorted(p["probabilities"].items(), key=lambda kv: -kv[1])
        shown = ranked[: args.top_k] if args.top_k else ranked[:1]
        labels = "  ".join(f"{label} {prob:.3f}" for label, prob in shown)
        print(f"{labels}\t{name}")
    return 0
