"""``rnnkit bench scale``: the main-job language model in one process and in several."""

from __future__ import annotations

import json

from rnnkit.cli.main import UsageError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "scale",
        help="characters/s of the main job: 1 process x 2 threads vs 2 processes x 1 thread",
        description=(
            "Train the main-job language model for --steps steps in fresh processes: one "
            "process with two threads, two processes with one thread each (--nproc, gloo), and "
            "the same on CUDA when it is there; print the median characters/s of each and its "
            "ratio to the first. It times, it never asserts."
        ),
    )
    parser.add_argument("--steps", type=int, default=60, help="steps per run (default 60)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--small", action="store_true", help="a tiny model, for a quick check")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args) -> int:
    import torch

    from rnnkit.bench.scale import TINY, Setting, scale_benchmark

    if args.steps < 1 or args.repeats < 1:
        raise UsageError("--steps and --repeats must be >= 1")
    settings = [Setting(1, 2), Setting(2, 1)]
    if torch.cuda.is_available():
        gpus = torch.cuda.device_count()
        settings += [Setting(1, 1, "cuda")] + ([Setting(gpus, 1, "cuda")] if gpus > 1 else [])
    rows = scale_benchmark(
        settings, steps=args.steps, repeats=args.repeats, model=TINY if args.small else ()
    )
    if args.json:
        print(json.dumps({"steps": args.steps, "repeats": args.repeats, "rows": rows}))
        return 0
    width = max(len(r["setting"]) for r in rows)
    print(f"{'setting':<{width}}  chars/s   ratio")
    for r in rows:
        print(f"{r['setting']:<{width}}  {r['chars_per_s']:>8,.0f}  {r['ratio']:.2f}")
    return 0
