"""Mixed precision: autocast in the trainer, the fused kernels' recurrence kept in float32."""

from __future__ import annotations

import math

import pytest
import torch

from rnnkit.data.text import StreamBatches
from rnnkit.devices import check_precision
from rnnkit.errors import InvalidInputError
from rnnkit.io import RunDir, load_tensors
from rnnkit.layers import make_layer
from rnnkit.tasks.lm import LanguageModel
from rnnkit.train import Callback, StepOutput, Task, TrainConfig, Trainer
from rnnkit.train.checkpoint import read_checkpoint


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_fp16_on_cpu_is_refused():
    with pytest.raises(InvalidInputError, match="unsupported on CPU; use --precision bf16"):
        check_precision("16", torch.device("cpu"))
    task = Regress(make_layer("gru", 3, 4, batch_first=True))
    with pytest.raises(InvalidInputError, match="unsupported on CPU"):
        Trainer(task, TrainConfig(steps=1), [], precision="16")


def test_unknown_precision():
    with pytest.raises(InvalidInputError, match=r"--precision must be one of 32, bf16, 16"):
        check_precision("fp8", torch.device("cpu"))


class Regress(Task):
    """Predict the sum of the inputs so far from a recurrent layer's output."""

    name = "regress"

    def __init__(self, layer):
        super().__init__()
        self.rnn = layer
        self.head = torch.nn.Linear(layer.hidden_size, 1)

    def step(self, batch, state=None):
        x, y = batch
        out, _ = self.rnn(x)
        pred = self.head(out).squeeze(-1)
        return StepOutput(((pred.float() - y) ** 2).mean(), y.numel())


def _data(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(4, 7, 3, generator=g) for _ in range(n)]
    return [(x, x.sum(-1).cumsum(1) * 0.3) for x in xs]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_fused_layer_under_bf16_autocast(cell):
    torch.manual_seed(0)
    layer = make_layer(cell, 3, 8, num_layers=2, batch_first=True, backend="fused")
    x = torch.randn(4, 7, 3)
    reference, (ref_state) = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, state = layer(x)
    assert out.dtype == torch.float32  # the recurrence ran in float32
    torch.testing.assert_close(out, reference, atol=5e-2, rtol=5e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = layer(x)[0].square().mean()
    loss.backward()
    grads = [p.grad for p in layer.parameters()]
    assert all(
        g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads
    )

    # A few training steps with the trainer in bf16: finite loss that goes down.
    torch.manual_seed(0)
    task = Regress(make_layer(cell, 3, 8, batch_first=True, backend="fused"))
    trainer = Trainer(task, TrainConfig(steps=12, eval_every=6, lr=0.02), _data(), precision="bf16")
    result = trainer.fit()
    losses = [r["train_loss"] for r in trainer.history]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    assert result.step == 12


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("lengths", [None, [7, 4, 7, 1]])
def test_native_kernels_run_in_float32_under_cpu_autocast(cell, lengths):
    """torch's CPU kernels in bfloat16 need AVX512-BF16 (elsewhere oneDNN cannot build the
    primitive); under autocast the native backend runs them in float32, as plain float32 would."""
    torch.manual_seed(0)
    layer = make_layer(cell, 3, 8, num_layers=2, batch_first=True, backend="native")
    x = torch.randn(4, 7, 3)
    lengths = None if lengths is None else torch.tensor(lengths)
    reference, ref_state = layer(x, lengths=lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, state = layer(x.bfloat16(), lengths=lengths)
        out.float().square().mean().backward()
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, reference, atol=2e-2, rtol=2e-2)  # the input was rounded
    ref_state, state = (ref_state, state) if cell == "lstm" else ((ref_state,), (state,))
    for a, b in zip(ref_state, state, strict=True):
        assert b.dtype == torch.float32
        torch.testing.assert_close(b, a, atol=2e-2, rtol=2e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        exact, _ = layer(x, lengths=lengths)  # a float32 input: bit for bit the float32 result
    assert torch.equal(exact, reference)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())


class StopAt(Callback):
    def __init__(self, at):
        self.at = at

    def on_step_end(self, trainer, info):
        if info.step == self.at:
            trainer.request_stop("test")


def _lm(run, steps, precision, callbacks=(), backend="fused"):
    torch.manual_seed(0)
    task = LanguageModel(vocab_size=12, embedding_size=8, hidden_size=16, num_layers=1,
                         layer_options={"backend": backend})  # fmt: skip
    ids = torch.randint(1, 12, (800,), generator=torch.Generator().manual_seed(1))
    train, val = StreamBatches(ids, 4, 10), StreamBatches(ids[:200], 2, 10, drop_last=False)
    config = TrainConfig(steps=steps, eval_every=5, lr=0.01, seed=0)
    return Trainer(task, config, train, val, run=run, precision=precision, callbacks=callbacks)


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_bf16_evaluation_carries_the_state_in_float32(backend):
    """Layers whose outputs autocast leaves in bfloat16: the state carried from one validation
    window to the next is float32 again, as in training (the next input is float32)."""
    bf16 = _lm(None, 5, "bf16", backend=backend).fit()
    fp32 = _lm(None, 5, "32", backend=backend).fit()
    gap = abs(bf16.metrics["val_loss"] - fp32.metrics["val_loss"])
    assert gap < 0.03 * fp32.metrics["val_loss"]


def test_bf16_close_to_fp32_and_resume_exact(tmp_path):
    full = RunDir.prepare(tmp_path / "full", force=False).create()
    bf16 = _lm(full, 10, "bf16").fit()
    fp32 = _lm(None, 10, "32").fit()
    assert (
        abs(bf16.metrics["val_loss"] - fp32.metrics["val_loss"]) < 0.03 * fp32.metrics["val_loss"]
    )
    state = read_checkpoint(full.path)["state"]
    assert state["precision"] == "bf16"
    assert all(t.dtype == torch.float32 for t in read_checkpoint(full.path)["carry"])

    part = RunDir.prepare(tmp_path / "part", force=False).create()
    _lm(part, 10, "bf16", [StopAt(5)]).fit()
    _lm(part, 10, "bf16").fit(resume=True)
    a, b = load_tensors(full.model_path), load_tensors(part.model_path)
    assert all(torch.equal(a[k], b[k]) for k in a)
