"""What tasks share: the cell names they accept and a size check.

The task contract itself (:class:`Task`, :class:`StepOutput`) lives below the training engine,
in :mod:`rnnkit.train.task`, and is re-exported here; the registry of task families and the
run lifecycle are :mod:`rnnkit.runs`.
"""

from __future__ import annotations

from typing import Any

from rnnkit.layers import cell_families
from rnnkit.train.task import StepOutput, Task  # noqa: F401  (re-exported)

# The cell families every task accepts (lstm, gru, rnn, irnn and any registered later): a live
# read-only view of the registry, so ``cell in CELLS`` sees families registered at run time.
CELLS = cell_families()


def check_positive_ints(**values: Any) -> None:
    """Raise ValueError naming the first argument that is not an int >= 1."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
