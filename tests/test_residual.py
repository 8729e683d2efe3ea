"""Residual stacks (``residual=True``): every layer from the second on adds its input to its
output, for every cell family and backend; an 8-layer residual stack trains where the plain one
stalls, because the gradient reaches the bottom layer."""

from __future__ import annotations

import pytest
import torch

import rnnkit
from rnnkit.cli.options import LAYER_OPTIONS
from rnnkit.layers import cell_families, make_layer

DTYPE = torch.float64
I, H, T, B = 3, 4, 5, 3
FAMILIES = sorted(cell_families())


def _backends(cell: str) -> list[str]:
    probe = make_layer(cell, I, H)
    names = ["auto", "reference"]
    if probe.cell.fused_kernel() is not None:
        names.append("fused")
    return names


@pytest.mark.parametrize("cell", FAMILIES)
def test_each_layer_from_the_second_adds_its_input(cell):
    torch.manual_seed(0)
    stack = make_layer(cell, I, H, num_layers=3, residual=True, dtype=DTYPE, backend="reference")
    x = torch.randn(T, B, I, dtype=DTYPE)
    output, _ = stack(x)
    # The same weights as three single layers composed by hand.
    singles = [
        make_layer(cell, I if k == 0 else H, H, dtype=DTYPE, backend="reference") for k in range(3)
    ]
    expected = x
    for k, single in enumerate(singles):
        for name, w in stack.cell_weights(k).items():
            getattr(single, name + "_l0").data.copy_(w)
        y, _ = single(expected)
        expected = y if k == 0 else y + expected
    torch.testing.assert_close(output, expected)
    assert "residual=True" in repr(stack)


@pytest.mark.parametrize("cell", FAMILIES)
def test_every_backend_equals_the_reference_with_residual(cell):
    torch.manual_seed(0)
    lengths = torch.tensor([5, 2, 4])
    results = {}
    for backend in _backends(cell):
        torch.manual_seed(0)
        layer = make_layer(
            cell, I, H, num_layers=3, bidirectional=True, residual=True, dtype=DTYPE,
            backend=backend,
        )  # fmt: skip
        x = torch.randn(T, B, I, dtype=DTYPE, generator=torch.Generator().manual_seed(1))
        x.requires_grad_(True)
        output, state = layer(x, lengths=lengths)
        state = state if isinstance(state, tuple) else (state,)
        loss = output.pow(2).sum() + sum(s.sum() for s in state)
        grads = torch.autograd.grad(loss, [x, *layer.parameters()])
        results[layer.resolved_backend()] = (output, state, grads)
    reference = results.pop("reference")
    if not results:
        pytest.skip(f"{cell} runs only the reference backend")
    for output, state, grads in results.values():
        torch.testing.assert_close(output, reference[0])
        for s, r in zip(state, reference[1]):
            torch.testing.assert_close(s, r)
        for g, r in zip(grads, reference[2]):
            torch.testing.assert_close(g, r)


def _train_deep(residual: bool, steps: int = 100):
    """An 8-layer LSTM learning to output its input delayed by two steps."""
    torch.manual_seed(0)
    layer = rnnkit.LSTM(16, 16, num_layers=8, residual=residual)
    read_in, read_out = torch.nn.Linear(3, 16), torch.nn.Linear(16, 3)
    params = [*layer.parameters(), *read_in.parameters(), *read_out.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-2)
    data = torch.Generator().manual_seed(1)
    bottom = top = None
    for step in range(steps):
        x = torch.randn(10, 16, 3, generator=data)
        target = torch.roll(x, 2, 0)
        target[:2] = 0
        output, _ = layer(read_in(x))
        loss = (read_out(output) - target).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        if step == 0:
            bottom, top = layer.weight_ih_l0.grad.norm(), layer.weight_ih_l7.grad.norm()
        optimizer.step()
    return loss.item(), bottom.item(), top.item()


def test_an_eight_layer_residual_stack_trains_where_the_plain_one_stalls():
    plain_loss, plain_bottom, _ = _train_deep(False)
    residual_loss, residual_bottom, residual_top = _train_deep(True)
    # The target's variance is about 0.8; the plain stack barely moves from predicting 0.
    assert plain_loss > 0.4
    assert residual_loss < 0.1
    # At the first step the bottom layer's gradient is ~100x larger with the identity paths,
    # and of the order of the top layer's.
    assert residual_bottom > 20 * plain_bottom
    assert residual_bottom > 0.3 * residual_top


def test_residual_is_a_layer_flag_of_every_train_command():
    assert "residual" in LAYER_OPTIONS
    from rnnkit.cli.main import build_parser

    parser = build_parser()
    for command in ("lm", "classify", "tag", "forecast", "seq2seq"):
        args = parser.parse_args(["train", command, "--residual", "--out", "x"])
        assert args.residual is True, command
