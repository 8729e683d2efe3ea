"""Exact resume: an interrupted run (stop, Ctrl-C, SIGKILL) continued with --resume ends with
weights, optimiser state and metrics bit-identical to an uninterrupted run with the same seed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rnnkit.io import load_tensors, read_jsonl
from rnnkit.tasks.lm import TextData, resume_language_model, train_language_model
from rnnkit.train import Callback, TrainConfig


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and a busy machine makes more threads crawl)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Stop(Callback):
    """Stop at step ``at``: ``stop`` (request_stop), or send ourselves a signal."""

    def __init__(self, at: int, how: str):
        self.at, self.how = at, how

    def on_step_end(self, trainer, info):
        if info.step == self.at:
            if self.how == "stop":
                trainer.request_stop("test")
            else:
                os.kill(os.getpid(), getattr(signal, self.how))


def train(mode: str, out, text, at: int | None = None, how: str | None = None) -> str:
    """A small run: two layers with dropout (RNG matters), shifted windows (epoch offsets
    matter), several epochs (the carried state resets), evaluations every 4 steps."""
    callbacks = [Stop(at, how)] if at is not None else []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if mode == "new":
            result, _ = train_language_model(
                out,
                data=TextData(text=str(text), batch_size=4, bptt=8, val_fraction=0.2),
                model=dict(embedding_size=8, hidden_size=12, num_layers=2, dropout=0.3),
                train=TrainConfig(steps=30, eval_every=4, lr=5e-3, warmup_steps=3, seed=7),
                callbacks=callbacks,
            )
        else:
            result, _ = resume_language_model(out, callbacks=callbacks)
    finally:
        torch.set_num_threads(threads)
    return f"{result.stop_reason} {result.step} {result.epoch}"


# Runs ``train`` in a child process (for SIGKILL).
SCRIPT = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_train_resume import train
print(train(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]))
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume")
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    g = torch.Generator().manual_seed(0)
    text = " ".join(words[i] for i in torch.randint(len(words), (90,), generator=g).tolist())
    (folder / "text.txt").write_text(text)
    baseline = folder / "baseline"
    final = train("new", baseline, folder / "text.txt")
    reason, steps, epoch = final.split()
    assert (reason, steps) == ("steps", "30") and int(epoch) >= 2  # crossed epoch boundaries
    return folder / "text.txt", baseline, final


def _assert_identical(run: Path, baseline: Path) -> None:
    for name in (
        "model.safetensors",
        "trainer_state/model.safetensors",
        "trainer_state/optimizer.safetensors",
    ):
        a, b = load_tensors(run / name), load_tensors(baseline / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}:{key} differs"
    strip = ("elapsed", "tokens_per_s")
    metrics = [
        {k: v for k, v in r.items() if k not in strip} for r in read_jsonl(run / "metrics.jsonl")
    ]
    expected = [
        {k: v for k, v in r.items() if k not in strip}
        for r in read_jsonl(baseline / "metrics.jsonl")
    ]
    assert metrics == expected


@pytest.mark.parametrize(
    "at,how,reason",
    [
        (6, "stop", "test"),  # a clean stop between evaluations (mid-epoch, state carried)
        (13, "SIGINT", "interrupted"),  # Ctrl-C: finishes the step, saves, returns
    ],
)
def test_stopped_then_resumed_is_bit_identical(setup, tmp_path, at, how, reason):
    text, baseline, final = setup
    run = tmp_path / "run"
    assert train("new", run, text, at, how).split()[:2] == [reason, str(at)]
    assert train("resume", run, text) == final
    _assert_identical(run, baseline)


def test_sigkill_between_checkpoints_then_resumed_is_bit_identical(setup, tmp_path):
    text, baseline, final = setup
    run = tmp_path / "run"
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), "new", str(run), str(text), "11", "SIGKILL"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    # The kill came 3 steps after the checkpoint at step 8 and left no half-written file.
    assert '"step": 8,' in (run / "trainer_state" / "state.json").read_text()
    assert not list(run.rglob("*.tmp")) and not (run / "trainer_state.tmp").exists()
    assert train("resume", run, text) == final
    _assert_identical(run, baseline)


def test_kill_between_checkpoint_renames_falls_back_to_the_old_checkpoint(setup, tmp_path):
    text, baseline, final = setup
    run = tmp_path / "run"
    train("new", run, text, 10, "stop")
    # As if killed after `trainer_state` was renamed away, before the new one moved in.
    (run / "trainer_state").rename(run / "trainer_state.old")
    (run / "trainer_state.tmp").mkdir()
    assert train("resume", run, text) == final
    _assert_identical(run, baseline)
    assert not (run / "trainer_state.old").exists() and not (run / "trainer_state.tmp").exists()
