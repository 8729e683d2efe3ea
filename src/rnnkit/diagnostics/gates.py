"""Gate statistics, dead units and recurrent spectral norms of an unrolled layer.

- Gated cells: each gate's mean and the fraction of its activations that are *saturated*
  (below 0.05 or above 0.95): a saturated gate passes almost no gradient through its
  sigmoid. LSTM gates ``input``, ``forget``, ``output``; GRU ``reset``, ``update``.
- Elman cells: the fraction of ``|h| > 0.95`` for tanh (φ' < 0.1) and sigmoid-like
  saturation; for ReLU the *dead-unit* fraction — units that are zero at every step of every
  sequence and so pass no gradient at all.
- ``σ_max(W_hh)``, of the whole matrix and of each gate block.

:func:`gate_values` recomputes the gates of one step from the cell's equations (the cells do
not expose them); a test checks that they reproduce the cell's own next state.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from rnnkit.cells import GRUCell, LSTMCell
from rnnkit.cells.lstm import block_layer_norm
from rnnkit.diagnostics.unroll import LayerTrace

SATURATION_LOW, SATURATION_HIGH = 0.05, 0.95


def gate_values(cell, x: Tensor, state, weights: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The gate activations of one step, (B, H) each; ``{}`` for an Elman cell.

    LSTM: ``input``, ``forget``, ``output`` and ``candidate`` (g); GRU: ``reset``, ``update``
    and ``candidate`` (n) — the quantities in :class:`rnnkit.cells.LSTMCell` and
    :class:`rnnkit.cells.GRUCell`'s equations.
    """
    if isinstance(cell, LSTMCell):
        return _lstm_gates(cell, x, state, weights)
    if isinstance(cell, GRUCell):
        return _gru_gates(cell, x, state, weights)
    return {}


def _lstm_gates(cell: LSTMCell, x, state, weights) -> dict[str, Tensor]:
    h, c = state
    k = cell.gate_count
    a_x = x @ weights["weight_ih"].t()
    a_h = h @ weights["weight_hh"].t()
    if cell.layer_norm:
        a_x = block_layer_norm(a_x, weights["layer_norm_ih_weight"], k)
        a_h = block_layer_norm(a_h, weights["layer_norm_hh_weight"], k)
    a = a_x + a_h
    if cell.bias:
        a = a + weights["bias_ih"] + weights["bias_hh"]
    if cell.coupled:
        a_f, a_g, a_o = a.chunk(3, dim=1)
        a_i = None
    else:
        a_i, a_f, a_g, a_o = a.chunk(4, dim=1)
    a_f = a_f + cell.forget_bias
    if cell.peephole:
        a_f = a_f + weights["weight_cf"] * c
        if a_i is not None:
            a_i = a_i + weights["weight_ci"] * c
    f = a_f.sigmoid()
    i = 1 - f if a_i is None else a_i.sigmoid()
    g = a_g.tanh()
    c_new = f * c + i * g
    if cell.peephole:
        a_o = a_o + weights["weight_co"] * c_new
    return {"input": i, "forget": f, "output": a_o.sigmoid(), "candidate": g}


def _gru_gates(cell: GRUCell, x, state, weights) -> dict[str, Tensor]:
    h = state.h
    H = cell.hidden_size
    gi = x @ weights["weight_ih"].t()
    if cell.bias:
        gi = gi + weights["bias_ih"]
    i_r, i_z, i_n = gi.chunk(3, dim=1)
    w_hh = weights["weight_hh"]
    b_hh = weights["bias_hh"] if cell.bias else torch.zeros(3 * H, dtype=x.dtype, device=x.device)
    h_r = h @ w_hh[:H].t() + b_hh[:H]
    h_z = h @ w_hh[H : 2 * H].t() + b_hh[H : 2 * H]
    r = (i_r + h_r).sigmoid()
    z = (i_z + h_z).sigmoid()
    if cell.reset_after:
        n = (i_n + r * (h @ w_hh[2 * H :].t() + b_hh[2 * H :])).tanh()
    else:
        n = (i_n + (r * h) @ w_hh[2 * H :].t() + b_hh[2 * H :]).tanh()
    return {"reset": r, "update": z, "candidate": n}


SIGMOID_GATES = {"input", "forget", "output", "reset", "update"}


def gate_statistics(trace: LayerTrace) -> dict:
    """Statistics of one unrolled layer (no gradients are taken).

    Returns a dict:
        ``gates``: ``{gate: {"mean": …, "saturated": …}}`` for the sigmoid gates of a gated cell;
        ``saturated``: the mean saturated fraction over those gates, or for an Elman cell the
        fraction of saturated activations (tanh ``|h| > 0.95``, sigmoid ``h < 0.05 or > 0.95``);
        ``dead_units``: for ReLU Elman cells, the fraction of units zero throughout;
        ``sigma_max``: σ_max of ``weight_hh``; ``sigma_max_blocks``: of each gate block.
    """
    cell = trace.cell
    result: dict = {"gates": {}, "saturated": None, "dead_units": None}
    with torch.no_grad():
        totals: dict[str, list[Tensor]] = {}
        for t in range(trace.length):
            values = gate_values(cell, trace.inputs[t], trace.states[t], trace.weights)
            for name, value in values.items():
                if name in SIGMOID_GATES:
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
        w_hh = trace.weights["weight_hh"].double()
        result["sigma_max"] = torch.linalg.matrix_norm(w_hh, ord=2).item()
        blocks = w_hh.split(cell.hidden_size, dim=0)
        names = _block_names(cell)
        result["sigma_max_blocks"] = {
            name: torch.linalg.matrix_norm(b, ord=2).item() for name, b in zip(names, blocks)
        }
    return result


def _block_names(cell) -> list[str]:
    if isinstance(cell, LSTMCell):
        return (
            ["forget", "candidate", "output"]
            if cell.coupled
            else [
                "input",
                "forget",
                "candidate",
                "output",
            ]
        )
    if isinstance(cell, GRUCell):
        return ["reset", "update", "candidate"]
    return ["hidden"]
