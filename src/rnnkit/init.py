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
    ``scaled_identity:S``: recurrent weights ``S·I`` per gate block, zero biases (np-RNN style;
        ``scaled_identity:1`` is ``identity``). Factory: :func:`scaled_identity`.
    ``forget_bias:B``: as ``orthogonal`` with the forget-gate bias ``B`` (LSTM ``f``; GRU update
        gate ``z``, which multiplies ``h_{t-1}``). Factory: :func:`forget_bias`.
    ``chrono:T_MAX``: chrono initialisation (Tallec & Ollivier 2018) for dependencies up to
        ``T_MAX`` steps: as ``orthogonal`` with ``b_f ~ log U[1, T_MAX - 1]`` per unit and
        ``b_i = -b_f`` (LSTM; coupled LSTM and GRU set only the forget/update bias), so the
        characteristic forgetting times ``1/(1 - σ(b_f)) ≈ 1 + e^{b_f}`` spread over
        ``[2, T_MAX]``. Factory: :func:`chrono`.

Parameterised names take their value after a colon (``"chrono:784"``) and resolve through
:func:`resolve`; the factories return the same callables for Python use::

    >>> lstm = rnnkit.LSTM(1, 64, init=rnnkit.init.chrono(784))
    >>> gru = rnnkit.GRU(1, 64, init="forget_bias:2")

Register more with :func:`register` (plain) or :func:`register_factory` (``name:value``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

Initializer = Callable[[nn.Module, Mapping[str, Tensor]], None]
INITIALIZERS: dict[str, Initializer] = {}
# name -> factory(value: float) -> Initializer, selected as "name:value".
FACTORIES: dict[str, Callable[[float], Initializer]] = {}


def register(name: str) -> Callable[[Initializer], Initializer]:
    """Decorator: make ``fn(cell, weights)`` available as ``init=name``."""

    def wrap(fn: Initializer) -> Initializer:
        INITIALIZERS[name] = fn
        return fn

    return wrap


def register_factory(name: str) -> Callable:
    """Decorator: make ``factory(value) -> fn`` available as ``init="name:value"``."""

    def wrap(factory):
        FACTORIES[name] = factory
        return factory

    return wrap


def names() -> list[str]:
    """Every selectable name; parameterised ones shown as ``name:VALUE``."""
    return sorted(INITIALIZERS) + [f"{name}:VALUE" for name in sorted(FACTORIES)]


def resolve(init: str | Initializer) -> Initializer:
    """The initialiser for a name (``"orthogonal"``, ``"chrono:100"``, …) or a callable.

    Raises:
        ValueError: unknown name, a parameterised name without its value, or a bad value.
    """
    if callable(init):
        return init
    if not isinstance(init, str):
        raise TypeError(f"init must be a name or a callable, got {type(init).__name__}")
    if init in INITIALIZERS:
        return INITIALIZERS[init]
    name, _, value = init.partition(":")
    if name in FACTORIES:
        if not value:
            raise ValueError(f"init {name!r} needs a value: write it as '{name}:VALUE'")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"init {init!r}: {value!r} is not a number") from None
        return FACTORIES[name](number)
    raise ValueError(f"init must be one of {', '.join(names())} or a callable; got {init!r}")


def initialize(cell: nn.Module, weights: Mapping[str, Tensor], init: str | Initializer) -> None:
    """Fill ``weights`` of ``cell`` with the initialiser named ``init`` (or a callable)."""
    fn = resolve(init)
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


# -- parameterised initialisers --------------------------------------------------------------
def _memory_gates(cell, what: str) -> tuple[int, int | None]:
    """(forget-like block, input block or None) of a gated cell; ValueError for others.

    LSTM: ``f`` and ``i`` (no ``i`` when coupled). GRU: the update gate ``z`` multiplies
    ``h_{t-1}`` in ``h_t = (1 - z) n + z h_{t-1}``, so it is the forget gate; no input gate.
    """
    index = forget_gate_block(cell)
    if index is not None:
        return index, (None if getattr(cell, "coupled", False) else 0)
    if getattr(cell, "gate_count", 1) == 3 and hasattr(cell, "reset_after"):  # GRU: r, z, n
        return 1, None
    raise ValueError(
        f"init {what!r} sets a forget-gate bias and needs an LSTM or GRU cell, "
        f"got {type(cell).__name__}"
    )


def _set_gate_bias(cell, weights, block: int, value: Tensor | float) -> None:
    """Bias of gate ``block`` := value (in ``bias_ih``; the ``bias_hh`` block is zeroed)."""
    H = cell.hidden_size
    rows = slice(block * H, (block + 1) * H)
    if isinstance(value, Tensor):
        weights["bias_ih"][rows].copy_(value)
    else:
        weights["bias_ih"][rows].fill_(value)
    weights["bias_hh"][rows].zero_()


def _check_bias(cell, weights, what: str) -> None:
    if "bias_ih" not in weights:
        raise ValueError(f"init {what!r} sets gate biases and needs bias=True")


def scaled_identity(scale: float) -> Initializer:
    """Recurrent weights ``scale · I`` per gate block, input weights Glorot, zero biases.

    ``scale < 1`` makes the linear part of every step contract (Talathi & Vartak 2016 use
    ``scale`` near the largest eigenvalue they want); ``scaled_identity(1.0)`` is ``identity``.

    Example::

        >>> rnn = rnnkit.IRNN(1, 100, init=rnnkit.init.scaled_identity(0.9))
    """
    scale = float(scale)
    if not (scale == scale and abs(scale) != float("inf")):
        raise ValueError(f"scaled_identity scale must be a finite number, got {scale}")

    def init(cell, weights) -> None:
        identity(cell, weights)
        weights["weight_hh"].mul_(scale)

    init.__name__ = f"scaled_identity:{scale:g}"
    return init


def forget_bias(value: float) -> Initializer:
    """As ``orthogonal``, with forget-gate bias ``value`` (LSTM ``f``, GRU ``z``).

    Jozefowicz et al. 2015 recommend 1 (the ``rnnkit`` default for LSTM); larger values make
    the cell start out remembering for about ``1 + e^value`` steps.

    Example::

        >>> lstm = rnnkit.LSTM(1, 64, init=rnnkit.init.forget_bias(2.0))
    """
    value = float(value)

    def init(cell, weights) -> None:
        forget, _ = _memory_gates(cell, "forget_bias")
        _check_bias(cell, weights, "forget_bias")
        orthogonal(cell, weights)
        _set_gate_bias(cell, weights, forget, value)

    init.__name__ = f"forget_bias:{value:g}"
    return init


def chrono(t_max: float) -> Initializer:
    r"""Chrono initialisation (Tallec & Ollivier 2018) for dependencies up to ``t_max`` steps.

    .. math::
        b_f \sim \log U[1, T_{max} - 1], \qquad b_i = -b_f

    per unit, other weights as ``orthogonal``. A unit with forget bias ``b_f`` (and small
    input) forgets with time constant ``1/(1 - σ(b_f)) = 1 + e^{b_f}`` ∈ [2, T_max]: the
    initial memory times are spread log-uniformly up to ``t_max``. For a coupled LSTM or a GRU
    only the forget/update bias is set (their input gate is ``1 - f``).

    Example::

        >>> lstm = rnnkit.LSTM(10, 128, init=rnnkit.init.chrono(100))   # or init="chrono:100"
    """
    t_max = float(t_max)
    if not t_max > 2:
        raise ValueError(
            f"chrono needs t_max > 2 (the longest dependency, in steps), got {t_max:g}"
        )

    def init(cell, weights) -> None:
        forget, input_gate = _memory_gates(cell, "chrono")
        _check_bias(cell, weights, "chrono")
        orthogonal(cell, weights)
        H = cell.hidden_size
        bias = weights["bias_ih"]
        u = torch.empty(H, dtype=bias.dtype, device=bias.device).uniform_(1.0, t_max - 1.0)
        b_f = u.log()
        _set_gate_bias(cell, weights, forget, b_f)
        if input_gate is not None:
            _set_gate_bias(cell, weights, input_gate, -b_f)

    init.__name__ = f"chrono:{t_max:g}"
    return init


register_factory("scaled_identity")(scaled_identity)
register_factory("forget_bias")(forget_bias)
register_factory("chrono")(chrono)
