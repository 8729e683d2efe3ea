"""``rnnkit predict RUN_DIR``: class labels and probabilities from a trained classifier."""

from __future__ import annotations

import argparse
import json

from rnnkit.cli.main import UsageError


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
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object on stdout and nothing else"
    )
    parser.set_defaults(func=run)


def _inputs(args, loaded) -> tuple[list, list[str]]:
    """Items to classify and a short description of each."""
    from rnnkit.data.textclass import read_text_csv
    from rnnkit.data.ts import read_ts
    from rnnkit.errors import InvalidInputError
    from rnnkit.tasks.classify import _check_dimensions

    if (args.text is not None or args.csv) and loaded.kind != "text":
        raise UsageError(f"{loaded.run.path} classifies .ts series; pass --ts FILE")
    if args.ts and loaded.kind != "series":
        raise UsageError(f"{loaded.run.path} classifies text; pass --text or --csv")
    if args.text is not None:
        if any(not t.strip() for t in args.text):
            raise UsageError("--text is empty; pass the text to classify")
        return args.text, [_short(t) for t in args.text]
    if args.csv:
        column = args.text_column or loaded.config.get("data", {}).get("text_column", "text")
        examples = read_text_csv(args.csv, column, label_column=None)
        return examples.texts, [_short(t) for t in examples.texts]
    ts = read_ts(args.ts, labelled=True)
    _check_dimensions(loaded, ts.dimensions, args.ts)
    if not ts.series:
        raise InvalidInputError(f"{args.ts}: no cases")
    return ts.series, [f"case {i + 1}" for i in range(len(ts.series))]


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def run(args) -> int:
    from rnnkit.tasks.classify import load_classifier

    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.top_k is not None and args.top_k < 1:
        raise UsageError(f"--top-k must be >= 1, got {args.top_k}")
    if args.text_column and not args.csv:
        raise UsageError("--text-column applies to --csv only")
    loaded = load_classifier(args.run_dir)
    items, names = _inputs(args, loaded)
    predictions = loaded.predict(items, batch_size=args.batch_size)
    if args.json:
        print(json.dumps({"predictions": predictions}, ensure_ascii=False))
        return 0
    for name, p in zip(names, predictions):
        ranked = sorted(p["probabilities"].items(), key=lambda kv: -kv[1])
        shown = ranked[: args.top_k] if args.top_k else ranked[:1]
        labels = "  ".join(f"{label} {prob:.3f}" for label, prob in shown)
        print(f"{labels}\t{name}")
    return 0
