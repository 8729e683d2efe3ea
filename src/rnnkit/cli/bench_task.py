"""``rnnkit bench task NAME``: train every cell on a long-memory task with the same budget."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rnnkit.cli.main import UsageError

DEFAULT_CELLS = "rnn,irnn,lstm,gru"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "task",
        help="long-memory benchmarks: adding, copy, sequential digits",
        description=(
            "Train each cell (or cell:init) on a long-memory task with the same settings and "
            "time budget, evaluate the fixed test set as it trains, and print the test figure "
            "of every cell beside the memoryless baseline. Writes <out>/<task>.json and a PNG "
            "of the learning curves. Tasks: adding (MSE; baseline 1/6), copy (cross-entropy "
            "per step; baseline 10 ln 8 / (T + 20)), digits (accuracy on a held-out fifth of "
            "5,000 MNIST digits, row by row or pixel by pixel)."
        ),
    )
    parser.add_argument("name", choices=["adding", "copy", "digits"], help="the task")
    task = parser.add_argument_group("task")
    task.add_argument(
        "--cells",
        default=DEFAULT_CELLS,
        help=(
            "comma-separated cells (any registered family: rnn, irnn, lstm, gru, mingru, "
            "minlstm, slstm …), each optionally with an initialiser: "
            "lstm:chrono (T_max = the task's dependency length), lstm:chrono:200, "
            f"gru:forget_bias:1, rnn:orthogonal … (default {DEFAULT_CELLS})"
        ),
    )
    task.add_argument("--length", type=int, help="T for adding (default 100) and copy (default 50)")
    task.add_argument(
        "--order",
        choices=["row", "pixel"],
        default="row",
        help="digits: read row by row or pixel by pixel (default row)",
    )
    task.add_argument(
        "--small",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="digits: scikit-learn's 8x8 digits instead of 28x28 MNIST",
    )
    train = parser.add_argument_group("training (the same for every cell)")
    train.add_argument("--hidden-size", type=int, default=128, help="units (default 128)")
    train.add_argument("--batch-size", type=int, default=64, help="sequences per step (64)")
    train.add_argument("--lr", type=float, help="Adam learning rate (default: 1e-3; 3e-4 for irnn)")
    train.add_argument("--clip-norm", type=float, default=1.0, help="gradient clipping (1.0)")
    train.add_argument(
        "--schedule",
        choices=["constant", "cosine"],
        help="learning-rate schedule over the budget (default: constant for adding and copy, "
        "whose fresh data reward more steps at full rate; cosine for digits)",
    )
    train.add_argument(
        "--time-budget",
        type=float,
        default=60.0,
        help="seconds per cell, evaluations included (default 60)",
    )
    train.add_argument("--steps", type=int, help="at most this many steps per cell")
    train.add_argument(
        "--eval-every", type=int, default=100, help="evaluate the test set every N steps (100)"
    )
    train.add_argument(
        "--stop-at", type=float, help="stop a cell early once its test figure reaches this"
    )
    train.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    train.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    output = parser.add_argument_group("output")
    output.add_argument(
        "--out", type=Path, help="directory for <task>.json and <task>.png (runs/bench-<task>)"
    )
    output.add_argument(
        "--force",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="replace results already in --out",
    )
    output.add_argument(
        "--json", action="store_true", help="print one JSON object and nothing else"
    )
    parser.set_defaults(func=run)


def _positive(name: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or not value > 0:
        raise UsageError(f"{name} must be > 0, got {value}")


def run(args) -> int:
    import torch

    from rnnkit.bench.long_memory import (
        BenchSettings,
        Contender,
        format_table,
        plot_learning_curves,
        run_benchmark,
    )
    from rnnkit.bench.tasks import make_task
    from rnnkit.init import resolve
    from rnnkit.io import atomic_write_json

    for name in ("hidden_size", "batch_size", "clip_norm", "time_budget", "eval_every"):
        _positive(f"--{name.replace('_', '-')}", getattr(args, name))
    _positive("--lr", args.lr, allow_none=True)
    _positive("--steps", args.steps, allow_none=True)
    _positive("--threads", args.threads, allow_none=True)
    try:
        contenders = [Contender.parse(c) for c in args.cells.split(",") if c.strip()]
        for c in contenders:
            if c.init is not None and c.init != "chrono":
                resolve(c.init)
    except ValueError as exc:
        raise UsageError(f"--cells: {exc}") from None
    if not contenders:
        raise UsageError("--cells is empty; name at least one cell, e.g. --cells lstm")
    if args.name != "digits" and (args.order != "row" or args.small):
        raise UsageError("--order and --small apply to the digits task only")
    if args.name == "digits" and args.length is not None:
        raise UsageError("digits has a fixed length; use --order row|pixel and --small")
    if args.length is not None and args.length < 2:
        raise UsageError(f"--length must be >= 2, got {args.length}")
    out = args.out or Path("runs") / f"bench-{args.name}"
    results_path, plot_path = out / f"{args.name}.json", out / f"{args.name}.png"
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; choose a directory")
    if results_path.exists() and not args.force:
        raise UsageError(f"{results_path} exists; pass --force to replace it or choose --out")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    options = {"order": args.order, "small": args.small} if args.name == "digits" else {}
    task = make_task(args.name, args.length, **options)
    settings = BenchSettings(
        hidden_size=args.hidden_size,
        batch_size=args.batch_size,
        lr=args.lr,
        clip_norm=args.clip_norm,
        schedule=args.schedule or ("cosine" if args.name == "digits" else "constant"),
        time_budget=args.time_budget,
        max_steps=args.steps,
        eval_every=args.eval_every,
        stop_at=args.stop_at,
        seed=args.seed,
    )

    def progress(label: str, line: dict) -> None:
        metric = task.metric.name
        value = line.get(f"val_{metric}")
        print(
            f"{label}: step {line['step']}, {line['elapsed']:.0f} s, test {metric} {value:.4f}",
            file=sys.stderr,
        )

    report = run_benchmark(task, contenders, settings, progress=None if args.json else progress)
    report["threads"] = torch.get_num_threads()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(results_path, report)
    plot_learning_curves(report, plot_path)
    if args.json:
        print(json.dumps(report))
    else:
        print(format_table(report))
        print(f"wrote {results_path} and {plot_path}")
    return 0
