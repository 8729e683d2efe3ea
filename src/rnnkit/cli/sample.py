"""``rnnkit sample``: generate text from a trained language model, streamed as it is drawn."""

from __future__ import annotations

import sys

from rnnkit.cli.main import UsageError
from rnnkit.cli.options import add_device_flag, add_threads_flag, add_trust_flag, set_threads


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sample",
        help="generate text from a trained language model",
        description=(
            "Print the prime text, then LENGTH characters drawn one at a time from the model "
            "(softmax of logits / temperature, optionally only the top-k). Characters appear "
            "as they are generated. A prime with characters the model never saw is an error."
        ),
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory of `rnnkit train lm`")
    parser.add_argument("--prime", default="", help="text to start from (default: a newline)")
    parser.add_argument(
        "--length", type=int, default=300, help="characters to generate (default 300)"
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="> 0; lower is more conservative (default 1.0)",
    )
    parser.add_argument("--top-k", type=int, help="sample only among the K likeliest characters")
    parser.add_argument("--seed", type=int, help="random seed (default: a fresh one)")
    add_threads_flag(parser)
    add_trust_flag(parser)
    add_device_flag(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    import math

    from rnnkit import runs

    if args.length < 0:
        raise UsageError(f"--length must be >= 0, got {args.length}")
    if not math.isfinite(args.temperature) or args.temperature <= 0:
        raise UsageError(f"--temperature must be > 0, got {args.temperature}")
    if args.top_k is not None and args.top_k < 1:
        raise UsageError(f"--top-k must be >= 1, got {args.top_k}")
    if args.seed is not None and args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    set_threads(args.threads)
    model = runs.load(args.run_dir, task="lm", trust=args.trust, device=args.device)
    model.encoders.check_known(args.prime, "--prime")
    chars = model.generate(
        args.prime, args.length, temperature=args.temperature, top_k=args.top_k, seed=args.seed
    )
    out = sys.stdout
    out.write(args.prime)
    for ch in chars:
        out.write(ch)
        out.flush()
    out.write("\n")
    out.flush()
    return 0
