"""The export path: :func:`rnnkit.backends.reference.scan` as one traced loop of any length.

Under ``torch.export`` (and the ONNX exporter built on it) the eager backends cannot be traced
with a symbolic sequence length: torch's kernels (``torch.lstm``, …) and the per-step Python
loops of the ``reference`` and ``fused`` backends unroll over time, specialising the program to
the example's T. :func:`scan` expresses the same recurrence with ``torch``'s ``scan``
higher-order op: one ``cell.step`` traced once and repeated for every step, so the exported
program (and ONNX's ``Scan``) serves any T and B. The layer picks it at its one seam
(:meth:`rnnkit.layers.RecurrentLayer.forward`) when ``torch.compiler.is_exporting()``; eager
runs never reach it. Same contract and result as the reference scan (lengths and zoneout
through ``keep``)::

    s_t = keep_t ⊙ s_{t-1} + (1 - keep_t) ⊙ s̃_t
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
    """:func:`rnnkit.backends.reference.scan` through the ``scan`` higher-order op.

    Args and returns as :func:`rnnkit.backends.reference.scan`.
    """
    from torch._higher_order_ops.scan import scan_op

    state_type = type(state)
    fields = len(state)
    # Which state fields have a keep tensor; only those travel as per-step inputs.
    mixed = [] if keep is None else [i for i, k in enumerate(keep) if k is not None]
    # Fresh tensors, not views: scan traces its body again, and a view's storage offset would
    # be duck-sized into the same symbol as an equal weight dimension (and specialise B).
    xs = [x.clone(), *(keep[i].clone() for i in mixed)]
    # The weights enter the body as explicit inputs (the operator's additional inputs), so the
    # body closes over no tensor and is traced once, without a compiler pass.
    names = [n for n, w in weights.items() if w is not None]
    given = tuple(weights[n] for n in names)
    absent = {n: None for n, w in weights.items() if w is None}

    def step(*flat):
        previous = state_type(*flat[:fields])
        x_t, *keep_t = flat[fields : fields + len(xs)]
        step_weights = {**dict(zip(names, flat[fields + len(xs) :])), **absent}
        _, new = cell.step(x_t, previous, step_weights)
        new = list(new)
        for i, k in zip(mixed, keep_t):
            new[i] = new[i] + k * (previous[i] - new[i])  # k s + (1 - k) n
        # The output is h again: scan's body must not return one tensor twice.
        return [*new, new[0].clone()]

    out = scan_op(step, [state[i].clone() for i in range(fields)], xs, given)
    return out[fields], state_type(*out[:fields])
