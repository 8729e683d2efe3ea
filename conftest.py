"""pytest settings shared by the test suite and the docstring examples under src/rnnkit."""

import os

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


@pytest.fixture(autouse=True, scope="session")
def _cache_in_a_temporary_folder(tmp_path_factory):
    """Caches (parsed music) go to a folder of this session, never the user's home; child
    processes inherit it."""
    before = os.environ.get("RNNKIT_CACHE_DIR")
    os.environ["RNNKIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if before is None:
        os.environ.pop("RNNKIT_CACHE_DIR", None)
    else:
        os.environ["RNNKIT_CACHE_DIR"] = before
