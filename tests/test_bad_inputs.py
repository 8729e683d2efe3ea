"""Every bad input is one ``error:`` line and exit 2, never a traceback; nothing on disk is lost.

Inputs tried: ``.ts`` values ``-nan``/``+nan``/``inf``/``-inf``/``1e39``, ``@dimensions two``,
a bare ``@classLabel``, corrupt ``.gz``/``.xz``/``.bz2`` CSVs, UTF-8 byte-order marks (CSV,
``.ts``, TSV pairs, ``translate --file``), file names that are not UTF-8, a forecast test span
without observed values, a seed that overflowed the per-epoch generator, non-finite
``--forget-bias``, and crafted ``config.json``/``vocab.json``/encoders of the fixture runs.
Faults injected: ``ENOSPC``/``EACCES`` from ``os.replace`` while a command writes its output.
"""

from __future__ import annotations

import copy
import errno
import json
import math
import os
import random
import shutil
import traceback
from pathlib import Path

import numpy as np
import pytest

from rnnkit.cli.main import main
from rnnkit.data.batching import EPOCH_SEED_STRIDE, Shuffler, epoch_seed
from rnnkit.data.pairs import read_pairs
from rnnkit.data.series import ForecastData, SeriesConfig
from rnnkit.data.textclass import read_text_csv
from rnnkit.data.ts import read_ts
from rnnkit.errors import InvalidInputError
from rnnkit.io import json_line

FIXTURES = Path(__file__).parent / "fixtures" / "runs"
TINY = ["--epochs", "1", "--hidden-size", "4", "--no-progress"]


def write_ts(path, first="1.0", dimensions="@dimensions 1", class_label="@classLabel true a b"):
    lines = ["@problemName toy", dimensions, "@equalLength true", class_label, "@data"]
    rng = random.Random(0)
    for i in range(12):
        values = [f"{rng.gauss(i % 2, 1):.3f}" for _ in range(5)]
        lines.append(",".join(values) + ":" + "ab"[i % 2])
    lines[5] = f"{first},1,2,3,4:a"
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: "), err
    assert not any("Traceback" in line for line in err)
    return err[-1]


# -- .ts values and headers --------------------------------------------------------------------
@pytest.mark.parametrize("value", ["-nan", "+nan", "inf", "-inf", "1e39", "NaN"])
def test_ts_values_that_are_not_finite_float32_are_refused(tmp_path, value):
    path = write_ts(tmp_path / "x.ts", first=value)
    with pytest.raises(InvalidInputError, match=r"line 6, dimension 1"):
        read_ts(path)


@pytest.mark.parametrize(
    ("header", "match"),
    [
        ({"dimensions": "@dimensions two"}, "@dimensions must be a positive integer, got 'two'"),
        ({"dimensions": "@dimensions 0"}, "@dimensions must be a positive integer"),
        ({"class_label": "@classLabel"}, "@classLabel needs 'true'"),
        ({"class_label": "@classLabel maybe a b"}, "@classLabel needs 'true'"),
    ],
)
def test_ts_malformed_headers_are_one_error(tmp_path, header, match):
    with pytest.raises(InvalidInputError, match=match):
        read_ts(write_ts(tmp_path / "x.ts", **header))


def test_ts_with_nan_is_refused_before_training_from_the_cli(tmp_path, capsys):
    bad = write_ts(tmp_path / "bad.ts", first="-nan")
    good = write_ts(tmp_path / "good.ts")
    out = tmp_path / "run"
    args = ["train", "classify", "--ts-train", str(bad), "--ts-test", str(good)]
    assert main([*args, "--out", str(out), *TINY]) == 2
    assert "'-nan', not a finite float32 number" in error_line(capsys)
    assert not out.exists()


# -- byte-order marks --------------------------------------------------------------------------
def test_byte_order_mark_is_not_part_of_a_csv_header(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_text("text,label\nfine,pos\nbad,neg\n", encoding="utf-8-sig")
    assert read_text_csv(path).labels == ["pos", "neg"]


def test_byte_order_mark_in_ts_and_tsv_pairs(tmp_path):
    ts = write_ts(tmp_path / "x.ts")
    ts.write_bytes(b"\xef\xbb\xbf" + ts.read_bytes())
    assert read_ts(ts).dimensions == 1
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("ab\tba\ncd\tdc\n", encoding="utf-8-sig")
    assert read_pairs(pairs)[0] == ("ab", "ba")


def test_translate_file_with_a_byte_order_mark(tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(FIXTURES / "seq2seq" / "run", run)
    source = (FIXTURES / "seq2seq" / "dates.tsv").read_text(encoding="utf-8").split("\t")[0]
    lines = tmp_path / "in.txt"
    lines.write_text(source + "\n", encoding="utf-8-sig")
    assert main(["translate", str(run), "--file", str(lines), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["translations"][0]["input"] == source


# -- compressed files --------------------------------------------------------------------------
CORRUPT = {
    ".gz": b"\x1f\x8b\x08\x00garbage-garbage-garbage",
    ".xz": b"\xfd7zXZ\x00garbage-garbage",
    ".bz2": b"BZh9garbage-garbage",
}


@pytest.mark.parametrize("suffix", sorted(CORRUPT))
def test_corrupt_compressed_csv_is_one_error(tmp_path, suffix):
    path = tmp_path / f"data.csv{suffix}"
    path.write_bytes(CORRUPT[suffix])
    with pytest.raises(InvalidInputError, match="cannot read as CSV"):
        read_text_csv(path)


@pytest.mark.parametrize("suffix", [".gz", ".xz"])
def test_corrupt_compressed_series_csv_is_one_error(tmp_path, suffix, capsys):
    path = tmp_path / f"series.csv{suffix}"
    path.write_bytes(CORRUPT[suffix])
    out = tmp_path / "run"
    args = ["train", "forecast", "--csv", str(path), "--target", "y", "--window", "4"]
    args += ["--horizon", "1", "--out", str(out)]
    assert main([*args, *TINY]) == 2
    assert "is not a readable CSV file" in error_line(capsys)


# -- names that are not UTF-8 ------------------------------------------------------------------
@pytest.mark.skipif(os.name != "posix", reason="POSIX file names are bytes")
def test_a_file_name_that_is_not_utf8_is_recorded_and_read_back(tmp_path):
    from rnnkit import runs
    from rnnkit.train import TrainConfig

    name = os.fsdecode(b"reviews\xff.csv")  # '\udcff' (PEP 383)
    rows = [
        f"{'good fine' if i % 2 else 'bad poor'} {i},{'pos' if i % 2 else 'neg'}" for i in range(20)
    ]
    (tmp_path / name).write_text("text,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    spec = runs.task_spec("classify")
    data = spec.data_config(csv=str(tmp_path / name), min_freq=1, batch_size=4)
    model = spec.model_config(hidden_size=4, embedding_size=4)
    done = runs.train_run(
        spec, tmp_path / "run", data=data, model=model, train=TrainConfig(epochs=1)
    )
    raw = (done.run.path / "config.json").read_bytes()
    raw.decode("utf-8")  # strict UTF-8 on disk
    assert json.loads(raw)["data"]["csv"] == str(tmp_path / name)
    assert runs.evaluate_run(done.run.path)["count"] == done.report["count"]


def test_json_line_is_strict_and_valid_utf8_with_non_finite_numbers_and_odd_names():
    text = json_line({"loss": math.nan, "x": [1.0, -math.inf], "name": os.fsdecode(b"a\xff")})
    text.encode("utf-8")
    obj = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict {c}"))
    assert obj["loss"] is None and obj["x"] == [1.0, None]
    assert obj["non_finite"] == {"loss": "nan", "x.1": "-inf"}
    assert obj["name"] == os.fsdecode(b"a\xff")


# -- forecast spans, seeds, layer options ------------------------------------------------------
def test_forecast_test_span_without_observed_values_is_refused_before_training(tmp_path):
    levels = np.concatenate([10 + np.sin(np.arange(100) / 3), np.full(20, np.nan)])
    config = SeriesConfig(target="y", window=8, horizon=2)
    with pytest.raises(InvalidInputError, match=r"the test span \(lines .*\) has no observed 'y'"):
        ForecastData(levels, config=config, source="sales.csv")


def test_forecast_cli_refuses_an_unscorable_test_span_and_writes_nothing(tmp_path, capsys):
    csv = tmp_path / "gap.csv"
    values = [f"{10 + math.sin(i / 3):.3f}" for i in range(100)] + [""] * 20
    csv.write_text("y\n" + "\n".join(values) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    args = ["train", "forecast", "--csv", str(csv), "--target", "y", "--window", "8"]
    assert main([*args, "--horizon", "2", "--out", str(out), *TINY]) == 2
    assert "has no observed 'y' value" in error_line(capsys)
    assert not out.exists()


def test_a_large_seed_does_not_overflow_the_epoch_generator():
    seed = 10**14  # seed * stride > 2**64: torch.Generator.manual_seed refused it
    assert seed * EPOCH_SEED_STRIDE > 2**64
    assert 0 <= epoch_seed(seed, 3) < 2**64
    assert epoch_seed(2, 1) == 2 * EPOCH_SEED_STRIDE + 1  # small seeds keep their batches
    a = Shuffler.for_epoch(seed, 1, "torch").permutation(5)
    assert sorted(a) == list(range(5))


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_forget_bias_is_refused(tmp_path, value, capsys):
    text = FIXTURES / "hamlet.txt"
    out = tmp_path / "run"
    args = ["train", "lm", "--text", str(text), "--batch-size", "2", "--bptt", "10"]
    assert (
        main([*args, "--steps", "1", "--out", str(out), "--no-progress", f"--forget-bias={value}"])
        == 2
    )
    assert "forget_bias must be a finite number" in error_line(capsys)
    assert not out.exists()


# -- full disk, read-only folder ---------------------------------------------------------------
def forecast_run(tmp_path) -> Path:
    run = tmp_path / "fc"
    shutil.copytree(FIXTURES / "forecast", run)
    config = json.loads((run / "config.json").read_text())
    config["data"]["csv"] = str(run / "sales.csv")
    (run / "config.json").write_text(json.dumps(config))
    return run


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.EROFS])
def test_a_full_disk_or_read_only_folder_is_one_error_and_the_old_file_stays(
    tmp_path, monkeypatch, capsys, code
):
    run = forecast_run(tmp_path)
    out = tmp_path / "forecasts.csv"
    out.write_text("old forecasts\n")

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace", fail)
    args = ["forecast", str(run), "--csv", str(run / "sales.csv"), "--out", str(out), "--force"]
    assert main(args) == 2
    assert f"cannot write {out}" in error_line(capsys)
    assert out.read_text() == "old forecasts\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


# -- crafted run files -------------------------------------------------------------------------
def fixture_runs(tmp_path) -> dict[str, Path]:
    """Copies of every fixture run, their data paths pointed at the copies' data."""
    found = {}
    for name, src, data in [
        (
            "lm",
            FIXTURES / "lm",
            {"source": FIXTURES / "hamlet.txt", "text": FIXTURES / "hamlet.txt"},
        ),
        ("classify", FIXTURES / "classify" / "text", {"csv": "reviews.csv"}),
        (
            "series",
            FIXTURES / "classify" / "series",
            {"ts_train": "toy_TRAIN.ts", "ts_test": "toy_TEST.ts"},
        ),
        ("forecast", FIXTURES / "forecast", {"csv": "sales.csv"}),
        ("seq2seq", FIXTURES / "seq2seq" / "run", {"pairs": FIXTURES / "seq2seq" / "dates.tsv"}),
        ("tag", FIXTURES / "tag" / "run", {}),
    ]:
        run = tmp_path / name
        shutil.copytree(src, run)
        config = json.loads((run / "config.json").read_text())
        for key, value in data.items():
            config["data"][key] = str(value if isinstance(value, Path) else run / value)
        (run / "config.json").write_text(json.dumps(config))
        found[name] = run
    return found


BAD_VALUES = [None, "x", -1, 1.5e308, [], {}, True]


# config.json keys the run lifecycle itself reads (rnnkit/runs.py): "task" and "train" are
# fuzzed by test_crafted_lifecycle_keys_exit_2 below.
LIFECYCLE_KEYS = ("task", "train")


def mutations(obj, rng: random.Random, count: int, skip=()):
    """``count`` copies of ``obj``, each with one key deleted or one value of the wrong type
    (top-level keys in ``skip`` are left alone)."""
    paths = []

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                if not path and k in skip:
                    continue
                paths.append((*path, k))
                walk(v, (*path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node[:3]):
                paths.append((*path, i))
                walk(v, (*path, i))

    walk(obj, ())
    if not paths:
        return [BAD_VALUES[1], []]
    out = []
    for _ in range(count):
        path = rng.choice(paths)
        mutated = copy.deepcopy(obj)
        node = mutated
        for key in path[:-1]:
            node = node[key]
        if isinstance(node, dict) and rng.random() < 0.3:
            del node[path[-1]]
        else:
            node[path[-1]] = rng.choice(BAD_VALUES)
        out.append(mutated)
    return out


def commands(task: str, run: Path) -> list[list[str]]:
    cmds = [["evaluate", str(run)]]
    if task == "lm":
        cmds.append(["sample", str(run), "--length", "5"])
        cmds.append(["train", "lm", "--resume", str(run), "--steps", "1", "--no-progress"])
    return cmds


def test_crafted_run_files_exit_2_never_a_traceback(tmp_path, capsys):
    """A small fuzzer: every JSON file of every fixture run, mutated (a key removed, a value of
    the wrong type, the file truncated), under evaluate, sample and --resume."""
    rng = random.Random(13)
    failures = []
    runs_ = fixture_runs(tmp_path)
    tried = 0
    for task, run in runs_.items():
        for name in sorted(p.name for p in run.glob("*.json")):
            original = (run / name).read_text()
            skip = LIFECYCLE_KEYS if name == "config.json" else ()
            count = int(os.environ.get("RNNKIT_FUZZ", "4"))
            variants = [json.dumps(m) for m in mutations(json.loads(original), rng, count, skip)]
            variants.append(original[: len(original) // 2])  # torn file
            for text in variants:
                (run / name).write_text(text)
                for cmd in commands(task, run):
                    tried += 1
                    try:
                        code = main(cmd)
                    except SystemExit as exc:  # argparse
                        code = exc.code
                    except Exception as exc:  # noqa: BLE001 - the point of the test
                        where = traceback.extract_tb(exc.__traceback__)[-1]
                        failures.append(
                            f"{task}/{name} {cmd[0]}: {type(exc).__name__}: {exc} "
                            f"at {Path(where.filename).name}:{where.lineno} ({text[:300]})"
                        )
                        continue
                    if code not in (0, 2):
                        failures.append(f"{task}/{name} {cmd[0]}: exit {code}")
                (run / name).write_text(original)
                shutil.rmtree(run / "trainer_state", ignore_errors=True)
    capsys.readouterr()
    assert tried > 50
    assert not failures, "\n".join(failures[:20])


def test_crafted_lifecycle_keys_exit_2(tmp_path, capsys):
    run = fixture_runs(tmp_path)["lm"]
    config = json.loads((run / "config.json").read_text())
    failures = []
    for mutated in ({**config, "train": True}, {**config, "task": ["lm"]}):
        (run / "config.json").write_text(json.dumps(mutated))
        try:
            main(["evaluate", str(run)])
        except Exception as exc:  # noqa: BLE001
            failures.append(exc)
    capsys.readouterr()
    assert not failures


# -- honest numbers ----------------------------------------------------------------------------
def test_class_ids_of_numeric_looking_labels_do_not_depend_on_pythonhashseed():
    import subprocess
    import sys

    code = (
        "from rnnkit.data.textclass import LabelEncoder;"
        "print(LabelEncoder.build(['1', '1.0', '01', '2', 'nan', 'inf', '+1', 'b', 'a', "
        "'1e0', '10']).classes)"
    )
    seen = set()
    for seed in ("0", "1", "2", "3", "4", "5"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        seen.add(out.stdout)
    assert len(seen) == 1, seen
    classes = eval(seen.pop())  # a list of str printed by Python
    assert classes[:5] == ["+1", "01", "1", "1.0", "1e0"]  # equal numbers: by their text
    assert classes[5:] == ["2", "10", "a", "b", "inf", "nan"]


def test_forecasts_that_overflow_are_reported_not_written(tmp_path, monkeypatch, capsys):
    from rnnkit.tasks import forecaster

    run = forecast_run(tmp_path)
    real = forecaster.Forecaster.forecast

    def overflowing(self, data, origins):  # exp(sum of log returns) past float64's range
        out = real(self, data, origins)
        out[..., -1] = np.exp(np.float64(800.0))
        return out

    monkeypatch.setattr(forecaster.Forecaster, "forecast", overflowing)
    out = tmp_path / "forecasts.csv"
    assert main(["forecast", str(run), "--csv", str(run / "sales.csv"), "--out", str(out)]) == 2
    assert "overflow" in error_line(capsys)
    assert not out.exists()
