"""``rnnkit train forecast``: direct multi-horizon forecasting of a CSV column, with baselines."""

from __future__ import annotations

import argparse
import json
import sys

from rnnkit.cli.main import UsageError
from rnnkit.cli.options import (
    CELLS,
    add_layer_options,
    add_optimisation_options,
    add_run_options,
    add_stopping_options,
    check_cell_options,
    check_positive,
    check_probability,
    check_resume,
    check_training_options,
    limits_from_args,
    train_config_from_args,
)
from rnnkit.errors import InvalidInputError

DEFAULT_STEPS = 2000


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "forecast",
        help="forecast a CSV column T+1..T+H, beside naive, seasonal-naive and AR baselines",
        description=(
            "Train a recurrent forecaster on a column of a CSV file (or a packaged series with "
            "--dataset): rows are split in time into train/validation/test, inputs are "
            "standardised with training-span statistics only, and the model predicts "
            "T+1..T+H at once. On the test span it is scored (MAE, RMSE, MASE, direction "
            "accuracy for returns) beside the naive, seasonal-naive and linear AR baselines. "
            "Writes a run directory: config.json, series.json, model.safetensors (best "
            "validation loss), metrics.jsonl, trainer_state/, report.json, forecast.png. "
            "--resume RUN_DIR continues an interrupted run exactly."
        ),
        epilog=(
            "packaged series (--dataset) and the settings they default to:\n"
            "  co2     weekly Mauna Loa CO2: --transform diff --window 104 --horizon 4\n"
            "          --season 52\n"
            "  sp500   S&P 500 daily Adj Close, --transform logret --window 60 --horizon 5\n"
            "  nasdaq  NASDAQ daily Adj Close, same settings as sp500\n"
            "examples:\n"
            "  rnnkit train forecast --dataset co2 --out runs/co2\n"
            "  rnnkit train forecast --dataset sp500 --out runs/sp500\n"
            "  rnnkit train forecast --resume runs/sp500 --steps 4000\n"
            "  rnnkit train forecast --csv sales.csv --target units --date-column day "
            "--window 28 --horizon 7 --season 7 --out runs/sales"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = parser.add_argument_group("data")
    source = data.add_mutually_exclusive_group()
    source.add_argument("--csv", metavar="FILE", help="CSV file with a header line")
    source.add_argument(
        "--dataset",
        choices=("co2", "sp500", "nasdaq"),
        help="a packaged series (statsmodels co2, arch sp500/nasdaq) instead of --csv",
    )
    data.add_argument("--target", metavar="COL", help="column to forecast")
    data.add_argument(
        "--features",
        metavar="COLS",
        help="comma-separated extra input columns (standardised, not transformed)",
    )
    data.add_argument("--date-column", metavar="C", help="dates; must be sorted, no duplicates")
    data.add_argument(
        "--date-format", metavar="FMT", help="strptime format of the dates (default: inferred)"
    )
    data.add_argument("--window", type=int, metavar="W", help="rows the model sees")
    data.add_argument("--horizon", type=int, metavar="H", help="predict T+1..T+H")
    data.add_argument(
        "--transform",
        choices=("levels", "diff", "logret"),
        help="model the target as levels, differences or log returns (default levels)",
    )
    data.add_argument(
        "--season", type=int, metavar="S", help="period of the seasonal-naive baseline"
    )
    data.add_argument(
        "--fill",
        choices=("interpolate", "forward", "none"),
        default="interpolate",
        help="missing values: interpolate (causally), carry forward, or refuse (default "
        "interpolate)",
    )
    data.add_argument(
        "--val-fraction", type=float, default=0.15, help="validation share (default 0.15)"
    )
    data.add_argument("--test-fraction", type=float, default=0.15, help="test share (default 0.15)")
    data.add_argument("--ar-order", type=int, help="lags of the AR baseline (default: --window)")

    model = parser.add_argument_group("model")
    model.add_argument("--cell", choices=CELLS, default="lstm")
    model.add_argument("--hidden-size", type=int, default=64, help="default 64")
    model.add_argument("--num-layers", type=int, default=1, help="default 1")
    model.add_argument("--dropout", type=float, default=0.0, help="default 0")
    add_layer_options(model, ("layer_norm",))

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--batch-size", type=int, default=64, help="windows per batch (default 64)")
    add_optimisation_options(opt, lr=2e-3, clip_norm=1.0, optimizer=False, warmup=False)
    add_stopping_options(
        parser.add_argument_group("length of training"),
        what="passes over the training windows",
        steps_help=f"optimiser steps (default {DEFAULT_STEPS})",
        eval_every=100,
        eval_help="validate every N steps (default 100)",
    )
    add_run_options(
        parser.add_argument_group("run"),
        default_out="runs/forecast",
        resume=True,
        threads_help="torch threads (default 1: forecasting models are small, and on a busy "
        "2-core machine a second thread made a training step about 10x slower)",
        json_help="print the test report as one JSON object on stdout",
    )
    parser.set_defaults(func=run)


def _series_config(args):
    from rnnkit.data.series import PACKAGED, SeriesConfig

    preset = PACKAGED[args.dataset] if args.dataset else None
    defaults = preset.defaults if preset else {}
    target = args.target or (preset.target if preset else None)
    if target is None:
        raise UsageError("--target COL is required with --csv")
    window = args.window or defaults.get("window")
    horizon = args.horizon or defaults.get("horizon")
    if window is None or horizon is None:
        raise UsageError("--window W and --horizon H are required with --csv")
    features = (
        tuple(c.strip() for c in args.features.split(",") if c.strip()) if args.features else ()
    )
    date_column = args.date_column or (preset.date_column if preset else None)
    date_format = args.date_format or (
        preset.date_format if preset and date_column == preset.date_column else None
    )
    try:
        return SeriesConfig(
            target=target,
            window=window,
            horizon=horizon,
            features=features,
            date_column=date_column,
            date_format=date_format,
            transform=args.transform or defaults.get("transform", "levels"),
            fill=args.fill,
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _check(args) -> None:
    check_positive(
        args,
        "--window",
        "--horizon",
        "--season",
        "--ar-order",
        "--hidden-size",
        "--num-layers",
        "--batch-size",
    )
    check_training_options(args)
    check_probability(args, "--dropout")
    if args.csv is None and args.dataset is None:
        raise UsageError(
            "give the data: --csv FILE (with --target, --window, --horizon) "
            "or --dataset co2|sp500|nasdaq"
        )
    check_cell_options(args, args.cell)


def run(args) -> int:
    import torch

    from rnnkit.data.series import PACKAGED
    from rnnkit.tasks.forecaster import train_forecaster
    from rnnkit.train import ProgressBar

    if args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    if args.resume:
        return _resume(args)
    _check(args)
    series = _series_config(args)
    season = args.season
    if season is None and args.dataset:
        season = PACKAGED[args.dataset].defaults.get("season")
    train = train_config_from_args(args, {"steps": DEFAULT_STEPS})
    layer_options = {"layer_norm": True} if args.layer_norm else {}
    model = {
        "cell": args.cell,
        "hidden_size": args.hidden_size,
        "num_layers": args.num_layers,
        "dropout": args.dropout,
        "layer_options": layer_options,
    }
    callbacks = [ProgressBar(unit_name="win")] if args.progress and not args.json else []
    result, run_dir, report = train_forecaster(
        args.out,
        series=series,
        csv=args.csv,
        dataset=args.dataset,
        model=model,
        train=train,
        batch_size=args.batch_size,
        season=season,
        ar_order=args.ar_order,
        force=args.force,
        callbacks=callbacks,
    )
    return _print(args, result, run_dir, report)


def _resume(args) -> int:
    from rnnkit.tasks.forecaster import resume_forecaster
    from rnnkit.train import ProgressBar

    check_resume(args)
    check_positive(args, "--steps", "--epochs", "--time-budget")
    limits = limits_from_args(args)
    callbacks = [ProgressBar(unit_name="win")] if args.progress and not args.json else []
    try:
        result, run_dir, report = resume_forecaster(args.resume, limits=limits, callbacks=callbacks)
    except InvalidInputError:
        raise
    except ValueError as exc:  # limits rejected by TrainConfig
        raise UsageError(str(exc)) from None
    return _print(args, result, run_dir, report)


def _print(args, result, run_dir, report) -> int:
    from rnnkit.tasks.forecaster import format_report

    if args.json:
        print(json.dumps({"run": str(run_dir.path), **report}, ensure_ascii=False))
        return 0
    print(
        f"{result.stop_reason} after {result.step} steps, {result.elapsed:.0f} s; "
        f"weights of step {report['best_step']} (best validation loss)"
    )
    print(format_report(report))
    print(f"run saved in {run_dir.path} (report.json, forecast.png)")
    if result.stop_reason == "interrupted":
        print(f"interrupted; continue with: rnnkit train forecast --resume {run_dir.path}",
              file=sys.stderr)  # fmt: skip
        return 130
    return 0
