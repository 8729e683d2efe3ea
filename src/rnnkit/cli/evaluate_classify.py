"""``rnnkit evaluate RUN_DIR`` for classification runs (found by ``rnnkit.cli.evaluate``).

Scores the run's test split (its test file, or the random test part of its saved split) or
``--data FILE`` (a labelled CSV with the run's columns, or a ``.ts`` file): loss, accuracy,
macro-F1, per-class precision/recall/F1, and the confusion matrix, printed and written as a PNG
into the run directory (``confusion_test.png``, or ``confusion_<file name>.png`` for --data).
"""

from __future__ import annotations

from pathlib import Path


def evaluate(args, run, config) -> dict:
    import numpy as np

    from rnnkit.tasks.classifier import plot_confusion_matrix
    from rnnkit.tasks.classify import CONFUSION_PNG, evaluate_run

    data_file = getattr(args, "data", None)
    report = evaluate_run(run.path, data_file, getattr(args, "batch_size", None))
    png = run / (CONFUSION_PNG if data_file is None else f"confusion_{Path(data_file).stem}.png")
    cm = np.asarray(report["confusion_matrix"])
    plot_confusion_matrix(cm, report["classes"], png, title=f"accuracy {report['accuracy']:.3f}")
    report["confusion_png"] = str(png)
    if getattr(args, "json", False):
        return report
    # Text output: headline figures, one line per class, then the confusion matrix rows.
    flat = {k: report[k] for k in ("data", "loss", "accuracy", "macro_f1", "count")}
    for name, m in report["per_class"].items():
        flat[f"class {name}"] = (
            f"P {m['precision']:.4f}  R {m['recall']:.4f}  F1 {m['f1']:.4f}  n {m['support']:,}"
        )
    width = max(len(str(v)) for v in [*report["classes"], *cm.ravel().tolist()])
    flat["confusion (columns)"] = " ".join(c.rjust(width) for c in report["classes"])
    for name, row in zip(report["classes"], report["confusion_matrix"]):
        flat[f"confusion {name}"] = " ".join(str(v).rjust(width) for v in row)
    flat["confusion_png"] = report["confusion_png"]
    return flat
