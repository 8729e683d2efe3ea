"""``rnnkit train <task>``: one module per task, ``rnnkit.cli.train_<task>``, with ``register``."""

from __future__ import annotations

from rnnkit.cli.main import register_modules

TASKS = ["lm", "classify", "tag", "seq2seq", "forecast"]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model (lm, classify, tag, seq2seq, forecast)",
        description="Train a model on your data; each task is a subcommand.",
    )
    parser.set_defaults(func=None, _parser=parser)
    tasks = parser.add_subparsers(dest="task", metavar="TASK")
    register_modules(tasks, "rnnkit.cli.train_", TASKS)
