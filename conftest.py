"""pytest settings shared by the test suite and the docstring examples under src/rnnkit."""

import pytest
import torch

# The test models are tiny: one thread avoids threading overhead and oversubscription when the
# machine is shared. Benchmarks, not tests, measure speed.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    """Docstring examples may use ``torch`` and ``rnnkit`` without importing them, and start
    from the same random state every time."""
    import rnnkit

    doctest_namespace["torch"] = torch
    doctest_namespace["rnnkit"] = rnnkit
    torch.manual_seed(0)
