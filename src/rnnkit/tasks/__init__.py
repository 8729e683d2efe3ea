"""Task heads that own their loss and metrics (see :mod:`rnnkit.tasks.base`).

Names are imported lazily (``rnnkit.tasks.Forecaster`` loads :mod:`rnnkit.tasks.forecaster` on
first use), because task modules import :mod:`rnnkit.train`, which imports this package.
"""

import importlib

# public name -> module that defines it
_LAZY = {
    "Forecaster": "rnnkit.tasks.forecaster",
    "LanguageModel": "rnnkit.tasks.lm",
    "Seq2Seq": "rnnkit.tasks.seq2seq",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rnnkit.tasks' has no attribute {name!r}")


__all__ = sorted(_LAZY)
