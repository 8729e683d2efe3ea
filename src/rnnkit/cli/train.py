"""``rnnkit train <task>``: one module per task, ``rnnkit.cli.train_<task>``, with ``register``."""

from __future__ import annotations

import importlib

TASKS = ["lm", "classify", "tag", "seq2seq", "forecast"]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model (lm, classify, tag, seq2seq, forecast)",
        description="Train a model on your data; each task is a subcommand.",
    )
    parser.set_defaults(func=None, _parser=parser)
    tasks = parser.add_subparsers(dest="task", metavar="TASK")
    for name in TASKS:
        try:
            module = importlib.import_module(f"rnnkit.cli.train_{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"rnnkit.cli.train_{name}":
                continue
            raise
        module.register(tasks)
