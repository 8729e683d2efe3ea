"""Settings the data chooses: evaluation once per epoch and the language model's width, depth,
embedding, dropout, weight decay and streams by the size of its training text, recorded in the
run and said in the summary."""

from __future__ import annotations

import json
import random

import pytest

from rnnkit import runs
from rnnkit.tasks.lm import SPEC, LMConfig, TextData
from rnnkit.tasks.lm_defaults import BY_SIZE, size_aware
from rnnkit.train import TrainConfig, Trainer
from rnnkit.train.config import evaluation_interval

TINY = {"embedding_size": 4, "hidden_size": 8, "num_layers": 1}


def write_text(path, characters: int) -> str:
    rng = random.Random(0)
    path.write_text("".join(rng.choices("abcdefgh \n", k=characters)), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("characters", "dropout"),
    [(1_000, 0.3), (99_999, 0.3), (100_000, 0.2), (399_999, 0.2), (400_000, 0.0), (10**8, 0.0)],
)
def test_dropout_follows_the_table(characters, dropout):
    assert size_aware(characters).dropout == dropout
    assert BY_SIZE[-1][0] is None and BY_SIZE[-1][1].dropout == 0.0


@pytest.mark.parametrize(
    ("characters", "dropout", "corpus"),
    [(20_000, 0.3, "small corpus"), (250_000, 0.2, "medium corpus"), (450_000, 0.0, "large")],
)
def test_a_run_records_what_the_text_chose(tmp_path, characters, dropout, corpus):
    text = write_text(tmp_path / "t.txt", characters)
    data = TextData(text=text, batch_size=8, bptt=25)
    done = runs.train_run(
        SPEC,
        tmp_path / "run",
        data=data,
        model=LMConfig(**TINY),
        train=TrainConfig(steps=2, eval_every=None),
    )
    config = json.loads((done.run.path / "config.json").read_text())
    train_chars = config["data"]["train_characters"]
    per_epoch = len(SPEC.prepare(data, 0).train)
    assert config["model"]["dropout"] == dropout
    assert config["train"]["eval_every"] == evaluation_interval(per_epoch) == min(500, per_epoch)
    note = f"{train_chars:,} training characters → dropout {dropout:g}, evaluation every "
    assert done.note.startswith(corpus) and note in done.note
    assert config["data_defaults"] == done.note == done.to_dict()["data_defaults"]


def test_given_settings_are_kept_and_not_announced(tmp_path):
    text = write_text(tmp_path / "t.txt", 5_000)
    data = TextData(text=text, batch_size=4, bptt=25)
    done = runs.train_run(
        SPEC,
        tmp_path / "a",
        data=data,
        model=LMConfig(**TINY, dropout=0.1),
        train=TrainConfig(steps=2, eval_every=None),
    )
    assert json.loads((done.run.path / "config.json").read_text())["model"]["dropout"] == 0.1
    assert done.note.startswith("small corpus") and "dropout" not in done.note
    done = runs.train_run(
        SPEC,
        tmp_path / "b",
        data=data,
        model=LMConfig(**TINY, dropout=0.0),
        train=TrainConfig(steps=2, eval_every=7),
    )
    config = json.loads((done.run.path / "config.json").read_text())
    assert config["train"]["eval_every"] == 7 and done.note == ""
    assert "data_defaults" not in config


def test_the_trainer_evaluates_once_per_epoch_when_left_to_the_data():
    import torch
    from torch import nn

    from rnnkit.train import StepOutput, Task

    class Mean(Task):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def step(self, batch, state=None):
            loss = (self.w - batch).pow(2).mean()
            return StepOutput(loss=loss, count=batch.numel())

    train = [torch.ones(2)] * 6
    trainer = Trainer(Mean(), TrainConfig(steps=14, eval_every=None), train, [torch.ones(2)])
    trainer.fit()
    evaluated = [row["step"] for row in trainer.history]
    assert evaluated == [6, 12, 14]


def test_the_command_prints_what_the_text_chose(tmp_path, capsys):
    from rnnkit.cli.main import main

    text = write_text(tmp_path / "t.txt", 3_000)
    code = main(
        ["train", "lm", "--text", text, "--steps", "2", "--batch-size", "4", "--bptt", "20",
         "--hidden-size", "8", "--embedding-size", "4", "--num-layers", "1",
         "--out", str(tmp_path / "run")]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "small corpus: 2,700 training characters → dropout 0.3, weight decay 0.3, " in out


@pytest.mark.parametrize(
    ("characters", "width"), [(1_000, (1, 128)), (99_999, (1, 128)), (100_000, (2, 256))]
)
def test_width_follows_the_table(characters, width):
    sized = size_aware(characters)
    assert (sized.num_layers, sized.hidden_size) == width


@pytest.mark.parametrize(
    ("characters", "streams", "embedding", "decay"),
    [(1_000, 8, 128, 0.3), (99_999, 8, 128, 0.3), (100_000, 32, 64, 0.0), (10**7, 32, 64, 0.0)],
)
def test_streams_embedding_and_decay_follow_the_table(characters, streams, embedding, decay):
    sized = size_aware(characters)
    assert (sized.batch_size, sized.embedding_size, sized.weight_decay) == (
        streams,
        embedding,
        decay,
    )


def test_a_small_text_gets_the_narrow_model_unless_given(tmp_path):
    text = write_text(tmp_path / "t.txt", 3_000)
    data = TextData(text=text, batch_size=4, bptt=25)
    done = runs.train_run(
        SPEC,
        tmp_path / "a",
        data=data,
        model=LMConfig(embedding_size=4, dropout=0.0),
        train=TrainConfig(steps=1, eval_every=5),
    )
    model = json.loads((done.run.path / "config.json").read_text())["model"]
    assert (model["num_layers"], model["hidden_size"]) == (1, 128)
    assert done.note.endswith("training characters → 1×128 lstm")
    done = runs.train_run(
        SPEC,
        tmp_path / "b",
        data=data,
        model=LMConfig(embedding_size=4, hidden_size=16, dropout=0.0),
        train=TrainConfig(steps=1, eval_every=5),
    )
    model = json.loads((done.run.path / "config.json").read_text())["model"]
    assert (model["num_layers"], model["hidden_size"]) == (1, 16)  # the layers from the table
    assert done.note.endswith("→ 1×16 lstm")


def test_a_small_text_chooses_streams_embedding_and_decay_unless_given(tmp_path):
    text = write_text(tmp_path / "t.txt", 3_000)
    done = runs.train_run(
        SPEC,
        tmp_path / "a",
        data=TextData(text=text, bptt=25),
        model=LMConfig(hidden_size=8, num_layers=1, dropout=0.0),
        train=TrainConfig(steps=1, eval_every=5, optimizer="adamw", weight_decay=None),
    )
    config = json.loads((done.run.path / "config.json").read_text())
    assert config["data"]["batch_size"] == 8 and config["model"]["embedding_size"] == 128
    assert config["train"]["weight_decay"] == 0.3
    assert done.note.endswith("→ embedding 128, weight decay 0.3, 8 streams")
    assert len(SPEC.prepare(SPEC.saved_data(config["data"]), 0).train.ids) == 2_700
    # Adam's decay is L2, where 0.3 would be far too strong: it stays 0. Given values are kept.
    done = runs.train_run(
        SPEC,
        tmp_path / "b",
        data=TextData(text=text, bptt=25, batch_size=4),
        model=LMConfig(hidden_size=8, num_layers=1, dropout=0.0, embedding_size=4),
        train=TrainConfig(steps=1, eval_every=5, optimizer="adam", weight_decay=None),
    )
    config = json.loads((done.run.path / "config.json").read_text())
    assert config["data"]["batch_size"] == 4 and config["model"]["embedding_size"] == 4
    assert config["train"]["weight_decay"] == 0.0 and done.note == ""


def test_tied_weights_take_the_hidden_size_as_embedding(tmp_path):
    text = write_text(tmp_path / "t.txt", 3_000)
    done = runs.train_run(
        SPEC,
        tmp_path / "a",
        data=TextData(text=text, bptt=25, batch_size=4),
        model=LMConfig(hidden_size=8, num_layers=1, dropout=0.0, tie_weights=True),
        train=TrainConfig(steps=1, eval_every=5),
    )
    model = json.loads((done.run.path / "config.json").read_text())["model"]
    assert model["embedding_size"] == 8 and done.note == ""
