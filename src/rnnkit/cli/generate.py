"""``rnnkit generate RUN_DIR``: a new piece from a trained music run, as MIDI or MusicXML."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from rnnkit.cli.main import UsageError
from rnnkit.cli.options import (
    add_device_flag,
    add_json_flag,
    add_threads_flag,
    add_trust_flag,
    set_threads,
)

FORMATS = {"midi": ".mid", "musicxml": ".musicxml"}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="generate a piece of music with a trained music run (MIDI, piano-roll PNG)",
        description=(
            "Draw a piece from a `rnnkit train music` run with the recurrent state carried:\n"
            "event token by event token (softmax(logits / temperature) over the tokens the\n"
            "canonical order allows) or, for a --representation roll run, frame by frame with\n"
            "each pitch ~ Bernoulli(sigmoid(logit / temperature)). It writes the piece as a\n"
            "standard MIDI file (or MusicXML), a piano-roll PNG beside it, and a\n"
            "one-line summary. Start from silence, from --primer FILE, or from the first\n"
            "--primer-bars bars of one of the run's test pieces. The same --seed gives the\n"
            "same piece; an existing --out or PNG is replaced only with --force."
        ),
        epilog=(
            "examples:\n"
            "  rnnkit generate runs/bach --bars 16 --seed 1 --out chorale.mid\n"
            "  rnnkit generate runs/bach --primer-bars 2 --bars 8 --temperature 0.8 "
            "--out cont.mid\n"
            "  rnnkit generate runs/bach --primer theme.mid --bars 32 --format musicxml "
            "--out piece.musicxml"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory of `rnnkit train music`")
    parser.add_argument(
        "--bars", type=int, default=16, metavar="N", help="length of the piece (default 16)"
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        metavar="T",
        help="> 0; lower is more conservative (default 1)",
    )
    parser.add_argument("--seed", type=int, metavar="N", help="random seed (default: a fresh one)")
    primer = parser.add_mutually_exclusive_group()
    primer.add_argument("--primer", metavar="FILE", help="a music file to continue")
    primer.add_argument(
        "--primer-bars", type=int, metavar="N", help="start from the first N bars of a test piece"
    )
    parser.add_argument("--out", metavar="FILE", required=True, help="the piece to write")
    parser.add_argument(
        "--format", choices=tuple(FORMATS), default="midi", help="midi (default) or musicxml"
    )
    parser.add_argument("--png", metavar="FILE", help="piano-roll image (default: --out with .png)")
    parser.add_argument(
        "--tempo",
        type=float,
        default=100.0,
        metavar="BPM",
        help="quarter notes per minute (default 100)",
    )
    parser.add_argument("--force", action="store_true", help="replace existing --out / PNG")
    add_threads_flag(parser)
    add_device_flag(parser)
    add_trust_flag(parser)
    add_json_flag(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from rnnkit import runs
    from rnnkit.cli.outputs import check_new_file, writing
    from rnnkit.devices import resolve_device

    if args.bars < 1:
        raise UsageError(f"--bars must be >= 1, got {args.bars}")
    if not math.isfinite(args.temperature) or args.temperature <= 0:
        raise UsageError(f"--temperature must be > 0, got {args.temperature}")
    if not math.isfinite(args.tempo) or args.tempo <= 0:
        raise UsageError(f"--tempo must be > 0, got {args.tempo}")
    if args.seed is not None and args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    if args.primer_bars is not None and args.primer_bars < 1:
        raise UsageError(f"--primer-bars must be >= 1, got {args.primer_bars}")
    png = args.png or str(Path(args.out).with_suffix(".png"))
    if Path(png) == Path(args.out):
        raise UsageError(f"--png {png} is --out; give another name")
    check_new_file("--out", args.out, force=args.force)  # before the work, not after it
    check_new_file("--png", png, force=args.force)
    set_threads(args.threads)
    device = resolve_device(args.device)
    model = runs.load(args.run_dir, task="music", trust=args.trust)
    model.model.to(device)
    with writing(args.out):
        summary = model.generate(
            args.out,
            bars=args.bars,
            temperature=args.temperature,
            seed=args.seed,
            primer=args.primer,
            primer_bars=args.primer_bars,
            fmt=args.format,
            png=png,
            tempo=args.tempo,
        )
    if args.json:
        from rnnkit.io import json_line

        print(json_line(summary))
        return 0
    pitches = (
        f"pitches {summary['pitch_low']}-{summary['pitch_high']}" if summary["notes"] else "silent"
    )
    primed = f", primer {summary['primer']}" if summary["primer"] else ""
    print(
        f"wrote {summary['out']}: {summary['bars']} bars, {summary['notes']} notes, {pitches}, "
        f"{summary['seconds']:.1f} s at {args.tempo:g} bpm{primed}; piano roll {summary['png']}",
        file=sys.stdout,
    )
    return 0
