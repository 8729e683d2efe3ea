"""``rnnkit bench speed``: every backend and variant against torch.nn.LSTM, same run."""

from __future__ import annotations

import argparse
import json
import sys

from rnnkit.cli.main import UsageError


def _size(text: str) -> tuple[int, int, int, int]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"expected B,T,I,H as four positive integers, got {text!r}"
        )
    return values


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "speed",
        help="time backends and variants against torch.nn.LSTM",
        description=(
            "Time training (forward+backward) and inference (forward) of every backend and "
            "variant, as medians of interleaved rounds, and print each as a ratio to "
            "torch.nn.LSTM measured in the same run. Default sizes (B,T,I,H): 32,100,64,64; "
            "32,100,256,256; 64,100,512,512."
        ),
    )
    parser.add_argument(
        "--size",
        type=_size,
        action="append",
        metavar="B,T,I,H",
        help="a size to time (repeatable; default: the three standard sizes)",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed rounds (default 7; 3 with --long)"
    )
    parser.add_argument(
        "--only",
        metavar="NAMES",
        help="comma-separated configuration names, e.g. 'LSTM auto,peephole fused'",
    )
    parser.add_argument(
        "--long",
        action="store_true",
        help=(
            "the long-sequence table instead: minGRU, minLSTM (parallel scan and step loop) and "
            "sLSTM against torch.nn.GRU/LSTM, fwd+bwd and saved-tensor memory; default sizes "
            "(B,T,I,H) 16,128,256,256; 16,1024,256,256; 16,4096,256,256; --repeats default 3"
        ),
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object and nothing else"
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    import torch

    from rnnkit.bench import speed

    if args.repeats is None:
        args.repeats = 3 if args.long else 7
    if args.repeats < 1:
        raise UsageError(f"--repeats must be >= 1, got {args.repeats}")
    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.long:
        return _run_long(args, speed)
    only = [name.strip() for name in args.only.split(",")] if args.only else None
    progress = None if args.json else (lambda text: print(f"timing {text} …", file=sys.stderr))
    try:
        results = speed.run(
            args.size or speed.SIZES, repeats=args.repeats, only=only, progress=progress
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if args.json:
        payload = {
            "threads": torch.get_num_threads(),
            "repeats": args.repeats,
            "results": [r.as_dict() for r in results],
        }
        print(json.dumps(payload))
    else:
        print(f"threads={torch.get_num_threads()} repeats={args.repeats} (medians)")
        print(speed.format_table(results), end="")
    return 0


def _run_long(args, speed) -> int:
    import torch

    if args.only:
        raise UsageError("--only applies to the standard table, not to --long")
    progress = None if args.json else (lambda text: print(f"timing {text} …", file=sys.stderr))
    results = speed.run_long(args.size or speed.LONG_SIZES, repeats=args.repeats, progress=progress)
    if args.json:
        payload = {
            "threads": torch.get_num_threads(),
            "repeats": args.repeats,
            "results": [r.as_dict() for r in results],
        }
        print(json.dumps(payload))
    else:
        print(f"threads={torch.get_num_threads()} repeats={args.repeats} (medians)")
        print(speed.format_long_table(results), end="")
    return 0
