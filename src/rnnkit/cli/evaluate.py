"""``rnnkit evaluate``: metrics of a trained run, dispatched on the task in its config.json.

Each task registers an evaluator ``fn(args, run: RunDir, config: dict) -> dict`` in
:data:`EVALUATORS` (or provides ``rnnkit.cli.evaluate_<task>.evaluate`` with that signature).
The dict holds the metrics (``loss`` and the task's own) plus ``data``, a description of what
was scored; ``rnnkit evaluate`` prints it as aligned lines, or with ``--json`` as one object.
"""

from __future__ import annotations

import importlib
import json
import math
import sys
from collections.abc import Callable

from rnnkit.cli.main import UsageError
from rnnkit.errors import InvalidInputError


def evaluate_lm(args, run, config) -> dict:
    """Language model: the run's validation part, or ``--text FILE`` (every character)."""
    from rnnkit.data.text import DEFAULT_CORPUS, TextSplit, load_corpus, read_text
    from rnnkit.tasks.lm import evaluate_text, load_language_model

    model, vocab, config = load_language_model(run.path)
    data = config.get("data", {})
    batch_size = args.batch_size or data.get("batch_size", 32)
    bptt = args.bptt or data.get("bptt", 100)
    if args.text is not None:
        text, what = read_text(args.text), f"text {args.text}"
    else:
        source = data.get("source")
        if source is None:
            raise InvalidInputError(f"{run.config_path} records no text; pass --text FILE")
        try:
            text, _ = load_corpus(None if source == DEFAULT_CORPUS else source)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{exc}; pass --text FILE to evaluate another text") from None
        import hashlib

        if data.get("sha256") and hashlib.sha256(text.encode()).hexdigest() != data["sha256"]:
            raise InvalidInputError(
                f"the training text {source} changed since training; pass --text FILE"
            )
        text = TextSplit.of(text, data.get("val_fraction", 0.1)).val
        what = f"validation part of {source}"
    metrics = evaluate_text(model, vocab, text, batch_size=batch_size, bptt=bptt, what=what)
    return {"data": what, **metrics}


EVALUATORS: dict[str, Callable] = {"lm": evaluate_lm}


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
        "--json", action="store_true", help="print one JSON object on stdout and nothing else"
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.set_defaults(func=run)


def _evaluator(task: str) -> Callable:
    if task in EVALUATORS:
        return EVALUATORS[task]
    try:
        module = importlib.import_module(f"rnnkit.cli.evaluate_{task}")
    except ModuleNotFoundError as exc:
        if exc.name != f"rnnkit.cli.evaluate_{task}":
            raise
        raise InvalidInputError(f"no evaluator for task {task!r}") from None
    return module.evaluate


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else str(value)
    if isinstance(value, list):
        return " ".join(repr(v) for v in value) if value else "-"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def run(args) -> int:
    from rnnkit.cli.train_lm import set_threads
    from rnnkit.io import RunDir

    for flag in ("batch_size", "bptt"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    set_threads(args.threads)
    run_dir = RunDir(args.run_dir).check()
    config = run_dir.read_config()
    result = _evaluator(config["task"])(args, run_dir, config)
    if args.json:
        payload = {"run": str(run_dir.path), "task": config["task"], **result}
        print(json.dumps(payload, ensure_ascii=False, default=str))
        return 0
    print(f"{config['task']} run {run_dir.path} on {result.get('data', 'its data')}:")
    width = max(len(k) for k in result)
    for key, value in result.items():
        if key != "data":
            print(f"  {key:<{width}}  {_format(value)}")
    if result.get("unknown"):
        print(
            f"  note: {result['unknown']:,} characters never seen in training were not scored",
            file=sys.stderr,
        )
    return 0
