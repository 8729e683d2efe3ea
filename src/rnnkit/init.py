"""Initialisers for recurrent weights, selectable by name.

Every initialiser is a function ``fn(cell, weights)`` that fills ``weights`` (a mapping from the
cell's parameter names — ``weight_ih``, ``weight_hh``, ``bias_ih``, … — to tensors) in place
under ``torch.no_grad()``. Layers call it once per (layer, direction) with that slice's
parameters. Gate blocks are H rows each, in torch's order (LSTM i, f, g, o; GRU r, z, n).

Names:
    ``rnnkit`` (default): input weights Glorot-uniform per gate block, recurrent weights
        orthogonal per gate block, biases zero, LSTM forget-gate bias 1 (Jozefowicz et al. 2015).
    ``torch``: torch's own init, U(-1/sqrt(H), 1/sqrt(H)) for every weight and bias.
    ``identity``: recurrent weights the identity per gate block and zero biases — the IRNN of
        Le et al. 2015 for a ReLU Elman cell; input weights as ``rnnkit``.
    ``orthogonal``: as ``rnnkit`` but without the forget-gate bias.

Register more with :func:`register`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

Initializer = Callable[[nn.Module, Mapping[str, Tensor]], None]
INITIALIZERS: dict[str, Initializer] = {}


def register(name: str) -> Callable[[Initializer], Initializer]:
    """Decorator: make ``fn(cell, weights)`` available as ``init=name``."""

    def wrap(fn: Initializer) -> Initializer:
        INITIALIZERS[name] = fn
        return fn

    return wrap


def initialize(cell: nn.Module, weights: Mapping[str, Tensor], init: str | Initializer) -> None:
    """Fill ``weights`` of ``cell`` with the initialiser named ``init`` (or a callable)."""
    if callable(init):
        fn = init
    elif init in INITIALIZERS:
        fn = INITIALIZERS[init]
    else:
        raise ValueError(
            f"init must be one of {', '.join(sorted(INITIALIZERS))} or a callable; got {init!r}"
        )
    with torch.no_grad():
        fn(cell, weights)


def _blocks(w: Tensor, hidden_size: int) -> list[Tensor]:
    """Views of the H-row gate blocks of a (k*H, ·) weight."""
    return list(w.split(hidden_size, dim=0))


def _layer_norm_and_extras(weights: Mapping[str, Tensor]) -> None:
    for name, w in weights.items():
        if name.startswith("layer_norm") and name.endswith("_weight"):
            w.fill_(1.0)
        elif name.startswith("layer_norm") and name.endswith("_bias"):
            w.zero_()
        elif name in ("weight_ci", "weight_cf", "weight_co"):
            w.zero_()  # peepholes start closed: the cell begins as a plain LSTM


def _input_glorot(cell, weights) -> None:
    for block in _blocks(weights["weight_ih"], cell.hidden_size):
        nn.init.xavier_uniform_(block)
    if "weight_hr" in weights:
        nn.init.orthogonal_(weights["weight_hr"])


def forget_gate_block(cell) -> int | None:
    """Index of the forget block for LSTM cells, else None."""
    return getattr(cell, "forget_gate_index", None)


def set_forget_bias(cell, weights, value: float) -> None:
    """Set the forget-gate bias (in ``bias_ih``; ``bias_hh``'s block is zeroed) to ``value``."""
    k = forget_gate_block(cell)
    if k is None or "bias_ih" not in weights:
        return
    H = cell.hidden_size
    weights["bias_ih"][k * H : (k + 1) * H].fill_(value)
    weights["bias_hh"][k * H : (k + 1) * H].zero_()


@register("torch")
def torch_default(cell, weights) -> None:
    bound = 1.0 / cell.hidden_size**0.5
    for w in weights.values():
        nn.init.uniform_(w, -bound, bound)
    for name, w in weights.items():
        if name.startswith("layer_norm"):
            w.fill_(1.0 if name.endswith("_weight") else 0.0)


@register("orthogonal")
def orthogonal(cell, weights) -> None:
    _input_glorot(cell, weights)
    for block in _blocks(weights["weight_hh"], cell.hidden_size):
        nn.init.orthogonal_(block)
    for name in ("bias_ih", "bias_hh"):
        if name in weights:
            weights[name].zero_()
    _layer_norm_and_extras(weights)


@register("rnnkit")
def rnnkit_default(cell, weights) -> None:
    orthogonal(cell, weights)
    set_forget_bias(cell, weights, 1.0)


@register("identity")
def identity(cell, weights) -> None:
    _input_glorot(cell, weights)
    for block in _blocks(weights["weight_hh"], cell.hidden_size):
        nn.init.eye_(block)
    for name in ("bias_ih", "bias_hh"):
        if name in weights:
            weights[name].zero_()
    _layer_norm_and_extras(weights)
