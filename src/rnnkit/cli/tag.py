"""``rnnkit tag RUN_DIR``: tag words with a trained tagger; prints ``word/TAG`` tokens."""

from __future__ import annotations

from pathlib import Path

from rnnkit.cli.main import UsageError
from rnnkit.cli.options import add_device_flag, add_trust_flag
from rnnkit.errors import InvalidInputError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "tag",
        help="tag words with a trained tagger (word/TAG output)",
        description=(
            "Tag sentences with a tagger trained by `rnnkit train tag`. Words are separated "
            "by whitespace (the text is not segmented); each sentence is printed as word/TAG "
            "tokens, e.g. 我/r 吃/v 苹果/n."
        ),
        epilog='example:\n  rnnkit tag runs/tag --text "我 吃 苹果"',
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory of a tagger")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="one sentence, words separated by spaces")
    source.add_argument(
        "--file",
        metavar="FILE",
        help="UTF-8 file, one sentence per line, words separated by spaces",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="default 64")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object on stdout: {sentences: [{words, tags}]}",
    )
    add_trust_flag(parser)
    add_device_flag(parser)
    parser.set_defaults(func=run)


def _sentences(args) -> list[list[str]]:
    if args.text is not None:
        words = args.text.split()
        if not words:
            raise UsageError("--text has no words; pass words separated by spaces")
        return [words]
    path = Path(args.file)
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such file")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise InvalidInputError(f"{path}: not UTF-8 text; convert it to UTF-8") from None
    sentences = [line.split() for line in lines]
    if not any(sentences):
        raise InvalidInputError(f"{path}: no words found (the file is empty)")
    return sentences


def run(args) -> int:
    from rnnkit import runs

    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    sentences = _sentences(args)
    tags = runs.load(args.run_dir, task="tag", trust=args.trust, device=args.device).tag(
        sentences, batch_size=args.batch_size
    )
    if args.json:
        payload = {"sentences": [{"words": s, "tags": t} for s, t in zip(sentences, tags)]}
        from rnnkit.io import json_line

        print(json_line(payload))
        return 0
    for words, row in zip(sentences, tags):
        print(" ".join(f"{w}/{t}" for w, t in zip(words, row)))
    return 0
