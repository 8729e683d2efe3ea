"""``rnnkit bench <kind>``: one module per benchmark, ``rnnkit.cli.bench_<kind>``."""

from __future__ import annotations

from rnnkit.cli.main import register_modules

KINDS = ["speed", "task", "scale", "quality"]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmarks: speed of backends, long-memory tasks, scaling, quality of the defaults",
        description="Benchmarks; each kind is a subcommand. They time, they never assert.",
    )
    parser.set_defaults(func=None, _parser=parser)
    kinds = parser.add_subparsers(dest="kind", metavar="KIND")
    register_modules(kinds, "rnnkit.cli.bench_", KINDS)
