"""``rnnkit train forecast``: direct multi-horizon forecasting of a CSV column, with baselines."""

from __future__ import annotations

import argparse
import dataclasses

from rnnkit.cli.options import (
    add_command_tail,
    add_config_flags,
    add_layer_options,
    add_limit_flags,
    add_train_flags,
    cell_names,
    check_cell_options,
    check_positive,
    check_probability,
    check_training_options,
    config_from_args,
    layer_options_from_args,
    run_training,
    train_config,
)

# Forecasting models are small: on a busy 2-core machine a second thread made a training step
# about 10x slower, so one thread is the default here.
DEFAULT_THREADS = 1


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
            "validation loss), metrics.jsonl, trainer_state/, test_metrics.json, forecast.png. "
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
    from rnnkit.tasks.forecaster import SPEC, ForecasterConfig, SeriesData

    data = parser.add_argument_group("data")
    add_config_flags(data.add_mutually_exclusive_group(), SeriesData, ["csv", "dataset"])
    names = [f.name for f in dataclasses.fields(SeriesData) if f.name not in ("csv", "dataset")]
    # --features is a comma-separated list; None (not given) becomes no features.
    add_config_flags(data, SeriesData, names, defaults={"features": None})
    model = parser.add_argument_group("model")
    add_config_flags(model, ForecasterConfig, choices={"cell": cell_names()})
    variants = parser.add_argument_group("cell variants and regularisers (rnnkit layers)")
    add_layer_options(variants)
    default = dataclasses.asdict(SPEC.default_train())
    add_train_flags(parser.add_argument_group("optimisation"), defaults=default)
    stop = parser.add_argument_group("length of training (default --steps 2000)")
    add_limit_flags(stop, epochs_help="passes over the training windows")
    run_group = parser.add_argument_group("run")
    add_command_tail(run_group, "forecast")
    for action in run_group._group_actions:
        if action.dest == "threads":
            action.help = (
                f"torch CPU threads (default {DEFAULT_THREADS}: forecasting models are small, "
                "and on a busy 2-core machine a second thread made a step about 10x slower)"
            )
    parser.set_defaults(func=run, threads=DEFAULT_THREADS)


def run(args) -> int:
    from rnnkit.tasks.forecaster import SPEC, ForecasterConfig, SeriesData

    check_positive(
        args,
        "--window",
        "--horizon",
        "--season",
        "--ar-order",
        "--hidden-size",
        "--num-layers",
        "--batch-size",
        "--step-size",
        "--gamma",
        "--plateau-patience",
        "--clip-value",
    )
    check_training_options(args)
    check_probability(args, "--dropout", "--variational-dropout", "--weight-drop", "--zoneout")
    if not args.resume:
        check_cell_options(args, args.cell)

    def make_run():
        data = config_from_args(SeriesData, args)
        model = config_from_args(
            ForecasterConfig, args, layer_options=layer_options_from_args(args)
        )
        return data, model, train_config(args, SPEC.default_train())

    return run_training(args, "forecast", make_run)
