"""GPU checks (``make test-gpu``): skipped without CUDA.

Every backend on CUDA agrees with the CPU reference in float64 (values and gradients; the fused
kernels' inference paths too) and runs a sequence without synchronising with the host; the
trainer runs on CUDA under bf16 and fp16 autocast, and an fp16 run resumes exactly (its gradient
scaler is checkpointed).
"""

from __future__ import annotations

import itertools

import pytest
import torch

from rnnkit.data.text import StreamBatches
from rnnkit.io import RunDir, load_tensors
from rnnkit.layers import make_layer
from rnnkit.tasks.lm import LanguageModel
from rnnkit.train import Callback, TrainConfig, Trainer
from rnnkit.train.checkpoint import read_checkpoint

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

CASES = [
    ("lstm", {}),
    ("lstm", {"peephole": True}),
    ("lstm", {"layer_norm": True}),
    ("lstm", {"proj_size": 3}),
    ("gru", {}),
    ("gru", {"reset_after": False}),
    ("rnn", {}),
    ("mingru", {}),
    ("minlstm", {}),
    ("slstm", {"num_heads": 2}),
]


@pytest.mark.parametrize(
    ("cell", "options", "backend", "lengths"),
    [
        (*case, b, n)
        for case, b, n in itertools.product(CASES, ["native", "fused", "reference"], [False, True])
    ],
)
def test_backend_on_cuda_matches_cpu_reference(cell, options, backend, lengths):
    torch.manual_seed(0)
    try:
        cpu = make_layer(cell, 4, 6, num_layers=2, batch_first=True, backend="reference", **options)
        gpu = make_layer(cell, 4, 6, num_layers=2, batch_first=True, backend=backend, **options)
    except ValueError as exc:  # an option this backend does not run
        pytest.skip(str(exc))
    cpu, gpu = cpu.double(), gpu.double()
    gpu.load_state_dict(cpu.state_dict())
    gpu = gpu.cuda()
    x = torch.randn(3, 7, 4, dtype=torch.float64, requires_grad=True)
    xg = x.detach().cuda().requires_grad_()
    kwargs = {}
    if lengths:
        kwargs = {"lengths": torch.tensor([7, 4, 2])}
    try:
        out_c, _ = cpu(x, **kwargs)
        out_g, _ = gpu(xg, **kwargs)
    except ValueError as exc:
        pytest.skip(str(exc))
    torch.testing.assert_close(out_g.cpu(), out_c)
    grad = torch.randn_like(out_c)
    out_c.backward(grad)
    out_g.backward(grad.cuda())
    torch.testing.assert_close(xg.grad.cpu(), x.grad)
    params_g = dict(gpu.named_parameters())
    for name, p in cpu.named_parameters():
        torch.testing.assert_close(params_g[name].grad.cpu(), p.grad, msg=name)


class StopAt(Callback):
    def __init__(self, at):
        self.at = at

    def on_step_end(self, trainer, info):
        if info.step == self.at:
            trainer.request_stop("test")


def _lm(run, precision, backend="fused", callbacks=()):
    torch.manual_seed(0)
    task = LanguageModel(vocab_size=12, embedding_size=8, hidden_size=16, num_layers=2,
                         layer_options={"backend": backend})  # fmt: skip
    ids = torch.randint(1, 12, (800,), generator=torch.Generator().manual_seed(1))
    train, val = StreamBatches(ids, 4, 10), StreamBatches(ids[:200], 2, 10, drop_last=False)
    config = TrainConfig(steps=10, eval_every=5, lr=0.01, seed=0)
    return Trainer(task, config, train, val, run=run, device="cuda", precision=precision,
                   callbacks=callbacks)  # fmt: skip


@pytest.mark.parametrize("backend", ["native", "fused"])
@pytest.mark.parametrize("precision", ["bf16", "16"])
def test_training_on_cuda_under_autocast(precision, backend):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    trainer = _lm(None, precision, backend)
    result = trainer.fit()
    assert result.step == 10
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in trainer.history)
    assert next(trainer.task.parameters()).device.type == "cuda"


def test_fp16_resume_is_exact_with_the_scaler(tmp_path):
    full = RunDir.prepare(tmp_path / "full", force=False).create()
    _lm(full, "16").fit()
    state = read_checkpoint(full.path)["state"]
    assert state["precision"] == "16" and "scale" in state["scaler"]
    part = RunDir.prepare(tmp_path / "part", force=False).create()
    _lm(part, "16", callbacks=[StopAt(5)]).fit()
    _lm(part, "16").fit(resume=True)
    a, b = load_tensors(full.model_path), load_tensors(part.model_path)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(("cell", "options"), CASES)
def test_fused_sequence_does_not_synchronise_with_the_host(cell, options):
    """The per-step work queues kernels only: no .item(), .cpu() or data-dependent shapes
    (CUDA's sync debug mode raises on any host synchronisation)."""
    torch.manual_seed(0)
    try:
        layer = make_layer(cell, 4, 16, num_layers=2, batch_first=True, backend="auto", **options)
    except ValueError as exc:
        pytest.skip(str(exc))
    layer = layer.cuda()
    x = torch.randn(3, 50, 4, device="cuda", requires_grad=True)
    layer(x)[0].sum().backward()  # warm-up: lazy initialisation may synchronise once
    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out, _ = layer(x)
        out.sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    torch.cuda.synchronize()
    assert torch.isfinite(x.grad).all()


INFERENCE_CASES = [
    ("lstm", {}),
    ("lstm", {"coupled": True, "forget_bias": 1.0}),
    ("lstm", {"peephole": True}),
    ("lstm", {"layer_norm": True, "proj_size": 3}),
    ("gru", {}),
    ("gru", {"reset_after": False}),
    ("rnn", {}),
]


@pytest.mark.parametrize("lengths", [False, True])
@pytest.mark.parametrize(("cell", "options"), INFERENCE_CASES)
def test_fused_inference_on_cuda_matches_cpu_reference(cell, options, lengths):
    """The fused kernels' forward-only paths (torch's kernels where they compute the cell, cuDNN
    on CUDA; the forward-only loop elsewhere) under no_grad, float64."""
    torch.manual_seed(0)
    cpu = make_layer(cell, 4, 6, num_layers=2, batch_first=True, backend="reference", **options)
    gpu = make_layer(cell, 4, 6, num_layers=2, batch_first=True, backend="fused", **options)
    cpu, gpu = cpu.double().eval(), gpu.double()
    gpu.load_state_dict(cpu.state_dict())
    gpu = gpu.cuda().eval()
    x = torch.randn(3, 7, 4, dtype=torch.float64)
    kwargs = {"lengths": torch.tensor([7, 3, 5])} if lengths else {}
    with torch.no_grad():
        want, _ = cpu(x, **kwargs)
        got, _ = gpu(x.cuda(), **kwargs)
    torch.testing.assert_close(got.cpu(), want, rtol=1e-10, atol=1e-10)
