"""Classifier: pooling against readable references, padding invariance, conv front end, metrics,
and `rnnkit train classify` / `evaluate` / `predict` end to end with every bad input."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rnnkit.cli.main import main
from rnnkit.data.batching import ClassificationBatches, pad_batch
from rnnkit.tasks.classifier import (
    Classifier,
    ClassifierConfig,
    class_weights,
    confusion_matrix,
    metrics_from_confusion,
)


def make(pooling="last", dtype=torch.float64, **options):
    torch.manual_seed(0)
    options.setdefault("vocab_size", 20)
    config = ClassifierConfig(num_classes=3, embedding_size=5, hidden_size=4, pooling=pooling,
                              **options)  # fmt: skip
    return Classifier(config).to(dtype).eval()


def batch(lengths=(6, 4, 1), vocab=20, seed=1):
    g = torch.Generator().manual_seed(seed)
    seqs = [torch.randint(1, vocab, (n,), generator=g) for n in lengths]
    return seqs, *pad_batch(seqs)


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "attention"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_pooling_matches_per_sequence_reference(pooling, bidirectional):
    model = make(pooling, bidirectional=bidirectional, num_layers=2)
    seqs, ids, lengths = batch()
    logits = model(ids, lengths)
    for b, seq in enumerate(seqs):
        # Reference: the sequence alone, unpadded, pooled by the textbook formula.
        out, state = model.encoder(model.embedding(seq).unsqueeze(0))
        h = out[0]  # (L, D*H)
        if pooling == "last":
            h_n = state[0] if isinstance(state, tuple) else state
            D = 2 if bidirectional else 1
            pooled = torch.cat([h_n[-D + d, 0] for d in range(D)])
            if bidirectional:  # forward ends at the last step, backward at the first
                H = model.settings.hidden_size
                torch.testing.assert_close(pooled[:H], h[-1, :H])
                torch.testing.assert_close(pooled[H:], h[0, H:])
        elif pooling == "mean":
            pooled = h.sum(0) / len(seq)
        elif pooling == "max":
            pooled = torch.stack([h[t] for t in range(len(seq))]).max(0).values
        else:
            W1, W2 = model.attention[0], model.attention[2]
            scores = torch.stack([W2(torch.tanh(W1(h[t]))).squeeze() for t in range(len(seq))])
            alpha = torch.exp(scores) / torch.exp(scores).sum()
            pooled = sum(alpha[t] * h[t] for t in range(len(seq)))
        torch.testing.assert_close(logits[b], model.head(pooled), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("conv,cell", [(0, "lstm"), (3, "lstm"), (0, "gru"), (3, "rnn")])
def test_extra_padding_does_not_change_logits(conv, cell):
    model = make("attention", conv_channels=conv, conv_kernel_size=3, conv_stride=2, cell=cell)
    _, ids, lengths = batch((7, 3, 2))
    wider = torch.cat([ids, torch.zeros(3, 5, dtype=ids.dtype)], dim=1)
    torch.testing.assert_close(model(ids, lengths), model(wider, lengths), rtol=0, atol=1e-12)
    alone = model(ids[1:2, :3], lengths[1:2])
    torch.testing.assert_close(model(ids, lengths)[1:2], alone, rtol=0, atol=1e-12)


@pytest.mark.parametrize("k,s", [(3, 1), (3, 2), (4, 3), (5, 4), (8, 4)])
def test_conv_lengths_match_the_convolution(k, s):
    model = make("mean", input_size=2, vocab_size=None, conv_channels=2, conv_kernel_size=k,
                 conv_stride=s)  # fmt: skip
    for L in range(1, 13):
        x = torch.zeros(1, 2, L, dtype=torch.float64)
        if L + 2 * (k // 2) >= k:
            expected = model.conv(x).shape[-1]
            assert int(model.conv_lengths(torch.tensor([L]))) == expected
    # A sequence shorter than the kernel still runs (padded to one output step).
    out = model(torch.randn(2, 1, 2, dtype=torch.float64), torch.tensor([1, 1]))
    assert out.shape == (2, 3) and torch.isfinite(out).all()


def test_series_input_and_finite_gradients_with_max_pooling():
    model = make("max", input_size=3, vocab_size=None).train()
    x, lengths = pad_batch([np.random.randn(n, 3) for n in (5, 2, 1)], dtype=torch.float64)
    out = model.step((x, lengths, torch.tensor([0, 1, 2])))
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert out.count == 3 and out.tokens == 8


def test_members_average_probabilities_and_learn_alone():
    """An ensemble's logits are the log of its members' mean probabilities; in training its
    loss is the sum of the members' losses, so each member's gradient is the one it gets alone."""
    model = make("mean", members=3).train()
    assert len(model.members) == 3 and model.clip_groups() is not None
    assert not torch.equal(model.members[0].head.weight, model.members[1].head.weight)
    seqs, ids, lengths = batch()
    y = torch.tensor([0, 2, 1])
    model.eval()
    probs = torch.stack([torch.softmax(m(ids, lengths), -1) for m in model.members]).mean(0)
    torch.testing.assert_close(torch.softmax(model(ids, lengths), -1), probs)
    torch.testing.assert_close(model(ids, lengths), probs.log())
    out = model.step((ids, lengths, y))  # evaluation: the averaged prediction's loss
    torch.testing.assert_close(out.loss, F.nll_loss(probs.log(), y))
    model.train()
    out = model.step((ids, lengths, y))
    out.loss.backward()
    for member in model.members:
        alone = Classifier(member.settings)
        alone.load_state_dict(member.state_dict())
        alone.train()
        F.cross_entropy(alone(ids, lengths), y).backward()
        for p, q in zip(member.parameters(), alone.parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad.to(p.dtype))
    assert make("mean").clip_groups() is None and make("mean").members is None
    with pytest.raises(ValueError, match="members"):
        ClassifierConfig(num_classes=3, vocab_size=9, members=0)


def test_class_weighted_loss_is_the_weighted_mean_cross_entropy():
    w = torch.tensor([0.5, 2.0, 1.0])
    model = Classifier(ClassifierConfig(num_classes=3, vocab_size=9, hidden_size=4),
                       class_weights=w)  # fmt: skip
    logits = torch.randn(4, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 2])
    manual = sum(-w[c] * F.log_softmax(logits[i], -1)[c] for i, c in enumerate(y)) / w[y].sum()
    torch.testing.assert_close(model.loss(logits, y), manual.to(torch.float64))
    torch.testing.assert_close(class_weights([0, 0, 0, 1], 3), torch.tensor([4 / 9, 4 / 3, 0.0]))


def test_confusion_matrix_and_macro_f1_by_hand():
    y = [0, 0, 1, 1, 1, 2]
    p = [0, 1, 1, 1, 0, 0]
    cm = confusion_matrix(y, p, 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [1, 2, 0], [1, 0, 0]])
    m = metrics_from_confusion(cm)
    assert m["accuracy"] == pytest.approx(3 / 6)
    f1 = [2 * 1 / (2 + 2 + 1), 2 * 2 / (4 + 1 + 1), 0.0]  # 2TP / (2TP + FP + FN)
    assert m["f1"] == pytest.approx(f1)
    assert m["macro_f1"] == pytest.approx(sum(f1) / 3)
    assert m["support"] == [2, 3, 1]
    assert m["precision"][2] == 0.0  # never predicted
    # A class that is neither true nor predicted anywhere is left out of the mean.
    wider = metrics_from_confusion(confusion_matrix(y, p, 4))
    assert wider["macro_f1"] == pytest.approx(sum(f1) / 3)
    assert wider["accuracy"] == pytest.approx(3 / 6)


def test_task_evaluate_sums_confusion_across_batches():
    model = make("mean")
    seqs, ids, lengths = batch((3, 5, 2, 4))
    targets = torch.tensor([0, 1, 2, 1])
    whole = model.evaluate([(ids, lengths, targets)])
    split = model.evaluate(
        [(ids[:1], lengths[:1], targets[:1]), (ids[1:], lengths[1:], targets[1:])]
    )
    assert whole == pytest.approx(split)
    predicted = model(ids, lengths).argmax(-1)
    assert whole["accuracy"] == pytest.approx(float((predicted == targets).double().mean()))


def test_token_dropout_replaces_whole_tokens_in_training_only():
    model = make("mean", token_dropout=0.999999)  # seeded: every token is dropped
    _, ids, lengths = batch((5, 3))
    unknown = ids.masked_fill(ids != 0, 1)  # every real token -> <unk>, padding stays 0
    torch.testing.assert_close(model.train()(ids, lengths), model.eval()(unknown, lengths))
    assert not torch.allclose(model.eval()(ids, lengths), model(unknown, lengths))


def test_config_round_trip_and_bad_values():
    config = ClassifierConfig(num_classes=2, vocab_size=5, pooling="attention")
    assert ClassifierConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="pooling must be one of last, mean, max, attention"):
        ClassifierConfig(num_classes=2, vocab_size=5, pooling="sum")
    with pytest.raises(ValueError, match="exactly one of vocab_size"):
        ClassifierConfig(num_classes=2, vocab_size=5, input_size=3)
    with pytest.raises(ValueError, match="unknown classifier config keys \\['hidden'\\]"):
        ClassifierConfig.from_dict({"num_classes": 2, "vocab_size": 5, "hidden": 3})


def test_pretrained_embeddings_frozen_or_not():
    rows = torch.randn(6, 5)
    config = ClassifierConfig(num_classes=2, vocab_size=6, embedding_size=5, freeze_embeddings=True)
    model = Classifier(config, embeddings=rows)
    torch.testing.assert_close(model.embedding.weight.detach(), rows)
    assert not model.embedding.weight.requires_grad
    with pytest.raises(ValueError, match=r"embeddings must have shape \(6, 5\)"):
        Classifier(config, embeddings=torch.randn(6, 4))


def test_batches_are_seeded_bucketed_and_complete():
    inputs = [np.zeros(n, dtype=np.int64) for n in np.random.default_rng(0).integers(1, 30, 101)]
    source = ClassificationBatches(inputs, list(range(101)), 8, shuffle=True, seed=3,
                                   pool_batches=4)  # fmt: skip
    epoch0 = source.batch_indices(0)
    assert len(epoch0) == len(source) == 13
    assert sorted(np.concatenate(epoch0).tolist()) == list(range(101))
    assert all(np.array_equal(a, b) for a, b in zip(epoch0, source.batch_indices(0)))
    assert not all(np.array_equal(a, b) for a, b in zip(epoch0, source.batch_indices(1)))
    resumed = list(source.epoch(0, start=5))
    assert [b[2].tolist() for b in resumed] == [idx.tolist() for idx in epoch0[5:]]


# -- command line --------------------------------------------------------------------------------
POSITIVE = ["good", "great", "fine", "superb", "lovely"]
NEGATIVE = ["bad", "awful", "dull", "poor", "boring"]


def write_reviews(path, n=120, seed=0, extra_rows=""):
    rng = np.random.default_rng(seed)
    rows = ["id,review,sentiment"]
    for i in range(n):
        positive = i % 2 == 0
        word = rng.choice(POSITIVE if positive else NEGATIVE)
        filler = " ".join(rng.choice(["the", "film", "was", "a", "plot"], rng.integers(1, 6)))
        rows.append(f'{i},"{filler} {word} {filler}",{"pos" if positive else "neg"}')
    path.write_text("\n".join(rows) + "\n" + extra_rows, encoding="utf-8")
    return path


TINY = ["--hidden-size", "8", "--embedding-size", "8", "--batch-size", "16", "--no-progress"]


def text_args(csv, out, *extra):
    return ["train", "classify", "--csv", str(csv), "--text-column", "review", "--label-column",
            "sentiment", "--out", str(out), *TINY, *extra]  # fmt: skip


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("text")
    csv = write_reviews(tmp / "reviews.csv")
    out = tmp / "run"
    assert main(text_args(csv, out, "--epochs", "12", "--lr", "0.02")) == 0
    return csv, out


def test_train_text_writes_a_complete_run(text_run, capsys):
    csv, out = text_run
    for name in ("config.json", "encoders.json", "split.json", "model.safetensors",
                 "metrics.jsonl", "test_metrics.json", "confusion_test.png"):  # fmt: skip
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "classify" and config["data"]["train_examples"] == 96
    splits = json.loads((out / "split.json").read_text())
    rows = splits["train"] + splits["val"] + splits["test"]
    assert sorted(rows) == list(range(2, 122))  # CSV rows 2..121, each in one split
    report = json.loads((out / "test_metrics.json").read_text())
    assert report["count"] == 12 and report["accuracy"] >= 0.75
    assert (out / "confusion_test.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_json_reproduces_the_test_report(text_run, capsys):
    _, out = text_run
    capsys.readouterr()
    assert main(["evaluate", str(out), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    saved = json.loads((out / "test_metrics.json").read_text())
    assert payload["task"] == "classify"
    assert payload["accuracy"] == pytest.approx(saved["accuracy"])
    assert payload["confusion_matrix"] == saved["confusion_matrix"]
    assert payload["classes"] == ["neg", "pos"]
    assert main(["evaluate", str(out)]) == 0
    text = capsys.readouterr().out
    assert "accuracy" in text and "confusion neg" in text


def test_evaluate_on_another_file(text_run, capsys, tmp_path):
    csv, out = text_run
    capsys.readouterr()
    assert main(["evaluate", str(out), "--data", str(csv), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["count"] == 120 and payload["data"] == str(csv)
    assert "plot" not in payload
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    png = tmp_path / "confusion.png"
    argv = ["evaluate", str(out), "--data", str(csv), "--plot", str(png)]
    assert main(argv) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # only read
    assert main(argv) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main([*argv, "--force", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["plot"] == str(png)
    other = tmp_path / "other.csv"
    other.write_text("review,sentiment\ngood,pos\nso-so,mixed\n", encoding="utf-8")
    assert main(["evaluate", str(out), "--data", str(other)]) == 2
    assert "labels unseen in training: 'mixed'" in capsys.readouterr().err


def test_predict_text_and_csv(text_run, capsys, tmp_path):
    csv, out = text_run
    capsys.readouterr()
    assert main(["predict", str(out), "--text", "superb superb", "--text", "awful", "--json"]) == 0
    predictions = json.loads(capsys.readouterr().out)["predictions"]
    assert [p["label"] for p in predictions] == ["pos", "neg"]
    assert sum(predictions[0]["probabilities"].values()) == pytest.approx(1.0)
    assert main(["predict", str(out), "--csv", str(csv), "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 120 and lines[0].split()[0] in ("pos", "neg")


def test_pretrained_vectors_are_loaded_and_kept_frozen(tmp_path):
    csv = write_reviews(tmp_path / "r.csv", n=40)
    vectors = tmp_path / "v.txt"
    vectors.write_text("2 3\ngood 1 2 3\nawful -3 -2 -1\n", encoding="utf-8")
    argv = text_args(
        csv, tmp_path / "run", "--epochs", "1", "--embeddings", str(vectors), "--min-freq", "1"
    )
    at = argv.index("--embedding-size")
    del argv[at : at + 2]  # the size comes from the file
    assert main([*argv, "--freeze-embeddings"]) == 0
    from safetensors.torch import load_file

    weights = load_file(tmp_path / "run/model.safetensors")["embedding.weight"]
    tokens = json.loads((tmp_path / "run/encoders.json").read_text())["input"]["tokens"]
    assert weights.shape == (len(tokens), 3)
    expected = {"good": [1.0, 2.0, 3.0], "awful": [-3.0, -2.0, -1.0]}
    found = [word for word in expected if word in tokens]
    assert found
    for word in found:
        torch.testing.assert_close(weights[tokens.index(word)], torch.tensor(expected[word]))
    config = json.loads((tmp_path / "run/config.json").read_text())
    assert config["model"]["freeze_embeddings"]
    assert config["data"]["embeddings_found"] == len(found)


def test_resume_matches_an_uninterrupted_run(tmp_path):
    # A constant schedule, so stopping after 2 of 3 epochs changes nothing but the stop.
    csv = write_reviews(tmp_path / "r.csv", n=60)
    assert main(text_args(csv, tmp_path / "full", "--epochs", "3", "--schedule", "constant")) == 0
    assert main(text_args(csv, tmp_path / "part", "--epochs", "2", "--schedule", "constant")) == 0
    assert main(["train", "classify", "--resume", str(tmp_path / "part"), "--epochs", "3",
                 "--no-progress"]) == 0  # fmt: skip
    from safetensors.torch import load_file

    full, part = (
        load_file(tmp_path / "full/model.safetensors"),
        load_file(tmp_path / "part/model.safetensors"),
    )
    assert full.keys() == part.keys()
    for name in full:
        assert torch.equal(full[name], part[name]), name


TS_HEADER = (
    "@problemName Toy\n@dimensions {d}\n@equalLength false\n@classLabel true up down\n@data\n"
)


def write_ts(path, n, dims=2, seed=0):
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        up = i % 2 == 0
        T = int(rng.integers(4, 9))
        trend = np.linspace(0, 1 if up else -1, T)
        chans = [trend * 3 + 10 + rng.normal(0, 0.1, T) for _ in range(dims)]
        lines.append(
            ":".join(",".join(f"{v:.4f}" for v in c) for c in chans) + (":up" if up else ":down")
        )
    path.write_text(TS_HEADER.format(d=dims) + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_train_series_evaluate_and_predict(tmp_path, capsys):
    train, test = (
        write_ts(tmp_path / "t_TRAIN.ts", 40),
        write_ts(tmp_path / "t_TEST.ts", 20, seed=1),
    )
    out = tmp_path / "run"
    argv = ["train", "classify", "--ts-train", str(train), "--ts-test", str(test),
            "--out", str(out), "--epochs", "15", "--lr", "0.02", "--conv-frontend", "4",
            "--conv-stride", "2", *TINY[:2], "--batch-size", "8", "--no-progress"]  # fmt: skip
    code = main(argv)
    assert code == 0
    assert re.search(r"test split of \S+_TEST\.ts: accuracy", capsys.readouterr().out)
    encoders = json.loads((out / "encoders.json").read_text())
    assert encoders["input"]["type"] == "series" and len(encoders["input"]["mean"]) == 2
    report = json.loads((out / "test_metrics.json").read_text())
    assert report["accuracy"] >= 0.8
    # Test labels alternate up/down: the majority class is right on half; DTW sees the trends.
    assert report["baselines"]["majority"] == 0.5 and report["baselines"]["dtw_1nn"] >= 0.9
    assert main(["predict", str(out), "--ts", str(test), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["predictions"]) == 20


# -- bad input: one line, exit 2, nothing overwritten ---------------------------------------------
def bad_input_cases(tmp):
    csv = write_reviews(tmp / "ok.csv", n=40)
    one_class = tmp / "one.csv"
    one_class.write_text("review,sentiment\ngood,pos\nfine,pos\n", encoding="utf-8")
    empty_row = write_reviews(tmp / "empty.csv", n=10, extra_rows=",,\n")
    test_csv = tmp / "test.csv"
    test_csv.write_text("review,sentiment\ngood,pos\nmeh,neutral\n", encoding="utf-8")
    vectors = tmp / "v.txt"
    vectors.write_text("2 3\ngood 1 2 3\nbad 3 2 1\n", encoding="utf-8")
    ts_train, ts_test = write_ts(tmp / "a.ts", 10, dims=2), write_ts(tmp / "b.ts", 10, dims=3)
    return {
        "missing column": (
            ["--csv", str(csv), "--text-column", "body", "--label-column", "sentiment"],
            "no column 'body'; columns are 'id', 'review', 'sentiment'",
        ),
        "one class only": (
            ["--csv", str(one_class), "--text-column", "review", "--label-column", "sentiment"],
            "one class only ('pos')",
        ),
        "empty row": (
            ["--csv", str(empty_row), "--text-column", "review", "--label-column", "sentiment"],
            "row 12 is empty",
        ),
        "unseen test label": (
            [
                "--csv",
                str(csv),
                "--test-csv",
                str(test_csv),
                "--text-column",
                "review",
                "--label-column",
                "sentiment",
            ],  # fmt: skip
            "labels unseen in training: 'neutral'",
        ),
        "ts dimension mismatch": (
            ["--ts-train", str(ts_train), "--ts-test", str(ts_test)],
            "3 dimensions but the training file",
        ),
        "embeddings dimension": (
            [
                "--csv",
                str(csv),
                "--text-column",
                "review",
                "--label-column",
                "sentiment",
                "--embeddings",
                str(vectors),
                "--embedding-size",
                "8",
            ],  # fmt: skip
            "vectors have dimension 3 but the model expects 8",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing column",
        "one class only",
        "empty row",
        "unseen test label",
        "ts dimension mismatch",
        "embeddings dimension",
    ],  # fmt: skip
)
def test_bad_input_is_one_line_exit_2_and_touches_nothing(case, text_run, tmp_path, capsys):
    argv, message = bad_input_cases(tmp_path)[case]
    _, existing = text_run
    before = {p.name: p.read_bytes() for p in existing.iterdir() if p.is_file()}
    capsys.readouterr()
    code = main(["train", "classify", *argv, "--out", str(existing), "--force", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err
    after = {p.name: p.read_bytes() for p in existing.iterdir() if p.is_file()}
    assert after == before


def test_existing_run_needs_force(text_run, capsys):
    csv, out = text_run
    capsys.readouterr()
    assert main(text_args(csv, out, "--epochs", "1")) == 2
    assert "already holds a run; pass --force" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--csv", "x.csv", "--ts-train", "y.ts"], "exactly one of --dataset, --csv"),
        (["--csv", "x.csv", "--val-fraction", "1.5"], "--val-fraction must be in [0, 1)"),
        (["--csv", "x.csv", "--peephole", "--cell", "gru"], "--peephole applies to --cell lstm"),
        (["--ts-train", "y.ts", "--embeddings", "v.txt"], "--embeddings applies to CSV text"),
    ],
)
def test_bad_options(argv, message, tmp_path, capsys):
    assert main(["train", "classify", *argv, "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_predict_bad_input(text_run, tmp_path, capsys):
    _, out = text_run
    ts = write_ts(tmp_path / "x.ts", 3)
    capsys.readouterr()
    assert main(["predict", str(out), "--ts", str(ts)]) == 2
    assert "classifies text; pass --text or --csv" in capsys.readouterr().err
    assert main(["predict", str(tmp_path), "--text", "hi"]) == 2
    assert "is not a run directory" in capsys.readouterr().err


def test_resume_by_steps_is_bit_identical_and_json_is_one_object(tmp_path, capsys):
    # Stopped mid-epoch by --steps, resumed with more: the same weights as one uninterrupted run.
    csv = write_reviews(tmp_path / "r.csv", n=60)
    constant = ["--schedule", "constant", "--threads", "1"]
    assert main(text_args(csv, tmp_path / "full", "--steps", "11", *constant)) == 0
    assert main(text_args(csv, tmp_path / "part", "--steps", "6", *constant)) == 0
    capsys.readouterr()
    resume = ["train", "classify", "--resume", str(tmp_path / "part"), "--steps", "11"]
    assert main([*resume, "--no-progress", "--json"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out)  # exactly one JSON object, nothing else
    assert out.count("\n") == 1 and summary["steps"] == 11 and summary["task"] == "classify"
    assert summary["test"]["data"].startswith("test split of")
    from safetensors.torch import load_file

    full = load_file(tmp_path / "full/model.safetensors")
    part = load_file(tmp_path / "part/model.safetensors")
    assert full.keys() == part.keys()
    for name in full:
        assert torch.equal(full[name], part[name]), name
    assert (tmp_path / "part/split.json").read_bytes() == (
        tmp_path / "full/split.json"
    ).read_bytes()


def test_an_ensemble_trains_each_member_as_alone_and_resumes_exactly(tmp_path, capsys):
    """--members 3 on series: member 0 is bit for bit the single net of the same seed (its
    init and batch order; no dropout); an interrupted run resumes to the uninterrupted
    weights; the run predicts and exports as one model."""
    from safetensors.torch import load_file

    train = write_ts(tmp_path / "t_TRAIN.ts", 40)
    test = write_ts(tmp_path / "t_TEST.ts", 12, seed=1)
    base = ["train", "classify", "--ts-train", str(train), "--ts-test", str(test),
            "--hidden-size", "4", "--batch-size", "8", "--output-dropout", "0",
            "--schedule", "constant", "--threads", "1", "--no-progress"]  # fmt: skip
    assert main([*base, "--steps", "9", "--members", "1", "--out", str(tmp_path / "one")]) == 0
    assert main([*base, "--steps", "9", "--members", "3", "--out", str(tmp_path / "full")]) == 0
    assert main([*base, "--steps", "4", "--members", "3", "--out", str(tmp_path / "part")]) == 0
    resume = ["train", "classify", "--resume", str(tmp_path / "part"), "--steps", "9"]
    assert main([*resume, "--no-progress"]) == 0
    one = load_file(tmp_path / "one/model.safetensors")
    full = load_file(tmp_path / "full/model.safetensors")
    part = load_file(tmp_path / "part/model.safetensors")
    assert full.keys() == part.keys() and all(torch.equal(full[k], part[k]) for k in full)
    assert all(torch.equal(one[k], full[f"members.0.{k}"]) for k in one)
    assert not torch.equal(full["members.0.head.weight"], full["members.1.head.weight"])
    config = json.loads((tmp_path / "full/config.json").read_text())
    assert config["model"]["members"] == 3
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "full"), "--ts", str(test), "--json"]) == 0
    predictions = json.loads(capsys.readouterr().out)["predictions"]
    assert len(predictions) == 12
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-5 for p in predictions)
    pytest.importorskip("onnxruntime")
    out = tmp_path / "full.onnx"
    assert main(["export", str(tmp_path / "full"), "--out", str(out), "--check"]) == 0
    assert "accuracy" in capsys.readouterr().out


def test_train_json_prints_one_object(tmp_path, capsys):
    csv = write_reviews(tmp_path / "r.csv", n=40)
    capsys.readouterr()
    assert main(text_args(csv, tmp_path / "run", "--steps", "2", "--json")) == 0
    out = capsys.readouterr().out
    summary = json.loads(out)
    assert out.count("\n") == 1
    assert summary["steps"] == 2 and summary["stop_reason"] == "steps"
    assert summary["test"]["accuracy"] == pytest.approx(
        json.loads((tmp_path / "run/test_metrics.json").read_text())["accuracy"]
    )


def test_default_training_is_ten_epochs_evaluated_once_per_epoch(tmp_path):
    from rnnkit import runs
    from rnnkit.tasks.classify import SPEC, ClassifyData

    csv = write_reviews(tmp_path / "r.csv", n=40)
    data = ClassifyData(csv=str(csv), text_column="review", label_column="sentiment",
                        batch_size=16)  # fmt: skip
    train = SPEC.default_train().replace(epochs=2, min_steps=None)
    done = runs.train_run(SPEC, tmp_path / "run", data=data, model={"hidden_size": 4}, train=train)
    config = json.loads((tmp_path / "run/config.json").read_text())
    per_epoch = config["train"]["eval_every"]
    assert per_epoch == 2  # 32 training examples, batches of 16
    lines = (tmp_path / "run/metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [2, 4]
    assert SPEC.default_train().epochs == 10 and SPEC.default_train().min_steps == 1000
    loaded = runs.load_run(tmp_path / "run", task="classify")
    assert runs.evaluate_run(loaded)["accuracy"] == pytest.approx(done.report["accuracy"])


def _prepared(batches, examples, length=10, series=True, val=True):
    """What ClassifySpec.data_defaults reads of the prepared data."""
    from types import SimpleNamespace

    return SimpleNamespace(
        train=[None] * batches,
        val=[None] if val else None,
        targets={"train": [0] * examples},
        inputs={"train": [np.zeros((length, 1))] * examples},
        input_size=1 if series else None,
        record={} if val else {"val_fraction": 0.0},
    )


def test_a_small_training_set_trains_the_minimum_steps_and_says_so():
    from rnnkit.tasks.classify import SPEC, ClassifyModel

    model = ClassifyModel()
    _, train, note = SPEC.data_defaults(model, SPEC.default_train(), _prepared(2, 45))
    assert train.eval_every == 25 and train.min_steps == 1000 and train.epochs == 10
    assert note == (
        "small training set: 45 examples in 2 batches per epoch → 500 epochs (at least 1000 "
        "steps), evaluated every 25 steps, 45 training series → an ensemble of 3"
    )
    _, train, note = SPEC.data_defaults(model, SPEC.default_train(), _prepared(320, 10_000))
    assert train.eval_every == 320 and note == ""  # ten epochs are 3,200 steps: as given
    given = SPEC.default_train().replace(min_steps=None, epochs=3)  # --epochs 3
    _, train, note = SPEC.data_defaults(ClassifyModel(members=1), given, _prepared(2, 45))
    assert train.eval_every == 2 and note == ""


def test_tiny_series_sets_get_an_ensemble_by_default():
    from rnnkit.tasks.classify import SMALL_DATA_MEMBERS, SPEC, ClassifyModel

    def members(model, prepared):
        return SPEC.data_defaults(model, SPEC.default_train(), prepared)[0].members

    assert SMALL_DATA_MEMBERS > 1
    assert members(ClassifyModel(), _prepared(2, 45)) == SMALL_DATA_MEMBERS
    assert members(ClassifyModel(), _prepared(2, 50)) == 1  # GunPoint's 50 series: one net
    assert members(ClassifyModel(), _prepared(2, 45, series=False)) == 1  # text
    assert members(ClassifyModel(members=2), _prepared(2, 45)) == 2  # as given
    assert members(ClassifyModel(members=1), _prepared(2, 45)) == 1


def test_the_default_cell_is_a_gru():
    from rnnkit.tasks.classify import ClassifyModel

    assert ClassifyModel().cell == "gru" and ClassifyModel(cell="lstm").cell == "lstm"


@pytest.mark.parametrize(
    ("length", "series", "front"),
    [(100, True, (0, 1, 3)), (128, True, (0, 1, 3)), (129, True, (32, 2, 8)),
     (251, True, (32, 2, 8)), (427, True, (32, 4, 8)), (1460, True, (32, 12, 24)),
     (1460, False, (0, 1, 3))],
)  # fmt: skip
def test_long_series_get_a_strided_front_end(length, series, front):
    from rnnkit.tasks.classify import SPEC, ClassifyModel

    model, _, note = SPEC.data_defaults(
        ClassifyModel(), SPEC.default_train(), _prepared(300, 9_600, length, series)
    )
    assert (model.conv_channels, model.conv_stride, model.conv_kernel_size) == front
    steps = -(-length // front[1])
    assert (f"conv front end {front[0]}×{front[2]} stride {front[1]} ({steps} steps)" in note) == (
        front[0] > 0
    )
    given = ClassifyModel(conv_channels=0)
    model, _, _ = SPEC.data_defaults(given, SPEC.default_train(), _prepared(300, 9_600, length))
    assert model.conv_channels == 0
    given = ClassifyModel(conv_channels=16, conv_stride=3)
    model, _, _ = SPEC.data_defaults(given, SPEC.default_train(), _prepared(300, 9_600, length))
    assert (model.conv_channels, model.conv_stride, model.conv_kernel_size) == (16, 3, 3)


def test_an_ensemble_under_data_parallel_processes_is_refused(monkeypatch):
    from rnnkit import distributed
    from rnnkit.errors import InvalidInputError
    from rnnkit.tasks.classify import SPEC, ClassifyModel

    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    with pytest.raises(InvalidInputError, match="--members 3 .* pass --members 1"):
        SPEC.data_defaults(ClassifyModel(members=3), SPEC.default_train(), _prepared(2, 45))
    SPEC.data_defaults(ClassifyModel(), SPEC.default_train(), _prepared(2, 45))  # one net: fine


def test_few_long_series_train_without_a_validation_split(tmp_path):
    from rnnkit import runs
    from rnnkit.tasks.classify import SPEC

    def write(path, n, length):
        rng = np.random.default_rng(0)
        rows = [
            ",".join(f"{v:.3f}" for v in rng.normal(size=length) + k) + f":{k}"
            for k in (0, 1)
            for _ in range(n // 2)
        ]
        header = "@problemName t\n@univariate true\n@classLabel true 0 1\n@data\n"
        path.write_text(header + "\n".join(rows) + "\n")
        return str(path)

    short = {"ts_train": write(tmp_path / "s.ts", 40, 100)}
    long = {"ts_train": write(tmp_path / "l.ts", 40, 300)}
    train = SPEC.default_train().replace(epochs=1, min_steps=None)
    model = {"hidden_size": 4}
    done = runs.train_run(SPEC, tmp_path / "a", data=long, model=model, train=train)
    config = json.loads((done.run.path / "config.json").read_text())
    assert config["data"]["val_fraction"] == 0.0 and config["data"]["val_examples"] == 0
    assert config["model"]["conv_stride"] == 3 and "no validation split" in done.note
    done = runs.train_run(SPEC, tmp_path / "b", data=short, model=model, train=train)
    config = json.loads((done.run.path / "config.json").read_text())
    assert config["data"]["val_fraction"] == 0.1 and config["data"]["val_examples"] == 4
    assert config["model"]["conv_channels"] == 0
    # Given, the fraction is kept for long series too; resume rebuilds the same split.
    given = {**long, "val_fraction": 0.1}
    done = runs.train_run(SPEC, tmp_path / "c", data=given, model=model, train=train)
    assert json.loads((done.run.path / "config.json").read_text())["data"]["val_examples"] == 4


def test_min_steps_raises_the_epoch_limit_to_whole_epochs(tmp_path):
    from rnnkit import runs
    from rnnkit.tasks.classify import SPEC, ClassifyData

    csv = write_reviews(tmp_path / "r.csv", n=40)
    data = ClassifyData(csv=str(csv), text_column="review", label_column="sentiment",
                        batch_size=16)  # fmt: skip
    train = SPEC.default_train().replace(epochs=2, min_steps=7, early_stopping=0)
    done = runs.train_run(SPEC, tmp_path / "run", data=data, model={"hidden_size": 4}, train=train)
    assert done.result.step == 8 and done.result.epoch == 4  # 2 batches per epoch: 4 epochs
    assert done.result.stop_reason == "epochs"
