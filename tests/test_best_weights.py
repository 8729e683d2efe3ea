"""Best weights: with validation data the run keeps the weights of the lowest validation loss
(``model.safetensors``, the task after ``fit``), the last state stays in ``trainer_state/`` for
an exact resume, and early stopping is on by default."""

from __future__ import annotations

import pytest
import torch

from rnnkit.io import RunDir, load_tensors
from rnnkit.train import Callback, TrainConfig, Trainer
from rnnkit.train.config import EARLY_STOPPING
from test_train_engine import Recurrent, Streams


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Spoil(Callback):
    """From step ``after`` on, scale every weight by 1.5 after each update: validation gets
    worse, so the best weights are those of an early evaluation."""

    def __init__(self, after: int):
        self.after = after

    def on_step_end(self, trainer, info):
        if info.step >= self.after:
            with torch.no_grad():
                for p in trainer.task.parameters():
                    p.mul_(1.5)


class Record(Callback):
    """The weights and validation loss at every evaluation."""

    def __init__(self):
        self.seen = []

    def on_evaluate(self, trainer, metrics):
        state = {k: v.detach().clone() for k, v in trainer.task.state_dict().items()}
        self.seen.append((metrics["val_loss"], trainer.step, state))


class StopAt(Callback):
    def __init__(self, at):
        self.at = at

    def on_step_end(self, trainer, info):
        if info.step == self.at:
            trainer.request_stop("test")


def _trainer(run=None, callbacks=(), steps=24, **config):
    config = {"steps": steps, "eval_every": 2, "lr": 0.05, "seed": 0, **config}
    return Trainer(Recurrent(), TrainConfig(**config), Streams(n=4), Streams(n=2), run=run,
                   callbacks=[Spoil(after=8), *callbacks])  # fmt: skip


def test_the_run_keeps_the_best_evaluation_s_weights(tmp_path):
    run = RunDir.prepare(tmp_path / "run", force=False).create()
    record = Record()
    trainer = _trainer(run, [record], early_stopping=0)
    result = trainer.fit()
    assert result.step == 24 and result.stop_reason == "steps"
    loss, step, best = min(record.seen, key=lambda s: s[0])
    assert step < 12 and result.best_step == step  # spoiling made later evaluations worse
    saved, last = (
        load_tensors(run.model_path),
        load_tensors(run.path / "trainer_state" / "model.safetensors"),
    )
    for name, tensor in best.items():
        assert torch.equal(saved[name], tensor), name
        assert torch.equal(trainer.task.state_dict()[name], tensor), name
    assert any(not torch.equal(last[k], best[k]) for k in best)  # the last state is kept too
    assert trainer.evaluate()["loss"] == pytest.approx(loss, rel=1e-6)


def test_best_weights_survive_a_kill_and_resume_bit_identically(tmp_path):
    whole = RunDir.prepare(tmp_path / "whole", force=False).create()
    _trainer(whole, early_stopping=0).fit()
    part = RunDir.prepare(tmp_path / "part", force=False).create()
    assert _trainer(part, [StopAt(14)], early_stopping=0).fit().step == 14
    result = _trainer(part, early_stopping=0).fit(resume=True)
    assert result.step == 24
    for file in ("model.safetensors", "trainer_state/model.safetensors"):
        a, b = load_tensors(whole.path / file), load_tensors(part.path / file)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), file


def test_early_stopping_is_on_by_default_with_validation_only():
    assert TrainConfig(steps=1).early_stopping == EARLY_STOPPING
    result = _trainer(steps=400).fit()
    assert result.stop_reason == "early_stopping" and result.step < 400
    assert result.bad_evals == EARLY_STOPPING
    no_val = Trainer(Recurrent(), TrainConfig(steps=60, eval_every=2), Streams(n=4),
                     callbacks=[Spoil(after=8)])  # fmt: skip
    result = no_val.fit()
    assert result.stop_reason == "steps" and result.best_step is None


def test_early_stopping_zero_is_off_and_negative_is_refused():
    assert _trainer(steps=60, early_stopping=0).fit().stop_reason == "steps"
    with pytest.raises(ValueError, match="early_stopping must be an integer >= 0"):
        TrainConfig(steps=1, early_stopping=-1)
