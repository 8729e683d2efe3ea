"""``rnnkit export``: a trained run as ONNX files or ``torch.export`` programs, and their check.

Every task exports (:func:`rnnkit.export.export_run`): the language and music models as
streaming graphs ``(x, *state) -> (y, *next_state)``, the others as their forward pass on
padded batches (``lengths`` an input), seq2seq as an encoder and a one-step decoder; all with
dynamic batch and time, beside a JSON sidecar (FILE.json) with the encoders and every input's
and output's name, dtype and shape. ``--check`` runs the written files (onnxruntime, or the
loaded ExportedProgram) on the run's validation data beside the eager model
(:func:`rnnkit.export.check_run`) and exits 1 when they differ by more than ``--tolerance``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rnnkit.cli.main import UsageError
from rnnkit.cli.options import add_json_flag, add_trust_flag

ENGINES = {"onnx": "ONNX Runtime", "pt2": "ExportedProgram"}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a trained run to ONNX or a torch.export program",
        description=(
            "Export a trained run with dynamic batch and time (language and music models "
            "with explicit state inputs and outputs: feed a chunk and the previous state, get "
            "outputs and the next state), plus a JSON sidecar (FILE.json) with the "
            "vocabulary, labels or scaler and every input's and output's name and shape. "
            "Seq2seq runs write FILE's stem .encoder and .decoder files."
        ),
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory")
    parser.add_argument("--format", choices=("onnx", "pt2"), default="onnx")
    parser.add_argument("--out", metavar="FILE", help="default: RUN_DIR/model.onnx or model.pt2")
    parser.add_argument("--opset", type=int, help="ONNX opset (default: torch's)")
    parser.add_argument("--force", action="store_true", help="overwrite --out")
    parser.add_argument(
        "--check",
        action="store_true",
        help="run the exported files on validation batches beside PyTorch: print the max abs "
        "difference and the task's metric both ways; exit 1 beyond --tolerance",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        metavar="X",
        help="largest max abs difference --check accepts (default: 1e-4)",
    )
    parser.add_argument(
        "--check-batches", type=int, default=8, metavar="N", help="batches --check runs (8)"
    )
    add_json_flag(parser)
    add_trust_flag(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from rnnkit import export, runs
    from rnnkit.io import json_line

    if args.opset is not None and args.format != "onnx":
        raise UsageError("--opset applies to --format onnx only")
    if args.opset is not None and not 18 <= args.opset <= 23:
        raise UsageError(f"--opset must be between 18 and 23 (torch's exporter), got {args.opset}")
    if not args.tolerance >= 0:  # also refuses nan
        raise UsageError(f"--tolerance must be a number >= 0, got {args.tolerance}")
    if args.check_batches < 1:
        raise UsageError(f"--check-batches must be >= 1, got {args.check_batches}")
    needed = (["onnx", "onnxscript"] + (["onnxruntime"] if args.check else [])) * (
        args.format == "onnx"
    )
    for module in needed:
        try:
            export._require(module)
        except ImportError as exc:
            raise UsageError(str(exc)) from None
    loaded = runs.load_run(args.run_dir, trust=args.trust)
    plan = loaded.spec.export_model(loaded)
    out = Path(args.out) if args.out else Path(args.run_dir) / f"model.{args.format}"
    targets = [*export.graph_paths(plan, out).values(), export.sidecar_path(out)]
    for path in targets:
        if path.is_dir():
            raise UsageError(f"--out {path} is a directory; name a file")
        if path.exists() and not args.force:
            raise UsageError(f"{path} exists; pass --force to overwrite it")
    paths, sidecar = export.export_run(loaded, out, format=args.format, opset=args.opset)
    summary = {"files": [str(p) for p in paths], "sidecar": str(sidecar)}
    if not args.json:
        print(f"wrote {', '.join(map(str, paths))} and {sidecar}")
    if not args.check:
        if args.json:
            print(json_line(summary))
        return 0
    result = export.check_run(loaded, out, format=args.format, max_batches=args.check_batches)
    ok = result.max_abs_diff <= args.tolerance
    if args.json:
        print(json_line({**summary, "check": {**result.to_dict(), "ok": ok}}))
    else:
        engine = ENGINES[args.format]
        line = (
            f"check ({engine} vs PyTorch, {result.batches} validation batches): "
            f"max abs difference {result.max_abs_diff:.3g}"
        )
        if result.metric:
            line += (
                f"; {result.metric} {result.pytorch:.6g} (PyTorch), "
                f"{result.exported:.6g} ({engine})"
            )
        print(line)
    if not ok:
        print(
            f"mismatch: max abs difference {result.max_abs_diff:.3g} exceeds --tolerance "
            f"{args.tolerance:g}",
            file=sys.stderr,
        )
        return 1
    return 0
