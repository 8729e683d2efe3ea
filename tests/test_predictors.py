"""rnnkit.load: every task's run as a predictor whose verbs give what the command line prints."""

from __future__ import annotations

import json

import pytest
import torch

import rnnkit
from rnnkit.cli.main import main
from rnnkit.errors import InvalidInputError
from rnnkit.runs import Predictor
from test_runs import FIXTURES, _task_argv


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run per task (music: five chorales), trained once for the module."""
    root = tmp_path_factory.mktemp("predictors")
    made = {}
    for task in ("lm", "classify", "tag", "seq2seq", "forecast", "music"):
        argv = [a if a != "12" else "4" for a in _task_argv(task)]  # 4 steps are enough here
        assert main([*argv, "--out", str(root / task)]) == 0
        made[task] = root / task
    return made


def cli_json(capsys, argv):
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_every_task_loads_as_its_predictor(trained):
    names = {
        "lm": "LMPredictor", "classify": "ClassifierPredictor", "tag": "TaggerPredictor",
        "seq2seq": "Seq2SeqPredictor", "forecast": "ForecasterPredictor",
        "music": "MusicPredictor",
    }  # fmt: skip
    for task, run in trained.items():
        model = rnnkit.load(run)
        assert isinstance(model, Predictor) and type(model).__name__ == names[task]
        assert model.task == task and not model.model.training
        assert task in repr(model)
    with pytest.raises(InvalidInputError, match="tag"):
        rnnkit.load(trained["lm"], task="tag")


def test_language_model_sample_stream_and_score(trained, capsys):
    model = rnnkit.load(trained["lm"])
    text = model.sample("the ", 40, seed=3)
    assert len(text) == 40 and text == model.sample("the ", 40, seed=3)
    capsys.readouterr()
    assert main(["sample", str(trained["lm"]), "--prime", "the ", "--length", "40",
                 "--seed", "3"]) == 0  # fmt: skip
    assert capsys.readouterr().out == "the " + text + "\n"
    whole = model.stream().feed("to be or not to be")
    stream = model.stream()
    parts = torch.cat([stream.feed("to be "), stream.feed("or not"), stream.feed(" to be")])
    assert torch.allclose(parts, whole, atol=1e-5)
    assert torch.allclose(whole.exp().sum(-1), torch.ones(len(whole)), atol=1e-4)
    score = model.score("to be or not to be, that is the question")
    assert score["bpc"] > 0 and score["characters"] > 0
    with pytest.raises(InvalidInputError, match="never saw|not in"):
        model.sample("\u2603", 5)
    assert model.evaluate() == rnnkit.runs.evaluate_run(trained["lm"])


def test_classifier_predict_matches_the_command(trained, capsys):
    model = rnnkit.load(trained["classify"])
    texts = ["a fine film", "dull and slow"]
    got = model.predict(texts)
    assert got[0] == model.predict("a fine film")[0]
    argv = ["predict", str(trained["classify"]), "--text", texts[0], "--text", texts[1], "--json"]
    assert cli_json(capsys, argv)["predictions"] == got
    with pytest.raises(InvalidInputError, match="nothing to predict"):
        model.predict([])


def test_tagger_tags_one_sentence_or_many(trained, capsys):
    model = rnnkit.load(trained["tag"])
    words = (FIXTURES / "tag" / "train.txt").read_text(encoding="utf-8").split()[:3]
    words = [w.rsplit("/", 1)[0] for w in words]
    one = model.tag(" ".join(words))
    assert len(one) == 3 and one == model.tag(words) == model.tag([words])[0]
    shown = cli_json(capsys, ["tag", str(trained["tag"]), "--text", " ".join(words), "--json"])
    assert shown["sentences"][0]["tags"] == one


def test_seq2seq_translate_matches_the_command(trained, capsys):
    model = rnnkit.load(trained["seq2seq"])
    source = (FIXTURES / "seq2seq" / "dates.tsv").read_text(encoding="utf-8").split("\t")[0]
    out = model.translate(source)
    assert isinstance(out, str) and model.translate([source]) == [out]
    assert model.translate(source, details=True)["output"] == out
    shown = cli_json(capsys, ["translate", str(trained["seq2seq"]), "--text", source, "--json"])
    assert shown["translations"][0]["output"] == out


def test_forecaster_table_matches_the_command(trained, capsys):
    model = rnnkit.load(trained["forecast"])
    csv = FIXTURES / "forecast" / "sales.csv"
    table = model.forecast(csv)
    capsys.readouterr()
    assert main(["forecast", str(trained["forecast"]), "--csv", str(csv)]) == 0
    assert capsys.readouterr().out == table.to_csv(index=False, float_format="%.6g")
    assert len(model.forecast(csv, every_origin=True)) > len(table)


def test_music_generate_writes_a_reproducible_piece(trained, tmp_path):
    model = rnnkit.load(trained["music"])
    a = model.generate(tmp_path / "a.mid", bars=1, seed=5)
    b = model.generate(tmp_path / "b.mid", bars=1, seed=5)
    assert (tmp_path / "a.mid").read_bytes() == (tmp_path / "b.mid").read_bytes()
    assert a["notes"] == b["notes"] and (tmp_path / "a.png").is_file()


@pytest.mark.parametrize("command", ["evaluate", "sample", "predict", "tag", "translate",
                                     "forecast"])  # fmt: skip
def test_read_commands_refuse_a_device_that_is_not_there(trained, capsys, command):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    run = {"evaluate": "lm", "sample": "lm", "predict": "classify", "tag": "tag",
           "translate": "seq2seq", "forecast": "forecast"}[command]  # fmt: skip
    sales = str(FIXTURES / "forecast" / "sales.csv")
    extra = {"predict": ["--text", "fine"], "tag": ["--text", "a b"], "translate": ["--text", "x"],
             "forecast": ["--csv", sales]}.get(command, [])  # fmt: skip
    capsys.readouterr()
    assert main([command, str(trained[run]), *extra, "--device", "cuda:7"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --device cuda:7") and "cpu" in err[0]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_every_predictor_on_cuda_gives_what_it_gives_on_the_cpu(trained, tmp_path, capsys):
    for task, run in trained.items():
        cpu, gpu = rnnkit.load(run), rnnkit.load(run, device="cuda")
        assert next(gpu.model.parameters()).is_cuda
        a, b = cpu.evaluate(), gpu.evaluate()
        key = {"forecast": "model", "music": "model"}.get(task)
        if key:
            a, b = a[key], b[key]
        for name, value in a.items():
            if isinstance(value, float):
                assert b[name] == pytest.approx(value, rel=1e-4, abs=1e-5), (task, name)
        assert main(["evaluate", str(run), "--device", "cuda", "--json"]) == 0
    lm = (rnnkit.load(trained["lm"]), rnnkit.load(trained["lm"], device="cuda"))
    assert torch.allclose(lm[0].stream().feed("to be"), lm[1].stream().feed("to be"), atol=1e-4)
    assert len(lm[1].sample("the ", 20, seed=1)) == 20
    clf = [
        rnnkit.load(trained["classify"], device=d).predict(["a fine film"]) for d in ("cpu", "cuda")
    ]
    for label, p in clf[0][0]["probabilities"].items():
        assert clf[1][0]["probabilities"][label] == pytest.approx(p, abs=1e-4)
    tag = [rnnkit.load(trained["tag"], device=d).tag("a b c") for d in ("cpu", "cuda")]
    assert tag[0] == tag[1]
    source = (FIXTURES / "seq2seq" / "dates.tsv").read_text(encoding="utf-8").split("\t")[0]
    out = [
        rnnkit.load(trained["seq2seq"], device=d).translate(source, beam=2) for d in ("cpu", "cuda")
    ]
    assert out[0] == out[1]
    csv = FIXTURES / "forecast" / "sales.csv"
    tables = [rnnkit.load(trained["forecast"], device=d).forecast(csv) for d in ("cpu", "cuda")]
    assert tables[1]["forecast"].to_numpy() == pytest.approx(
        tables[0]["forecast"].to_numpy(), rel=1e-4
    )
    summary = rnnkit.load(trained["music"], device="cuda").generate(
        tmp_path / "p.mid", bars=1, seed=2
    )
    assert (tmp_path / "p.mid").is_file() and summary["bars"] == 1


def test_diagnose_refuses_a_missing_device_and_runs_on_the_cpu(trained, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    capsys.readouterr()
    assert main(["diagnose", "--cells", "gru", "--length", "10", "--device", "cuda:7"]) == 2
    assert capsys.readouterr().err.startswith("error: --device cuda:7")
    argv = ["diagnose", str(trained["lm"]), "--length", "10", "--device", "cpu", "--json"]
    argv.append("--no-plot")
    assert cli_json(capsys, argv)["diagnoses"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_diagnose_on_cuda_measures_what_the_cpu_measures(trained, capsys):
    base = ["diagnose", "--cells", "lstm,gru", "--length", "30", "--json", "--no-plot"]
    cpu = cli_json(capsys, [*base, "--device", "cpu"])["diagnoses"]
    gpu = cli_json(capsys, [*base, "--device", "cuda"])["diagnoses"]
    for a, b in zip(cpu, gpu, strict=True):
        for la, lb in zip(a["layers"], b["layers"], strict=True):
            if la["eta"] is not None:
                assert lb["eta"] == pytest.approx(la["eta"], rel=1e-6)
    assert cli_json(capsys, ["diagnose", str(trained["lm"]), "--length", "10", "--device", "cuda",
                             "--json", "--no-plot"])["diagnoses"]  # fmt: skip


def test_music_stream_scores_a_piece_as_the_report(trained):
    """rnnkit.load(run).stream() over a piece in two chunks gives the report's frame NLL."""
    import numpy as np

    from rnnkit.tasks.music import music_report

    model = rnnkit.load(trained["music"])
    P = model.loaded.encoders.pitches
    piece = np.random.default_rng(0).random((40, P)) < 4 / P
    stream = model.stream()
    logp = np.concatenate([stream.feed(piece[:17]), stream.feed(piece[17:])])
    report = music_report(model.loaded.task, [piece], model.loaded.encoders)
    assert -logp.mean() == pytest.approx(report["model"]["nll"], rel=1e-5)
