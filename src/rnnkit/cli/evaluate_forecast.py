"""``rnnkit evaluate`` for forecasting runs: the model and every baseline on the test span.

Called by :mod:`rnnkit.cli.evaluate` for runs whose ``config.json`` says ``"task": "forecast"``.
Without ``--data`` the run's own CSV is read again (it must be unchanged) and its test span is
scored; with ``--data FILE`` every origin of that file with a full window and known targets is
scored, with the run's scaler, AR coefficients and MASE scale.
"""

from __future__ import annotations


def evaluate(args, run, config) -> dict:
    """Metrics of the model and of the naive, seasonal-naive and AR baselines, by name.

    With ``--json`` the report keeps its structure (``model``, ``baselines`` → ``naive`` …);
    for the aligned text output it is flattened to ``<forecaster>_<metric>`` lines.
    """
    from rnnkit.tasks.forecaster import evaluate_forecast_run

    report = evaluate_forecast_run(run.path, csv=getattr(args, "data", None))
    source = report.pop("data")
    what = (
        f"every complete origin of {source}"
        if report["span"] == "all"
        else f"{report['span']} span of {source}"
    )
    if getattr(args, "json", False):
        return {"data": what, **report}
    flat: dict = {"data": what}
    flat["origins"] = report["origins"]
    flat["period"] = f"{report['first_origin']} .. {report['last_origin']}"
    flat["horizon"] = report["horizon"]
    flat["transform"] = report["transform"]
    entries = {"model": report["model"], **report["baselines"]}
    keys = ["mae", "rmse", "mase", "return_mae", "direction_accuracy"]
    for name, metrics in entries.items():
        for key in keys:
            if key in metrics:
                value = metrics[key]
                flat[f"{name}_{key}"] = "-" if value is None else value
        at = f"_at_T+{report['horizon']}"
        for key in ("mae", "return_mae", "return_rmse", "direction_accuracy"):
            if key in metrics["last_horizon"]:
                value = metrics["last_horizon"][key]
                flat[f"{name}_{key}{at}"] = "-" if value is None else value
    if "up_fraction" in report:
        flat["always_up_direction_accuracy"] = report["up_fraction"]
        flat[f"always_up_direction_accuracy_at_T+{report['horizon']}"] = report[
            "up_fraction_last_horizon"
        ]
    flat["ranking_by_mae"] = " < ".join(report["ranking"])
    flat["verdict"] = report["verdict"]
    return flat
