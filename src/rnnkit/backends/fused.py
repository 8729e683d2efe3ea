"""The ``fused`` backend: dispatch a cell to its whole-sequence autograd.Function.

Each ``*_scan`` has :func:`rnnkit.backends.reference.scan`'s signature and result; the input
projection for all steps is one matmul, and the recurrence runs in one
``torch.autograd.Function`` with a hand-written BPTT backward (no per-step autograd graph).
"""

from __future__ import annotations

from rnnkit.cells import ElmanCell, GRUCell, LSTMCell


def scan(cell, weights, x, state, keep=None):
    if isinstance(cell, LSTMCell):
        from rnnkit.backends.fused_lstm import lstm_scan

        return lstm_scan(cell, weights, x, state, keep)
    if isinstance(cell, GRUCell):
        from rnnkit.backends.fused_gru import gru_scan

        return gru_scan(cell, weights, x, state, keep)
    if isinstance(cell, ElmanCell):
        from rnnkit.backends.fused_elman import elman_scan

        return elman_scan(cell, weights, x, state, keep)
    raise TypeError(f"the fused backend has no kernel for {type(cell).__name__}")
