"""``rnnkit forecast RUN_DIR --csv recent.csv``: forecasts of a trained run, written as CSV."""

from __future__ import annotations

import argparse
import sys

from rnnkit.cli.options import add_device_flag, add_trust_flag
from rnnkit.errors import InvalidInputError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "forecast",
        help="forecast T+1..T+H from recent rows with a trained forecasting run",
        description=(
            "Read recent rows (same columns as in training, at least --window rows; one more "
            "for diff/logret runs), forecast T+1..T+H from the last row in the target's "
            "original units, and write a CSV: origin, h, forecast (and actual with --all)."
        ),
        epilog=(
            "examples:\n"
            "  rnnkit forecast runs/co2 --csv recent.csv\n"
            "  rnnkit forecast runs/co2 --csv recent.csv --all --out forecasts.csv "
            "--plot forecasts.png"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a forecasting run directory")
    parser.add_argument("--csv", metavar="FILE", required=True, help="recent rows as CSV")
    parser.add_argument(
        "--all",
        action="store_true",
        help="forecast from every row with a full window, with the actual values where known",
    )
    parser.add_argument("--out", metavar="FILE", help="write the CSV here (default: stdout)")
    parser.add_argument("--plot", metavar="PNG", help="also draw forecasts against actuals")
    parser.add_argument("--force", action="store_true", help="replace existing --out/--plot")
    add_trust_flag(parser)
    add_device_flag(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from rnnkit import runs
    from rnnkit.cli.outputs import check_new_file, writing
    from rnnkit.io import atomic_write_text
    from rnnkit.tasks.forecaster import plot_recent

    for flag, value in (("--out", args.out), ("--plot", args.plot)):
        check_new_file(flag, value, force=args.force)
    if args.plot and not args.all:
        raise InvalidInputError("--plot draws forecasts against actuals; add --all")
    model = runs.load(args.run_dir, task="forecast", trust=args.trust, device=args.device)
    loaded = model.loaded
    table = model.forecast(args.csv, every_origin=args.all)
    text = table.to_csv(index=False, float_format="%.6g")
    if args.plot:
        with writing(args.plot):
            plot_recent(loaded, args.csv, args.plot)
    if args.out:
        with writing(args.out):
            atomic_write_text(args.out, text)
        print(f"{len(table)} forecasts written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
