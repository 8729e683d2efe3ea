"""``rnnkit data <generator>``: write a demo data set to stdout.

Each generator is a subcommand registered from :data:`GENERATORS`: a name mapped to a function
``register(subparsers)`` that adds its parser with ``func=run``. Add a generator by adding an
entry (or a module ``rnnkit.cli.data_<name>`` with ``register``, listed in ``MODULES``).

``rnnkit data dates --n N --seed S > pairs.tsv`` writes N pairs ``human date<TAB>ISO date`` in
the date formats of eight locales (see :mod:`rnnkit.data.dates`).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from rnnkit.cli.main import UsageError


def register_dates(subparsers) -> None:
    from rnnkit.data.dates import FIRST_DATE, LAST_DATE, LOCALES

    parser = subparsers.add_parser(
        "dates",
        help="dates in 8 locales' formats -> ISO 8601 (seq2seq pairs, TSV)",
        description=(
            "Write N distinct pairs 'human-written date<TAB>YYYY-MM-DD', one per line, for "
            "`rnnkit train seq2seq --pairs`. Dates are uniform in "
            f"{FIRST_DATE}..{LAST_DATE}; formats are the CLDR short/medium/long/full date "
            f"formats (via babel) of {', '.join(LOCALES)}, except those with two-digit years or "
            "a numeric month before the day, so every source has one reading."
        ),
        epilog="example:\n  rnnkit data dates --n 20000 --seed 0 > dates.tsv",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--n", type=int, default=20000, help="number of pairs (default 20000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.set_defaults(func=run_dates)


def run_dates(args) -> int:
    from rnnkit.data.dates import generate_dates

    if args.n < 1:
        raise UsageError(f"--n must be >= 1, got {args.n}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    pairs = generate_dates(args.n, args.seed)
    sys.stdout.write("".join(f"{source}\t{target}\n" for source, target in pairs))
    sys.stdout.flush()
    return 0


GENERATORS = {"dates": register_dates}
MODULES: list[str] = []  # generators living in rnnkit.cli.data_<name>


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "data",
        help="write a demo data set to stdout (dates)",
        description="Generate demo data sets; each generator is a subcommand.",
    )
    parser.set_defaults(func=None, _parser=parser)
    generators = parser.add_subparsers(dest="generator", metavar="GENERATOR")
    for register_generator in GENERATORS.values():
        register_generator(generators)
    for name in MODULES:
        importlib.import_module(f"rnnkit.cli.data_{name}").register(generators)
