"""``rnnkit translate``: run a trained seq2seq model on text, optionally drawing its attention."""

from __future__ import annotations

import sys

from rnnkit.cli.main import UsageError
from rnnkit.cli.options import add_device_flag, add_trust_flag


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "translate",
        help="translate text with a trained seq2seq run",
        description=(
            "Translate --text (or each line of --file) with the run's model: greedy decoding, "
            "or beam search with --beam K (ranked by log p / length^alpha, the run's "
            "--length-penalty). --heatmap writes the attention weights of the first input as "
            "a PNG. Characters the model never saw in training are an error."
        ),
    )
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", help="run directory of `rnnkit train seq2seq`"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="the text to translate")
    source.add_argument("--file", metavar="FILE", help="translate each non-empty line of FILE")
    parser.add_argument("--beam", type=int, default=1, help="beam width (default 1: greedy)")
    parser.add_argument(
        "--max-length", type=int, help="longest output in characters (default: the run's)"
    )
    parser.add_argument("--heatmap", metavar="PNG", help="write the first input's attention here")
    parser.add_argument("--force", action="store_true", help="replace an existing --heatmap")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object on stdout: outputs, scores and attention weights",
    )
    add_trust_flag(parser)
    add_device_flag(parser)
    parser.set_defaults(func=run)


def _inputs(args) -> list[str]:
    if args.text is not None:
        return [args.text]
    from pathlib import Path

    from rnnkit.errors import InvalidInputError

    path = Path(args.file)
    try:
        # utf-8-sig: a byte-order mark (Notepad, Excel) is not part of the first line.
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise InvalidInputError(f"--file {path} does not exist") from None
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"--file {path} is not a UTF-8 text file ({exc})") from None
    except OSError as exc:
        raise InvalidInputError(f"--file {path}: cannot read ({exc.strerror or exc})") from None
    texts = [line for line in lines if line.strip()]
    if not texts:
        raise InvalidInputError(f"--file {path} has no non-empty lines")
    return texts


def run(args) -> int:
    from rnnkit import runs
    from rnnkit.cli.outputs import check_new_file, writing
    from rnnkit.tasks.seq2seq import plot_attention

    if args.beam < 1:
        raise UsageError(f"--beam must be >= 1, got {args.beam}")
    if args.max_length is not None and args.max_length < 1:
        raise UsageError(f"--max-length must be >= 1, got {args.max_length}")
    check_new_file("--heatmap", args.heatmap, force=args.force)
    model = runs.load(args.run_dir, task="seq2seq", trust=args.trust, device=args.device)
    if args.heatmap and model.model.attention is None:
        raise UsageError("--heatmap needs a model with attention; this run has --attention none")
    texts = _inputs(args)
    results = model.translate(texts, beam=args.beam, max_length=args.max_length, details=True)
    if args.heatmap:
        with writing(args.heatmap):
            plot_attention(results[0]["attention"], texts[0], results[0]["output"], args.heatmap)
    if args.json:
        payload = {
            "run": str(args.run_dir),
            "beam": args.beam,
            "translations": [{"input": t, **r} for t, r in zip(texts, results)],
        }
        if args.heatmap:
            payload["heatmap"] = args.heatmap
        from rnnkit.io import json_line

        print(json_line(payload))
        return 0
    for text, result in zip(texts, results):
        print(result["output"] if len(texts) == 1 else f"{text}\t{result['output']}")
    if args.heatmap:
        print(f"attention heat map written to {args.heatmap}", file=sys.stderr)
    return 0
