"""``rnnkit`` entry point: registers one module per command and turns user errors into exit 2.

Each command module ``rnnkit.cli.<name>`` exposes ``register(subparsers)``, which adds its parser
and sets ``func=run``. ``run(args) -> int | None`` calls the library and prints. A user error —
an :class:`rnnkit.errors.InvalidInputError` or :class:`UsageError` — prints one line
``error: …`` on stderr and exits 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys

from rnnkit import __version__
from rnnkit.errors import InvalidInputError

# Command modules, in the order ``rnnkit --help`` lists them.
COMMANDS = [
    "train",
    "sample",
    "evaluate",
    "predict",
    "tag",
    "translate",
    "forecast",
    "generate",
    "data",
    "diagnose",
    "bench",
    "env",
    "export",
]


# A full disk, a read-only folder, no permission: the user's situation, not a bug (exit 2).
_FILE_SYSTEM_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


class UsageError(InvalidInputError):
    """A bad option value or combination found after argparse (exit 2)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnnkit",
        description="Recurrent sequence learning: train, sample, evaluate, diagnose, benchmark.",
    )
    parser.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    register_modules(subparsers, "rnnkit.cli.", COMMANDS)
    return parser


def register_modules(subparsers, prefix: str, names: list[str]) -> None:
    """Call ``register(subparsers)`` of each module ``prefix + name`` that exists."""
    for name in names:
        try:
            module = importlib.import_module(prefix + name)
        except ModuleNotFoundError as exc:
            if exc.name == prefix + name:
                continue  # not part of this installation
            raise
        module.register(subparsers)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # as given, for commands that relaunch themselves (--nproc)
    if getattr(args, "func", None) is None:
        # `rnnkit` or `rnnkit train` without a subcommand: show the relevant help.
        (getattr(args, "_parser", None) or parser).print_help(sys.stderr)
        return 2
    code = 1
    try:
        code = args.func(args)
    except InvalidInputError as exc:
        code = 2
        print(f"error: {exc}", file=sys.stderr)
    except BrokenPipeError:  # `rnnkit sample … | head`: the reader has what it wanted
        import os

        # Whatever is still buffered would fail again at exit ("Exception ignored …").
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        code = 0
    except OSError as exc:
        if exc.errno not in _FILE_SYSTEM_ERRORS:
            raise  # anything else is a bug and keeps its traceback
        where = f" {exc.filename}" if exc.filename else ""
        print(
            f"error: cannot write{where}: {exc.strerror}; free space or choose a writable --out "
            "(files already there are kept: every write is atomic)",
            file=sys.stderr,
        )
        code = 2
    except KeyboardInterrupt:  # a second Ctrl-C while the first is being handled
        print("interrupted", file=sys.stderr)
        code = 130
    finally:  # under torchrun: leave the process group before the interpreter exits
        from rnnkit import distributed

        distributed.destroy(wait=not code)
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
