"""Baselines in every held-out report, each task's headline figure, `rnnkit bench quality`."""

from __future__ import annotations

import numpy as np
import pytest

from rnnkit.cli import bench_quality
from rnnkit.cli.main import main
from rnnkit.data.tagged import TaggedSentence
from rnnkit.runs import Headline, task_spec
from rnnkit.tasks.seq2seq import pair_baselines
from rnnkit.tasks.tagger import most_frequent_tag_accuracy


def test_headline_beats_in_either_direction():
    assert Headline("bpc", 2.0, False, "bigram", 3.0).beats is True
    assert Headline("accuracy", 0.6, True, "dtw_1nn", 0.7).beats is False
    assert Headline("accuracy", 0.6, True, "dtw_1nn", None).beats is None


def test_most_frequent_tag_uses_the_overall_tag_for_unseen_words():
    train = [
        TaggedSentence(("a", "b", "b"), ("X", "Y", "Z")),
        TaggedSentence(("b", "c"), ("Y", "Y")),
    ]
    # a -> X, b -> Y (2 of its 3), the unseen d -> Y (3 of the 5 training tags)
    test = [TaggedSentence(("a", "b", "d", "b"), ("X", "Y", "Y", "Z"))]
    assert most_frequent_tag_accuracy(train, test) == 0.75


def test_pair_baselines_copy_and_most_frequent_answer():
    train = [("x", "2020-01-01"), ("y", "2020-01-01"), ("z", "1999-12-31")]
    test = [("2020-01-01", "2020-01-01"), ("w", "1999-12-31")]
    base = pair_baselines(train, test)
    assert base["copy"]["exact_match"] == 0.5
    assert base["most_frequent"]["exact_match"] == 0.5


@pytest.mark.parametrize(
    "task, report, want",
    [
        ("lm", {"bpc": 2.1, "baselines": {"unigram": 4.9, "bigram": 3.8}}, ("bigram", 3.8, True)),
        ("classify", {"accuracy": 0.6, "baselines": {"majority": 0.4, "dtw_1nn": 0.7}},
         ("dtw_1nn", 0.7, False)),
        ("classify", {"accuracy": 0.8, "baselines": {"majority": 0.5, "dtw_1nn": None}},
         ("majority", 0.5, True)),
        ("tag", {"accuracy": 0.95, "baselines": {"most_frequent_tag": 0.9}},
         ("most_frequent_tag", 0.9, True)),
        ("seq2seq", {"exact_match": 0.9, "baselines": {"copy": {"exact_match": 0.0},
         "most_frequent": {"exact_match": 0.01}}}, ("most_frequent", 0.01, True)),
        ("forecast", {"model": {"mae": 1.0}, "baselines": {"naive": {"mae": 1.2},
         "ar": {"mae": 0.9}}}, ("ar", 0.9, False)),
        ("music", {"model": {"nll": 4.0}, "baselines": {"marginal": {"nll": 11.0},
         "repeat": {"nll": 6.5}}}, ("repeat", 6.5, True)),
    ],
)  # fmt: skip
def test_every_task_names_its_strongest_baseline(task, report, want):
    head = task_spec(task).headline(report)
    assert (head.baseline, head.baseline_value, head.beats) == want


def write_ts(path, n, seed):
    rng = np.random.default_rng(seed)
    header = "@problemName Toy\n@dimensions 1\n@equalLength true\n@classLabel true up down\n@data\n"
    lines = []
    for i in range(n):
        trend = np.linspace(0, 1 if i % 2 == 0 else -1, 12) * 3 + rng.normal(0, 0.1, 12)
        lines.append(",".join(f"{v:.4f}" for v in trend) + (":up" if i % 2 == 0 else ":down"))
    path.write_text(header + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_row_trains_in_its_own_process_and_is_judged_against_its_baseline(tmp_path, monkeypatch):
    train, test = write_ts(tmp_path / "a.ts", 24, 0), write_ts(tmp_path / "b.ts", 10, 1)
    row = bench_quality.Row(
        "classify toy",
        ("train", "classify", "--ts-train", str(train), "--ts-test", str(test), "--epochs", "2",
         "--hidden-size", "8", "--batch-size", "8"),
        budget=(None, None),
    )  # fmt: skip
    result = bench_quality.run_row(row, True, {}, tmp_path, threads=1)
    assert "error" not in result, result
    assert result["command"].startswith("rnnkit train classify --ts-train a.ts --ts-test b.ts")
    assert result["metric"] == "accuracy" and result["baseline"] == "dtw_1nn"
    assert result["baseline_value"] == 1.0 and result["beats"] is False  # DTW is perfect here
    assert (tmp_path / "classify-toy" / "test_metrics.json").is_file()
    bad = bench_quality.Row("lm missing", ("train", "lm", "--text", str(tmp_path / "no.txt")))
    failed = bench_quality.run_row(bad, True, {}, tmp_path, threads=1)
    assert failed["error"].startswith("error: ") and "no.txt" in failed["error"]
    table = bench_quality.format_table([result, failed])
    assert "LOSES" in table and "lm missing" in table and "error: " in table
    bench_quality.plot([result, failed], tmp_path / "q.png")
    assert (tmp_path / "q.png").stat().st_size > 1000


def test_quick_suite_rows_and_a_bad_filter(capsys, tmp_path):
    quick = [r for r in bench_quality.ROWS if not r.full_only]
    tasks = {r.args[1] for r in quick}
    assert tasks == {"lm", "classify", "tag", "seq2seq", "forecast", "music"}
    assert len(bench_quality.ROWS) > len(quick)  # the full suite adds the larger sizes
    assert main(["bench", "quality", "--only", "nothing", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --only 'nothing' matches no row; rows: lm tragedies")


def test_written_inputs_are_slices_of_packaged_data(tmp_path):
    files = bench_quality._write_inputs(tmp_path, ["comedy-40k.txt", "pd-3k.txt", "pd-40k.txt"])
    assert len(files["comedy-40k.txt"].read_text(encoding="utf-8")) == 40_000
    pd40 = files["pd-40k.txt"].read_text(encoding="utf-8")
    assert len(pd40) == 40_000 and "/" not in pd40
    lines = files["pd-3k.txt"].read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3000 and all("/" in line for line in lines)
