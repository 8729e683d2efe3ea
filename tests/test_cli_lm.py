"""`rnnkit train lm`, `sample`, `evaluate`, `env` end to end on a tiny text; every bad input."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from rnnkit.cli.main import main


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and a busy machine makes more threads crawl)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY = [
    "--hidden-size",
    "8",
    "--embedding-size",
    "4",
    "--num-layers",
    "1",
    "--batch-size",
    "2",
    "--bptt",
    "8",
    "--no-progress",
]


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "text.txt"
    path.write_text("the cat sat on the mat. the dog sat on the log.\n" * 12, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, text_file):
    out = tmp_path_factory.mktemp("runs") / "run"
    code = main(
        [
            "train",
            "lm",
            "--text",
            str(text_file),
            "--steps",
            "12",
            "--eval-every",
            "6",
            "--out",
            str(out),
            *TINY,
        ]
    )
    assert code == 0
    return out


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(capsys, fragment):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert fragment in err, err
    assert "Traceback" not in err


def test_train_writes_a_run(run_dir, capsys):
    names = {p.name for p in run_dir.iterdir()}
    assert {
        "config.json",
        "vocab.json",
        "model.safetensors",
        "metrics.jsonl",
        "trainer_state",
    } <= names
    config = json.loads((run_dir / "config.json").read_text())
    assert config["task"] == "lm" and config["train"]["steps"] == 12
    assert config["model"]["hidden_size"] == 8 and config["versions"]["torch"]
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [6, 12]


def test_sample_streams_prime_and_length(run_dir, capsys):
    assert main(["sample", str(run_dir), "--prime", "the ", "--length", "30", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("the ") and len(out) == 4 + 30 + 1
    assert (
        main(
            [
                "sample",
                str(run_dir),
                "--prime",
                "the ",
                "--length",
                "30",
                "--seed",
                "1",
                "--top-k",
                "3",
                "--temperature",
                "0.5",
            ]
        )
        == 0
    )
    assert len(capsys.readouterr().out) == 35


def test_evaluate_json_is_one_object(run_dir, text_file, capsys):
    assert main(["evaluate", str(run_dir), "--json"]) == 0
    out = capsys.readouterr().out
    payload = json.loads(out)
    assert out.count("\n") == 1
    assert payload["task"] == "lm" and payload["loss"] > 0
    assert payload["bpc"] == pytest.approx(payload["loss"] / 0.6931471805599453)
    assert payload["data"].startswith("validation part of")
    assert main(["evaluate", str(run_dir), "--text", str(text_file)]) == 0
    out = capsys.readouterr().out
    assert "perplexity" in out and "bpc" in out
    assert main(["evaluate", str(run_dir), "--plot", str(run_dir.parent / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "lm runs have no plot of a held-out report" in err and "classify (the conf" in err
    assert not (run_dir.parent / "x.png").exists()


def test_evaluate_counts_unseen_characters(run_dir, tmp_path, capsys):
    other = tmp_path / "other.txt"
    other.write_text("the cat sat on the mat. ZZZ qq", encoding="utf-8")
    assert main(["evaluate", str(run_dir), "--text", str(other), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["unknown"] == 5 and payload["unknown_chars"] == ["Z", "q"]


def test_env(capsys):
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    for word in ("rnnkit", "torch", "python", "numpy", "torch_threads", "native"):
        assert word in out
    assert main(["env", "--json"]) == 0
    assert "native" in json.loads(capsys.readouterr().out)["backends"]


def test_resume_extends_a_finished_run(run_dir, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    assert main(["train", "lm", "--resume", str(copy), "--steps", "14", "--no-progress"]) == 0
    steps = [json.loads(line)["step"] for line in (copy / "metrics.jsonl").open()]
    assert steps == [6, 12, 14]
    assert json.loads((copy / "config.json").read_text())["train"]["steps"] == 14


# -- bad input: one line `error: ...`, exit 2, nothing overwritten --------------------------------
def bad_text_files(folder):
    (folder / "empty.txt").write_bytes(b"")
    (folder / "latin1.txt").write_bytes(b"caf\xe9 au lait " * 10)
    (folder / "short.txt").write_text("abc")
    (folder / "adir").mkdir()
    return folder


@pytest.mark.parametrize(
    "name,fragment",
    [
        ("missing.txt", "does not exist"),
        ("adir", "is a directory"),
        ("empty.txt", "is empty"),
        ("latin1.txt", "not valid UTF-8: byte 0xe9 at offset 3"),
        ("short.txt", "shorter than one window"),
    ],
)
def test_train_refuses_bad_text(tmp_path, capsys, name, fragment):
    folder = bad_text_files(tmp_path)
    out = tmp_path / "out"
    code = main(
        ["train", "lm", "--text", str(folder / name), "--steps", "2", "--out", str(out), *TINY]
    )
    assert code == 2
    one_line_error(capsys, fragment)
    assert not out.exists()


def test_train_refuses_existing_out_and_leaves_it(run_dir, text_file, capsys):
    before = snapshot(run_dir)
    code = main(
        ["train", "lm", "--text", str(text_file), "--steps", "2", "--out", str(run_dir), *TINY]
    )
    assert code == 2
    one_line_error(capsys, "already holds a run; pass --force")
    assert snapshot(run_dir) == before


def test_force_never_replaces_a_folder_that_is_not_a_run(tmp_path, text_file, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    code = main(
        [
            "train",
            "lm",
            "--text",
            str(text_file),
            "--steps",
            "2",
            "--out",
            str(tmp_path),
            "--force",
            *TINY,
        ]
    )
    assert code == 2
    one_line_error(capsys, "is not a run directory")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_force_with_bad_text_keeps_the_old_run(run_dir, tmp_path, capsys):
    before = snapshot(run_dir)
    code = main(
        [
            "train",
            "lm",
            "--text",
            str(tmp_path / "nope.txt"),
            "--steps",
            "2",
            "--out",
            str(run_dir),
            "--force",
            *TINY,
        ]
    )
    assert code == 2
    one_line_error(capsys, "does not exist")
    assert snapshot(run_dir) == before


@pytest.mark.parametrize("command", ["sample", "evaluate"])
def test_not_a_run(tmp_path, capsys, command):
    assert main([command, str(tmp_path)]) == 2
    one_line_error(capsys, "is not a run directory")
    assert main([command, str(tmp_path / "nope")]) == 2
    one_line_error(capsys, "does not exist")


def test_resume_of_not_a_run(tmp_path, capsys):
    assert main(["train", "lm", "--resume", str(tmp_path), "--no-progress"]) == 2
    one_line_error(capsys, "is not a run directory")


@pytest.mark.parametrize("damage", ["truncate", "flip"])
@pytest.mark.parametrize("command", ["sample", "evaluate"])
def test_corrupted_weights(run_dir, tmp_path, capsys, damage, command):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[-5] ^= 0xFF  # inside the tensor bytes: the file still parses
    weights.write_bytes(bytes(data))
    assert main([command, str(copy)]) == 2
    one_line_error(capsys, "truncated or corrupted" if damage == "truncate" else "corrupted")


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["train", "lm", "--hidden-size", "-5"], "--hidden-size must be > 0, got -5"),
        (["train", "lm", "--batch-size", "0"], "--batch-size must be > 0, got 0"),
        (["train", "lm", "--lr", "-1"], "--lr must be > 0"),
        (["train", "lm", "--time-budget", "0"], "--time-budget must be > 0"),
        (["train", "lm", "--dropout", "1.5"], "--dropout must be in [0, 1)"),
        (["train", "lm", "--val-fraction", "0"], "--val-fraction must be in (0, 1)"),
        (["train", "lm", "--cell", "gru", "--peephole"], "--peephole applies to --cell lstm"),
        (["sample", "RUN", "--temperature", "0"], "--temperature must be > 0, got 0.0"),
        (["sample", "RUN", "--length", "-1"], "--length must be >= 0"),
        (["sample", "RUN", "--top-k", "0"], "--top-k must be >= 1"),
        (["sample", "RUN", "--prime", "xyz€"], "never saw in training: 'x', 'y', 'z', '€'"),
        (["evaluate", "RUN", "--bptt", "0"], "--bptt must be >= 1"),
    ],
)
def test_nonsense_values(run_dir, tmp_path, capsys, argv, fragment):
    argv = [str(run_dir) if a == "RUN" else a for a in argv]
    if argv[0] == "train":
        argv += ["--out", str(tmp_path / "out"), "--no-progress"]
    assert main(argv) == 2
    one_line_error(capsys, fragment)
    assert not (tmp_path / "out").exists()
