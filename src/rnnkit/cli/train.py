"""``rnnkit train <task>``: for each task in :data:`rnnkit.runs.SPECS`, the module
``rnnkit.cli.train_<task>`` with ``register``."""

from __future__ import annotations

from rnnkit.cli.main import register_modules
from rnnkit.runs import SPECS


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help=f"train a model ({', '.join(SPECS)})",
        description="Train a model on your data; each task is a subcommand.",
    )
    parser.set_defaults(func=None, _parser=parser)
    tasks = parser.add_subparsers(dest="task", metavar="TASK")
    register_modules(tasks, "rnnkit.cli.train_", list(SPECS))  # one per registered task
