"""Gate statistics, dead units and recurrent spectral norms of an unrolled layer.

- Gated cells: each sigmoid gate's mean and the fraction of its activations that are
  *saturated* (below 0.05 or above 0.95): a saturated gate passes almost no gradient through
  its sigmoid. LSTM gates ``input``, ``forget``, ``output``; GRU ``reset``, ``update``; any cell
  names its own (``cell.sigmoid_gates``).
- Ungated (Elman) cells: the fraction of ``|h| > 0.95`` for tanh (φ' < 0.1) and sigmoid-like
  saturation; for ReLU the *dead-unit* fraction — units that are zero at every step of every
  sequence and so pass no gradient at all.
- ``σ_max`` of the recurrent weight (the parameter whose role is ``recurrent``), of the whole
  matrix and of each gate block (named by ``cell.gate_blocks``).

:func:`gate_values` is the cell's own :meth:`~rnnkit.cells.RecurrentCell.gates`, the function
its ``step`` is built on; a test checks that they reproduce the cell's next state.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from rnnkit.diagnostics.unroll import LayerTrace

SATURATION_LOW, SATURATION_HIGH = 0.05, 0.95


def gate_values(cell, x: Tensor, state, weights: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The gate activations of one step, (B, H) each; ``{}`` for an Elman cell.

    LSTM: ``input``, ``forget``, ``output`` and ``candidate`` (g); GRU: ``reset``, ``update``
    and ``candidate`` (n) — ``cell.gates(x, state, weights)``, the quantities in
    :class:`rnnkit.cells.LSTMCell` and :class:`rnnkit.cells.GRUCell`'s equations.

    Example::

        >>> cell = rnnkit.GRUCell(3, 5)
        >>> gates = gate_values(cell, torch.randn(2, 3), cell.initial_state(2), cell.weights())
        >>> sorted(gates), tuple(gates["update"].shape)
        (['candidate', 'reset', 'update'], (2, 5))
    """
    return cell.gates(x, state, weights)


def gate_statistics(trace: LayerTrace) -> dict:
    """Statistics of one unrolled layer (no gradients are taken).

    Returns a dict:
        ``gates``: ``{gate: {"mean": …, "saturated": …}}`` for the sigmoid gates of a gated cell;
        ``saturated``: the mean saturated fraction over those gates, or for an Elman cell the
        fraction of saturated activations (tanh ``|h| > 0.95``, sigmoid ``h < 0.05 or > 0.95``);
        ``dead_units``: for ReLU Elman cells, the fraction of units zero throughout;
        ``sigma_max``: σ_max of the recurrent weight (``weight_hh``; None if the cell has
        none); ``sigma_max_blocks``: of each gate block.
    """
    cell = trace.cell
    result: dict = {"gates": {}, "saturated": None, "dead_units": None}
    with torch.no_grad():
        totals: dict[str, list[Tensor]] = {}
        for t in range(trace.length):
            values = gate_values(cell, trace.inputs[t], trace.states[t], trace.weights)
            for name, value in values.items():
                if name in cell.sigmoid_gates:
                    totals.setdefault(name, []).append(value)
        for name, values in totals.items():
            v = torch.stack(values)
            saturated = ((v < SATURATION_LOW) | (v > SATURATION_HIGH)).double().mean()
            result["gates"][name] = {"mean": v.mean().item(), "saturated": saturated.item()}
        if totals:
            fractions = [g["saturated"] for g in result["gates"].values()]
            result["saturated"] = sum(fractions) / len(fractions)
        else:
            h = torch.stack([s.h for s in trace.states[1:]])  # (T, B, H)
            nonlinearity = getattr(cell, "nonlinearity", "tanh")
            if nonlinearity == "tanh":
                result["saturated"] = (h.abs() > SATURATION_HIGH).double().mean().item()
            elif nonlinearity == "sigmoid":
                sat = (h < SATURATION_LOW) | (h > SATURATION_HIGH)
                result["saturated"] = sat.double().mean().item()
            if nonlinearity == "relu":
                dead = (h == 0).flatten(0, 1).all(dim=0)
                result["dead_units"] = dead.double().mean().item()
        result["sigma_max"], result["sigma_max_blocks"] = None, {}
        recurrent = cell.parameter_names("recurrent")
        if recurrent:  # a cell whose gates do not read the state has no recurrent weight
            w_hh = trace.weights[recurrent[0]].double()
            result["sigma_max"] = torch.linalg.matrix_norm(w_hh, ord=2).item()
            blocks = w_hh.split(cell.hidden_size, dim=0)
            result["sigma_max_blocks"] = {
                name: torch.linalg.matrix_norm(b, ord=2).item()
                for name, b in zip(cell.gate_blocks, blocks)
            }
    return result
