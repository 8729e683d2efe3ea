"""``rnnkit evaluate``: the held-out report of a trained run (:func:`rnnkit.runs.evaluate_run`).

The report holds the metrics (``loss`` and the task's own) plus ``data``, a description of what
was scored; ``rnnkit evaluate`` prints it as aligned lines, or with ``--json`` as one object.
"""

from __future__ import annotations

import math
import sys

from rnnkit.cli.main import UsageError
from rnnkit.cli.options import (
    add_device_flag,
    add_json_flag,
    add_threads_flag,
    add_trust_flag,
    set_threads,
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="metrics of a trained run (loss, bpc, perplexity, ...)",
        description=(
            "Evaluate a run on its validation data, or on another file. Language models report "
            "loss (nats/char), bits per character and perplexity; characters never seen in "
            "training are not scored and are counted as 'unknown'."
        ),
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory")
    parser.add_argument("--text", metavar="FILE", help="language model: score this UTF-8 file")
    parser.add_argument("--data", metavar="FILE", help="other tasks: evaluate on this file")
    parser.add_argument("--batch-size", type=int, help="default: the run's")
    parser.add_argument("--bptt", type=int, help="language model window (default: the run's)")
    parser.add_argument("--beam", type=int, help="seq2seq: beam width (default 1: greedy)")
    parser.add_argument(
        "--plot",
        metavar="PNG",
        help="classify: the confusion matrix, tag: F1 per tag, written here (the run "
        "directory is only read)",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing --plot")
    add_json_flag(parser)
    add_threads_flag(parser)
    add_trust_flag(parser)
    add_device_flag(parser)
    parser.set_defaults(func=run)


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else str(value)
    if isinstance(value, list):
        return " ".join(repr(v) for v in value) if value else "-"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def run(args) -> int:
    from rnnkit import runs

    for flag in ("batch_size", "bptt"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    if args.text is not None and args.data is not None:
        raise UsageError("give one of --text and --data")
    from rnnkit.cli.outputs import check_new_file, writing

    set_threads(args.threads)
    loaded = runs.load(args.run_dir, trust=args.trust, device=args.device).loaded
    task = loaded.config["task"]
    plot = check_new_file("--plot", args.plot, force=args.force)  # before the work
    if plot is not None and not loaded.spec.report_plot:
        specs = [runs.task_spec(name) for name in runs.SPECS]
        having = ", ".join(f"{s.name} ({s.report_plot})" for s in specs if s.report_plot)
        raise UsageError(f"--plot: {task} runs have no plot of a held-out report; {having} do")
    options = {"batch_size": args.batch_size, "bptt": args.bptt, "beam": args.beam}
    result = runs.evaluate_run(
        loaded,
        data_file=args.data if args.data is not None else args.text,
        **{k: v for k, v in options.items() if v is not None},
    )
    if plot is not None:
        with writing(plot):
            loaded.spec.plot_report(result, plot)
        result["plot"] = str(plot)
    run_dir = loaded.run
    if args.json:
        payload = {"run": str(run_dir.path), "task": task, **result}
        from rnnkit.io import json_line

        print(json_line(payload))
        return 0
    print(f"{task} run {run_dir.path} on {result.get('data', 'its data')}:")
    shown = loaded.spec.format_evaluation(result)
    width = max(len(k) for k in shown)
    for key, value in shown.items():
        if key != "data":
            print(f"  {key:<{width}}  {_format(value)}")
    if result.get("unknown"):
        print(
            f"  note: {result['unknown']:,} characters never seen in training were not scored",
            file=sys.stderr,
        )
    return 0
