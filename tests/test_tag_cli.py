"""rnnkit train tag / tag / evaluate on a tiny corpus, and every bad input exits 2 cleanly."""

from __future__ import annotations

import json
import random

import pytest
import torch

from rnnkit.cli.main import main

WORDS = {"r": ["我", "你", "他"], "v": ["吃", "看", "买"], "n": ["苹果", "书", "饭", "报纸"]}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def corpus(n: int, seed: int) -> str:
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        pattern = rng.choice([("r", "v", "n"), ("r", "v"), ("n", "v", "n"), ("r", "v", "r")])
        lines.append("  ".join(f"{rng.choice(WORDS[t])}/{t}" for t in pattern))
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("tag")
    data = root / "train.txt"
    data.write_text(corpus(120, 0), encoding="utf-8")
    out = root / "run"
    torch.set_num_threads(1)
    code = main(
        [
            "train",
            "tag",
            "--data",
            str(data),
            "--epochs",
            "6",
            "--lr",
            "0.01",
            "--hidden-size",
            "16",
            "--embedding-size",
            "16",
            "--char-hidden-size",
            "8",
            "--batch-size",
            "8",
            "--crf",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    return root, data, out


def test_train_writes_a_complete_run(trained, capsys):
    _, _, out = trained
    for name in (
        "config.json",
        "vocab.json",
        "split.json",
        "model.safetensors",
        "metrics.jsonl",
        "test_metrics.json",
        "per_tag_f1.png",
        "trainer_state",
    ):
        assert (out / name).exists(), name
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["task"] == "tag" and config["model"]["crf"] is True
    split = json.loads((out / "split.json").read_text(encoding="utf-8"))
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (96, 12, 12)
    assert config["data"]["sentences"] == {"train": 96, "val": 12, "test": 12}


def test_generic_run_loading_rebuilds_the_tagger(trained):
    from rnnkit.runs import load_run
    from rnnkit.tasks.tagger import Tagger

    _, _, out = trained
    task = load_run(out).task
    assert isinstance(task, Tagger) and task.crf is not None and not task.training


def test_tag_prints_word_slash_tag(trained, capsys):
    _, _, out = trained
    capsys.readouterr()
    assert main(["tag", str(out), "--text", "我 吃 苹果"]) == 0
    assert capsys.readouterr().out == "我/r 吃/v 苹果/n\n"
    assert main(["tag", str(out), "--text", "他  看 书", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "sentences": [{"words": ["他", "看", "书"], "tags": ["r", "v", "n"]}]
    }


def test_evaluate_json_on_the_saved_test_split(trained, capsys):
    _, data, out = trained
    capsys.readouterr()
    assert main(["evaluate", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["task"] == "tag" and result["data"].startswith("test part of")
    assert result["sentences"] == 12 and result["accuracy"] == 1.0
    saved = json.loads((out / "test_metrics.json").read_text(encoding="utf-8"))
    assert saved["accuracy"] == result["accuracy"] and saved["tokens"] == result["tokens"]
    assert saved["baselines"] == result["baselines"]
    assert 0 < result["baselines"]["most_frequent_tag"] <= 1
    assert set(result["per_tag"]) == {"r", "v", "n"}
    png = out.parent / "f1.png"
    assert main(["evaluate", str(out), "--data", str(data), "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "accuracy" in text and "tag n" in text
    assert png.read_bytes()[:4] == b"\x89PNG"


def error_of(argv, capsys) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


def test_existing_run_is_not_overwritten(trained, capsys):
    root, data, out = trained
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    err = error_of(
        ["train", "tag", "--data", str(data), "--epochs", "1", "--out", str(out)], capsys
    )
    assert "already holds a run" in err and "--force" in err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


@pytest.mark.parametrize(
    "content,message",
    [
        ("我/r 吃/v\n你/r 看 书/n\n", r"bad.txt:2: malformed token '看'"),
        ("", "no tagged sentences found"),
        ("我/r 吃/r\n你/r\n", "single tag 'r'"),
    ],
)
def test_bad_training_files(tmp_path, capsys, content, message):
    bad = tmp_path / "bad.txt"
    bad.write_text(content, encoding="utf-8")
    out = tmp_path / "run"
    err = error_of(["train", "tag", "--data", str(bad), "--epochs", "1", "--out", str(out)], capsys)
    assert message in err
    assert not out.exists()


def test_test_file_with_unseen_tags(tmp_path, capsys):
    train = tmp_path / "train.txt"
    train.write_text(corpus(30, 1), encoding="utf-8")
    test = tmp_path / "test.txt"
    test.write_text("我/r 吃/v 苹果/nz\n", encoding="utf-8")
    out = tmp_path / "run"
    err = error_of(
        [
            "train",
            "tag",
            "--data",
            str(train),
            "--test",
            str(test),
            "--epochs",
            "1",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert "tags unseen in training: 'nz' (1x)" in err and not out.exists()


def test_conllu_training_and_bad_options(tmp_path, capsys):
    rows = []
    for i, (form, upos) in enumerate([("I", "PRON"), ("eat", "VERB"), ("apples", "NOUN")] * 10):
        rows.append(f"{i % 3 + 1}\t{form}\t_\t{upos}\t_\t_\t_\t_\t_\t_")
        if i % 3 == 2:
            rows.append("")
    data = tmp_path / "a.conllu"
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "tag",
                "--data",
                str(data),
                "--format",
                "conllu",
                "--steps",
                "2",
                "--hidden-size",
                "8",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    saved_tags = json.loads((out / "vocab.json").read_text())["tags"]["tokens"]
    assert saved_tags == ["NOUN", "PRON", "VERB"]
    err = error_of(
        [
            "train",
            "tag",
            "--data",
            str(data),
            "--format",
            "conllu",
            "--column",
            "lemma",
            "--steps",
            "1",
            "--out",
            str(tmp_path / "r2"),
        ],
        capsys,
    )
    assert "a.conllu:1: word 'I' has no LEMMA value" in err
    assert "--dropout must be in [0, 1)" in error_of(
        ["train", "tag", "--dropout", "1.5", "--out", str(tmp_path / "r3")], capsys
    )
    assert "not a run directory" in error_of(["tag", str(tmp_path), "--text", "a"], capsys)
    assert "--text has no words" in error_of(["tag", str(out), "--text", "  "], capsys)
