"""``rnnkit diagnose``: gradient flow through time, memory horizon and gate statistics."""

from __future__ import annotations

import argparse
from pathlib import Path

from rnnkit.cli.main import UsageError
from rnnkit.cli.options import add_device_flag, add_trust_flag

DEFAULT_CELLS = "rnn,irnn,lstm,gru"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "diagnose",
        help="gradient flow, memory horizon and gate saturation of fresh or trained layers",
        description=(
            "Measure how far gradients reach back in time. For each recurrent layer: the "
            "gradient norm |dL/ds_k| of a loss at the last step against the lag T-k, the "
            "spectral norm of the Jacobian product |ds_T/ds_k|, the per-step factor eta fitted "
            "to them beside Pascanu's bound sigma_max(W_hh)*gamma, the memory horizon (first "
            "lag whose relative gradient is below --threshold), gate saturation and dead ReLU "
            "units. Without RUN_DIR, fresh layers of each --cells on standard normal inputs; "
            "with RUN_DIR, the trained layers of a run. Prints a table, writes a PNG."
        ),
    )
    parser.add_argument("run_dir", nargs="?", type=Path, help="a training run to diagnose")
    fresh = parser.add_argument_group("fresh layers (without RUN_DIR)")
    fresh.add_argument(
        "--cells",
        default=None,
        help=(
            "comma-separated cells, each optionally with an initialiser: rnn, irnn, lstm, gru, "
            f"lstm:chrono:200, rnn:scaled_identity:0.5 … (default {DEFAULT_CELLS})"
        ),
    )
    fresh.add_argument("--hidden-size", type=int, default=64, help="units (default 64)")
    fresh.add_argument("--input-size", type=int, help="input features (default: hidden size)")
    fresh.add_argument("--num-layers", type=int, default=1, help="stacked layers (default 1)")
    fresh.add_argument(
        "--init",
        help="initialiser for every cell without its own (rnnkit, torch, orthogonal, identity, "
        "scaled_identity:S, forget_bias:B, chrono:T_MAX); default: each cell's own",
    )
    probe = parser.add_argument_group("measurement")
    probe.add_argument("--length", type=int, default=200, help="sequence length T (200)")
    probe.add_argument("--batch-size", type=int, default=8, help="sequences averaged (8)")
    probe.add_argument(
        "--threshold",
        type=float,
        default=1e-3,
        help="relative gradient that ends the memory horizon (1e-3)",
    )
    probe.add_argument(
        "--jacobian",
        choices=["auto", "exact", "power", "none"],
        default="auto",
        help="Jacobian norms: exact (full Jacobians), power (power iteration with VJPs/JVPs), "
        "auto (exact up to 256 state units), none",
    )
    probe.add_argument("--seed", type=int, default=0, help="seed of inputs and weights (0)")
    probe.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: the step-by-step work is many small operations, "
        "which more threads slow down)",
    )
    output = parser.add_argument_group("output")
    output.add_argument(
        "--png",
        type=Path,
        help="plot path (default gradient_flow.png in the working directory; a run "
        "directory is never written to)",
    )
    output.add_argument(
        "--plot",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write the PNG (default yes)",
    )
    output.add_argument("--force", action="store_true", help="replace an existing PNG")
    output.add_argument(
        "--json", action="store_true", help="print one JSON object and nothing else"
    )
    add_trust_flag(parser)
    add_device_flag(parser)
    parser.set_defaults(func=run)


def _check(args) -> None:
    for name in ("hidden_size", "num_layers", "length", "batch_size", "threads"):
        value = getattr(args, name)
        if value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.input_size is not None and args.input_size < 1:
        raise UsageError(f"--input-size must be >= 1, got {args.input_size}")
    if not args.threshold > 0 or not args.threshold < 1:
        raise UsageError(f"--threshold must be in (0, 1), got {args.threshold}")
    if args.trust and args.run_dir is None:
        raise UsageError("--trust applies to a RUN_DIR's weights; fresh layers have none")
    if args.run_dir is not None and (args.cells or args.init):
        raise UsageError("--cells and --init describe fresh layers; omit them with RUN_DIR")


def diagnose_fresh(args):
    from rnnkit.diagnostics import diagnose_cells
    from rnnkit.diagnostics.report import parse_cell
    from rnnkit.init import resolve

    cells = [c for c in (args.cells or DEFAULT_CELLS).split(",") if c.strip()]
    if not cells:
        raise UsageError("--cells is empty; name at least one cell, e.g. --cells lstm")
    for text in cells:
        try:
            _, init = parse_cell(text, args.init)
            if init is not None:
                resolve(init)
        except ValueError as exc:
            raise UsageError(f"--cells/--init: {exc}") from None
    try:
        diagnoses = diagnose_cells(
            cells,
            hidden_size=args.hidden_size,
            length=args.length,
            input_size=args.input_size,
            batch_size=args.batch_size,
            num_layers=args.num_layers,
            init=args.init,
            threshold=args.threshold,
            jacobian=None if args.jacobian == "none" else args.jacobian,
            seed=args.seed,
            device=args.device,
        )
    except ValueError as exc:  # an initialiser that does not fit a cell (chrono on rnn)
        raise UsageError(str(exc)) from None
    return diagnoses, []


def diagnose_run(args):
    """Every unidirectional recurrent layer of a trained run (bidirectional ones are listed)."""
    import torch

    from rnnkit.diagnostics import diagnose
    from rnnkit.layers import RecurrentLayer
    from rnnkit.runs import load_model

    task = load_model(args.run_dir, trust=args.trust).to(args.device)
    results, skipped = [], []
    layers = [(n, m) for n, m in task.named_modules() if isinstance(m, RecurrentLayer)]
    if not layers:
        raise UsageError(f"{args.run_dir} has no rnnkit recurrent layer to diagnose")
    g = torch.Generator().manual_seed(args.seed)
    for name, layer in layers:
        if layer.bidirectional:
            skipped.append(f"{name} (bidirectional)")
            continue
        x = _inputs_for(task, layer, args, g)
        results.append(
            diagnose(
                layer,
                x,
                label=name or "rnn",
                threshold=args.threshold,
                jacobian=None if args.jacobian == "none" else args.jacobian,
                seed=args.seed,
            )
        )
    return results, skipped


def _inputs_for(task, layer, args, generator):
    """Inputs a trained layer sees: the task's own test sequences if it offers them, else the
    embedding rows of random tokens when an embedding feeds the layer, else N(0, 1)."""
    import torch
    from torch import nn

    shape = (args.batch_size, args.length)
    if hasattr(task, "diagnostic_input") and getattr(task, "rnn", None) is layer:
        x = task.diagnostic_input(args.batch_size)
    else:
        embeddings = [
            m
            for m in task.modules()
            if isinstance(m, nn.Embedding) and m.embedding_dim == layer.input_size
        ]
        if embeddings:
            table = embeddings[0].weight.detach()
            tokens = torch.randint(0, table.shape[0], shape, generator=generator)
            x = table[tokens]
        else:
            x = torch.randn(*shape, layer.input_size, generator=generator)
    return x if layer.batch_first else x.transpose(0, 1)


def run(args) -> int:
    import torch

    from rnnkit.cli.outputs import check_new_file, writing
    from rnnkit.diagnostics import format_table, plot_gradient_flow

    _check(args)
    from rnnkit.devices import resolve_device

    args.device = resolve_device(args.device)
    if args.run_dir is not None:
        from rnnkit.io import RunDir

        RunDir(args.run_dir).check()  # a wrong path is named before an existing plot is
    png = args.png or Path("gradient_flow.png")
    if args.plot:
        check_new_file("--png", png, force=args.force)  # before the work, not after it
    torch.set_num_threads(args.threads)
    if args.run_dir is not None:
        diagnoses, skipped = diagnose_run(args)
    else:
        diagnoses, skipped = diagnose_fresh(args)
    if args.plot and diagnoses:
        with writing(png):
            plot_gradient_flow(diagnoses, png)
    if args.json:
        payload = {
            "diagnoses": [d.to_dict() for d in diagnoses],
            "skipped": skipped,
            "png": str(png) if args.plot else None,
        }
        from rnnkit.io import json_line

        print(json_line(payload))
        return 0
    print(format_table(diagnoses))
    for item in skipped:
        print(f"skipped {item}: gradient flow to the last step needs one direction")
    if args.plot and diagnoses:
        print(f"wrote {png}")
    return 0
