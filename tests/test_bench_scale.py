"""rnnkit bench scale: runs the training command and reads its throughput (times, never asserts)."""

from rnnkit.bench.scale import TINY, Setting, scale_benchmark
from rnnkit.cli.main import main


def test_one_setting_reports_its_throughput():
    (row,) = scale_benchmark([Setting(1, 1)], steps=2, repeats=1, model=TINY)
    assert row["setting"] == "1 process(es) x 1 thread(s) on cpu"
    assert row["chars_per_s"] > 0 and row["ratio"] == 1.0


def test_bad_counts_are_refused(capsys):
    assert main(["bench", "scale", "--steps", "0"]) == 2
    assert "--steps and --repeats must be >= 1" in capsys.readouterr().err
