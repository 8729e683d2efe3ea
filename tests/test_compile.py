"""torch.compile of models holding rnnkit layers: same outputs and gradients as eager.

The native backend compiles into one graph; the fused and scan backends' per-step loops write in
place into views, which dynamo runs eagerly between graph pieces (graph breaks, not errors).
The ``aot_eager`` backend keeps these tests fast: it traces with dynamo and AOT autograd like
the default backend, without generating C++.
"""

from __future__ import annotations

import pytest
import torch

import rnnkit

LAYERS = {
    "lstm-native": lambda: rnnkit.LSTM(8, 16, batch_first=True),
    "lstm-peephole-fused": lambda: rnnkit.LSTM(8, 16, batch_first=True, peephole=True),
    "mingru": lambda: rnnkit.MinGRU(8, 16, batch_first=True),
    "slstm": lambda: rnnkit.SLSTM(8, 16, batch_first=True),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_compiled_layer_matches_eager(name):
    torch._dynamo.reset()
    torch.manual_seed(0)
    layer = LAYERS[name]()
    compiled = torch.compile(layer, backend="aot_eager")
    for shape in ((3, 4, 8), (2, 5, 8)):  # a second shape: recompiled or dynamic, still equal
        x = torch.randn(*shape, requires_grad=True)
        got, _ = compiled(x)
        got_grads = torch.autograd.grad(got.square().sum(), [x, *layer.parameters()])
        want, _ = layer(x)
        want_grads = torch.autograd.grad(want.square().sum(), [x, *layer.parameters()])
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        for a, b in zip(got_grads, want_grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


INFERENCE_LAYERS = {
    "lstm-peephole-fused": lambda: rnnkit.LSTM(8, 16, peephole=True),
    "lstm-coupled-fused": lambda: rnnkit.LSTM(8, 16, coupled=True),
    "gru-reset_before-fused": lambda: rnnkit.GRU(8, 16, reset_after=False),
}


@pytest.mark.parametrize("onednn", [False, True], ids=["addmm", "onednn"])
@pytest.mark.parametrize("name", list(INFERENCE_LAYERS))
def test_compiled_layer_in_inference_matches_eager(monkeypatch, name, onednn):
    """Under no_grad the fused kernels take their forward-only paths, oneDNN's per-step
    products included (forced at this size)."""
    from rnnkit.backends import kernel_parts

    if onednn:
        monkeypatch.setattr(kernel_parts, "STEP_MATMUL_MIN_WORK", 0)
        monkeypatch.setattr(kernel_parts, "STEP_MATMUL_MIN_STEPS", 0)
    torch._dynamo.reset()
    torch.manual_seed(0)
    layer = INFERENCE_LAYERS[name]().eval()
    compiled = torch.compile(layer, backend="aot_eager")
    with torch.no_grad():
        for shape in ((6, 3, 8), (9, 2, 8)):
            x = torch.randn(*shape)
            got, _ = compiled(x)
            want, _ = layer(x)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
