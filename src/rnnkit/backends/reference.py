"""The readable backend: a per-step loop over ``cell.step`` — the specification.

Every backend computes :func:`scan`'s function. ``keep`` implements both variable lengths and
zoneout with one rule applied to each state field after every step::

    s_t = keep_t ⊙ s_{t-1} + (1 - keep_t) ⊙ s̃_t        (s̃_t from cell.step)

Past a sequence's length ``keep_t = 1`` (the state is held, so the final state is the one at the
last valid step); zoneout (Krueger et al. 2017) draws ``keep_t ~ Bernoulli(p)`` while training
and uses its expectation ``p`` in eval. The layer's output at step t is the mixed ``h_t``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor


def scan(
    cell,
    weights: Mapping[str, Tensor],
    x: Tensor,
    state,
    keep: Sequence[Tensor | None] | None = None,
):
    """Run ``cell`` over a time-major sequence.

    Args:
        cell: a :class:`rnnkit.cells.RecurrentCell` (its parameters are ``weights``).
        weights: the cell's parameters by name, e.g. ``{"weight_ih": …, "weight_hh": …}``.
        x: (T, B, I) inputs.
        state: initial state NamedTuple, fields (B, ·).
        keep: ``None`` or one entry per state field, each ``None`` or (T, B, ·) in [0, 1].

    Returns:
        ``(h, final_state)``: h (T, B, P) the mixed ``h_t`` of every step; final_state as ``state``.
    """
    outputs = []
    for t, x_t in enumerate(x.unbind(0)):
        _, new = cell.step(x_t, state, weights)
        if keep is not None:
            new = type(state)(
                *(
                    n if k is None else n + k[t] * (s - n)  # k s + (1 - k) n
                    for s, n, k in zip(state, new, keep)
                )
            )
        state = new
        outputs.append(state.h)
    return stack_time(outputs, x, cell.output_size), state


def stack_time(outputs: list[Tensor], x: Tensor, size: int) -> Tensor:
    import torch

    if not outputs:
        return x.new_zeros(0, x.shape[1], size)
    return torch.stack(outputs, 0)
