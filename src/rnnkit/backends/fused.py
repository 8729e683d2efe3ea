"""The ``fused`` backend: run a cell's own whole-sequence kernel.

A cell names its kernel with :meth:`~rnnkit.cells.RecurrentCell.fused_kernel` (LSTM:
:func:`~rnnkit.backends.fused_lstm.lstm_scan`, GRU: :func:`~rnnkit.backends.fused_gru.gru_scan`,
Elman: :func:`~rnnkit.backends.fused_elman.elman_scan`, sLSTM:
:func:`~rnnkit.backends.fused_slstm.slstm_scan`, or a cell's ``sequence_scan``). Each has
:func:`rnnkit.backends.reference.scan`'s signature and result; in the hand-written ones the input
projection for all steps is one matmul, and the recurrence runs in one
``torch.autograd.Function`` with a hand-written BPTT backward (no per-step autograd graph).
"""

from __future__ import annotations


def scan(cell, weights, x, state, keep=None):
    """:func:`rnnkit.backends.reference.scan` through ``cell.fused_kernel()``.

    Raises:
        ValueError: the cell has no fused kernel.
    """
    kernel = cell.fused_kernel()
    if kernel is None:
        raise ValueError(
            f"the fused backend has no kernel for {type(cell).__name__} (fused_kernel() is None); "
            "use backend='reference'"
        )
    return kernel(cell, weights, x, state, keep)
