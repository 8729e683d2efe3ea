"""``rnnkit bench <kind>``: one module per benchmark, ``rnnkit.cli.bench_<kind>``."""

from __future__ import annotations

import importlib

KINDS = ["speed", "task"]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmarks: speed of backends, long-memory tasks",
        description="Benchmarks; each kind is a subcommand. They time, they never assert.",
    )
    parser.set_defaults(func=None, _parser=parser)
    kinds = parser.add_subparsers(dest="kind", metavar="KIND")
    for name in KINDS:
        try:
            module = importlib.import_module(f"rnnkit.cli.bench_{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"rnnkit.cli.bench_{name}":
                continue
            raise
        module.register(kinds)
