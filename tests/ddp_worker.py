"""Jobs for the data-parallel tests: run under ``torchrun`` (N ranks) or called in one process.

``python -m torch.distributed.run --standalone --nproc-per-node 2 tests/ddp_worker.py KIND DIR
[--kill-at STEP] [--resume]`` trains KIND (``lm`` or ``regress``; ``lm+regress``: both, into
DIR/lm and DIR/regress) into DIR; ``--kill-at`` has
rank 0 SIGKILL itself when step STEP is about to start (after the checkpoint of an earlier step).
"""

from __future__ import annotations

import os
import signal
import sys

import torch

from rnnkit import distributed
from rnnkit.data.text import StreamBatches
from rnnkit.io import RunDir
from rnnkit.layers import make_layer
from rnnkit.tasks.lm import LanguageModel
from rnnkit.train import Callback, StepOutput, Task, TrainConfig, Trainer


class MaskedRegress(Task):
    """Padded sequences ``(x (B, T, 3), lengths (B,), y (B, T))``: mean squared error over the
    valid steps, so ranks score different numbers of items."""

    name = "masked_regress"

    def __init__(self):
        super().__init__()
        self.rnn = make_layer("gru", 3, 8, batch_first=True)
        self.head = torch.nn.Linear(8, 1)

    def step(self, batch, state=None):
        x, lengths, y = batch
        B, T, _ = x.shape
        pred = self.head(self.rnn(x)[0]).squeeze(-1)
        mask = (torch.arange(T)[None, :] < lengths[:, None]).to(pred.dtype)
        count = int(mask.sum())
        loss = (((pred - y) ** 2) * mask).sum() / max(count, 1)
        return StepOutput(
            loss, count, stats={"abs_error": float(((pred - y).abs() * mask).sum().detach())}
        )


class Shuffled:
    """A batch source shuffled per epoch with a generator seeded from (seed, epoch)."""

    def __init__(self, n, batch_size, seed, *, drop_last=True):
        g = torch.Generator().manual_seed(100 + seed)
        self.x = torch.randn(n, 6, 3, generator=g)
        self.lengths = torch.randint(1, 7, (n,), generator=g)
        self.y = self.x.sum(-1).cumsum(1) * 0.3
        self.n, self.batch_size, self.seed, self.drop_last = n, batch_size, seed, drop_last

    def __len__(self):
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def epoch(self, e, start=0):
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 997 + e))
        for i in range(start, len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield self.x[idx], self.lengths[idx], self.y[idx]


class KillAt(Callback):
    def __init__(self, at):
        self.at = at

    def on_step_start(self, trainer, step):
        if step == self.at:
            os.kill(os.getpid(), signal.SIGKILL)


def build(kind):
    """(task, config, train, val) of a job; the model is seeded before it is built."""
    torch.manual_seed(0)
    config = TrainConfig(steps=12, eval_every=4, checkpoint_every=3, lr=0.01, seed=0)
    if kind == "lm":
        task = LanguageModel(vocab_size=12, embedding_size=8, hidden_size=16, num_layers=1)
        ids = torch.randint(1, 12, (400,), generator=torch.Generator().manual_seed(1))
        train = StreamBatches(ids, 4, 10, offset_seed=0)
        val = StreamBatches(ids[:250], 4, 10, drop_last=False)
        return task, config, train, val
    return MaskedRegress(), config, Shuffled(64, 8, seed=0), Shuffled(21, 8, 1, drop_last=False)


def run_job(kind, path, *, resume=False, kill_at=None):
    """Train ``kind`` into ``path`` (rank 0 creates it); returns the trainer."""
    distributed.init("cpu")
    if not resume and distributed.is_main():
        RunDir.prepare(path, force=False).create()
    distributed.barrier()
    task, config, train, val = build(kind)
    callbacks = [KillAt(kill_at)] if kill_at is not None else []
    trainer = Trainer(task, config, train, val, run=RunDir(path), callbacks=callbacks)
    trainer.fit(resume=resume)
    return trainer


if __name__ == "__main__":
    args = sys.argv[1:]
    kill = int(args[args.index("--kill-at") + 1]) if "--kill-at" in args else None
    for kind in args[0].split("+"):  # several jobs in one launch: DIR/<kind> each
        path = os.path.join(args[1], kind) if "+" in args[0] else args[1]
        run_job(kind, path, resume="--resume" in args, kill_at=kill)
    distributed.destroy(wait=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # as rnnkit's own entry point: no interpreter teardown under torchrun
