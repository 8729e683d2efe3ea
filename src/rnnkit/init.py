"""Initialisers for recurrent weights, selectable by name.

Every initialiser is a function ``fn(cell, weights)`` that fills ``weights`` (a mapping from the
cell's parameter names — ``weight_ih``, ``weight_hh``, ``bias_ih``, … — to tensors) in place
under ``torch.no_grad()``. Layers call it once per (layer, direction) with that slice's
parameters. The initialisers read what each parameter is from the cell, never from its name:
``cell.parameter_roles()`` (``input``, ``recurrent``, ``bias``, ``projection``, ``peephole``,
``gain``, ``shift``; see :data:`rnnkit.cells.base.PARAMETER_ROLES`), ``cell.gate_blocks`` (the
H-row blocks, in torch's order: LSTM i, f, g, o; GRU r, z, n), ``cell.forget_gate``,
``cell.input_gate`` and ``cell.default_forget_bias``.

Names:
    ``rnnkit`` (default): input weights Glorot-uniform per gate block, recurrent weights
        orthogonal per gate block, projections orthogonal, biases, peepholes and shifts zero,
        gains one; the forget-gate bias the cell declares as ``default_forget_bias`` (LSTM 1,
        Jozefowicz et al. 2015) or per unit with ``initial_forget_bias`` (sLSTM: linspace(3, 6)
        per head, Beck et al. 2024). Multi-head cells (sLSTM) get each head's recurrent
        block orthogonal (``cell.recurrent_blocks``).
    ``torch``: torch's own init, U(-1/sqrt(H), 1/sqrt(H)) for every weight and bias (gains one,
        shifts zero).
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
    """Fill ``weights`` of ``cell`` with the initialiser named ``init`` (or a callable).

    Raises:
        ValueError: a parameter of ``weights`` has no role in ``cell.parameter_roles()`` that
            the initialisers know.
    """
    fn = resolve(init)
    _check_roles(cell, weights)
    with torch.no_grad():
        fn(cell, weights)


def _check_roles(cell, weights: Mapping[str, Tensor]) -> None:
    from rnnkit.cells.base import PARAMETER_ROLES

    roles = cell.parameter_roles()
    for name in weights:
        if roles.get(name) not in PARAMETER_ROLES:
            raise ValueError(
                f"{type(cell).__name__}.parameter_roles() gives parameter {name!r} the role "
                f"{roles.get(name)!r}; expected one of {', '.join(PARAMETER_ROLES)}"
            )


def _with_role(cell, weights: Mapping[str, Tensor], role: str) -> list[Tensor]:
    """The tensors of ``weights`` whose role is ``role``, in the cell's parameter order."""
    return [weights[name] for name in cell.parameter_names(role) if name in weights]


def _blocks(w: Tensor, hidden_size: int) -> list[Tensor]:
    """Views of the H-row gate blocks of a (k*H, ·) weight."""
    return list(w.split(hidden_size, dim=0))


def _recurrent_blocks(cell, weights) -> list[Tensor]:
    """The square blocks of the recurrent weights: the cell's ``recurrent_blocks`` (gate blocks,
    or one per (gate, head) for multi-head cells), else the H-row gate blocks."""
    split = getattr(cell, "recurrent_blocks", None)
    if split is None:
        return [
            b for w in _with_role(cell, weights, "recurrent") for b in _blocks(w, cell.hidden_size)
        ]
    return [b for w in _with_role(cell, weights, "recurrent") for b in split(w)]


def _zero_biases_and_extras(cell, weights) -> None:
    """Biases, peepholes and shifts zero, gains one."""
    for role, value in (("bias", 0.0), ("peephole", 0.0), ("gain", 1.0), ("shift", 0.0)):
        # Peepholes start closed: a peephole LSTM begins as a plain one.
        for w in _with_role(cell, weights, role):
            w.fill_(value)


def _input_glorot(cell, weights) -> None:
    for w in _with_role(cell, weights, "input"):
        for block in _blocks(w, cell.hidden_size):
            nn.init.xavier_uniform_(block)
    for w in _with_role(cell, weights, "projection"):
        nn.init.orthogonal_(w)


def forget_gate_block(cell) -> int | None:
    """Index of the cell's forget gate among its gate blocks (LSTM f, GRU z), else None."""
    return cell.forget_gate_index


def set_forget_bias(cell, weights, value: float) -> None:
    """Set the forget-gate bias to ``value`` (in the first bias; other biases' block zeroed).

    A no-op for a cell without a forget gate or without biases.
    """
    k = forget_gate_block(cell)
    if k is None or not _with_role(cell, weights, "bias"):
        return
    _set_gate_bias(cell, weights, k, value)


@register("torch")
def torch_default(cell, weights) -> None:
    bound = 1.0 / cell.hidden_size**0.5
    for w in weights.values():
        nn.init.uniform_(w, -bound, bound)
    for role, value in (("gain", 1.0), ("shift", 0.0)):
        for w in _with_role(cell, weights, role):
            w.fill_(value)


@register("orthogonal")
def orthogonal(cell, weights) -> None:
    _input_glorot(cell, weights)
    for block in _recurrent_blocks(cell, weights):
        nn.init.orthogonal_(block)
    _zero_biases_and_extras(cell, weights)


@register("rnnkit")
def rnnkit_default(cell, weights) -> None:
    orthogonal(cell, weights)
    initial = getattr(cell, "initial_forget_bias", None)
    biases = _with_role(cell, weights, "bias")
    value = cell.default_forget_bias if initial is None or not biases else initial(biases[0])
    if isinstance(value, Tensor) or value:
        set_forget_bias(cell, weights, value)


@register("identity")
def identity(cell, weights) -> None:
    _input_glorot(cell, weights)
    for block in _recurrent_blocks(cell, weights):
        nn.init.eye_(block)
    _zero_biases_and_extras(cell, weights)


# -- parameterised initialisers --------------------------------------------------------------
def _memory_gates(cell, what: str) -> tuple[int, int | None]:
    """(forget block, input block or None) of a cell with a forget gate; ValueError for others.

    LSTM: ``f`` and ``i`` (no ``i`` when coupled). GRU: the update gate ``z`` multiplies
    ``h_{t-1}`` in ``h_t = (1 - z) n + z h_{t-1}``, so it is the forget gate; no input gate.
    """
    index = forget_gate_block(cell)
    if index is None:
        raise ValueError(
            f"init {what!r} sets a forget-gate bias and needs an LSTM or GRU cell (one that "
            f"declares a forget_gate), got {type(cell).__name__}"
        )
    input_gate = cell.input_gate
    return index, (None if input_gate is None else cell.gate_blocks.index(input_gate))


def _set_gate_bias(cell, weights, block: int, value: Tensor | float) -> None:
    """Bias of gate ``block`` := value (in the first bias, ``bias_ih``; the others' block is
    zeroed, so the sum the cell adds is ``value``)."""
    H = cell.hidden_size
    rows = slice(block * H, (block + 1) * H)
    first, *others = _with_role(cell, weights, "bias")
    if isinstance(value, Tensor):
        first[rows].copy_(value)
    else:
        first[rows].fill_(value)
    for bias in others:
        bias[rows].zero_()


def _check_bias(cell, weights, what: str) -> None:
    if not _with_role(cell, weights, "bias"):
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
        for w in _with_role(cell, weights, "recurrent"):
            w.mul_(scale)

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
        bias = _with_role(cell, weights, "bias")[0]
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
