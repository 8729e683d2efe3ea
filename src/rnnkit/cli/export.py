"""``rnnkit export``: a trained run as a streaming ONNX file or ``torch.export`` program.

The language model exports as ``(ids (B, T), *state) -> (logits, *next_state)`` with dynamic
batch and time (:func:`rnnkit.export.export_language_model`), beside a JSON sidecar with the
vocabulary and the input/output names.
"""

from __future__ import annotations

from pathlib import Path

from rnnkit.cli.main import UsageError
from rnnkit.cli.options import add_trust_flag


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a trained run to ONNX or a torch.export program",
        description=(
            "Export a trained run with explicit state inputs and outputs (feed a chunk and the "
            "previous state, get outputs and the next state), plus a JSON sidecar "
            "(FILE.json) with the vocabulary. Language models for now."
        ),
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory")
    parser.add_argument("--format", choices=("onnx", "pt2"), default="onnx")
    parser.add_argument("--out", metavar="FILE", help="default: RUN_DIR/model.onnx or model.pt2")
    parser.add_argument("--opset", type=int, help="ONNX opset (default: torch's)")
    parser.add_argument("--force", action="store_true", help="overwrite --out")
    add_trust_flag(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from rnnkit import export, runs

    if args.opset is not None and args.format != "onnx":
        raise UsageError("--opset applies to --format onnx only")
    if args.opset is not None and not 18 <= args.opset <= 23:
        raise UsageError(f"--opset must be between 18 and 23 (torch's exporter), got {args.opset}")
    if args.format == "onnx":
        try:
            export._require("onnx")
            export._require("onnxscript")
        except ImportError as exc:
            raise UsageError(str(exc)) from None
    loaded = runs.load_run(args.run_dir, trust=args.trust)
    task = loaded.config["task"]
    if task != "lm":
        raise UsageError(
            f"rnnkit export supports language-model runs for now; {args.run_dir} is {task!r}"
        )
    out = Path(args.out) if args.out else Path(args.run_dir) / f"model.{args.format}"
    if out.exists() and not args.force:
        raise UsageError(f"--out {out} exists; pass --force to overwrite it")
    path, sidecar = export.export_language_model(
        loaded.task, loaded.encoders, out, format=args.format, opset=args.opset
    )
    print(f"wrote {path} and {sidecar}")
    return 0
