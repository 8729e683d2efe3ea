"""rnnkit: recurrent sequence learning for PyTorch.

Every recurrent cell the literature uses (Elman/IRNN, LSTM with peephole, coupled gates, layer
norm and projection, GRU in both formulations) as drop-in ``torch.nn`` layers with three
backends, plus training, tasks and gradient-flow diagnostics.
"""

__version__ = "0.1.0"

from rnnkit.cells import ElmanCell, GRUCell, HiddenState, LSTMCell, LSTMState  # noqa: E402
from rnnkit.layers import GRU, IRNN, LSTM, RNN, SLSTM, MinGRU, MinLSTM, make_layer  # noqa: E402
from rnnkit.serialization import safe_globals  # noqa: E402

__all__ = [
    "GRU",
    "IRNN",
    "LSTM",
    "RNN",
    "SLSTM",
    "ElmanCell",
    "GRUCell",
    "HiddenState",
    "LSTMCell",
    "LSTMState",
    "MinGRU",
    "MinLSTM",
    "__version__",
    "load",
    "make_layer",
    "safe_globals",
]


def __getattr__(name: str):
    if name == "load":  # rnnkit.load(RUN_DIR): imported on first use, not with the layers
        from rnnkit.runs import load

        return load
    raise AttributeError(f"module 'rnnkit' has no attribute {name!r}")
