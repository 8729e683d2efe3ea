"""Drop-in recurrent layers over any cell; see :mod:`rnnkit.layers.recurrent`.

Cell families by name (``lstm``, ``gru``, ``rnn``, ``irnn``, ``mingru``, ``minlstm``, ``slstm`` and
any registered later): :mod:`rnnkit.layers.registry`. minGRU, minLSTM, sLSTM:
:mod:`rnnkit.layers.modern`.
"""

from rnnkit.layers.modern import SLSTM, MinGRU, MinLSTM  # registers mingru, minlstm, slstm
from rnnkit.layers.recurrent import GRU, IRNN, LSTM, RNN, RecurrentLayer, make_layer, reverse_padded
from rnnkit.layers.registry import cell_families, cell_family, register_cell_family

__all__ = [
    "GRU",
    "IRNN",
    "LSTM",
    "MinGRU",
    "MinLSTM",
    "RNN",
    "SLSTM",
    "RecurrentLayer",
    "cell_families",
    "cell_family",
    "make_layer",
    "register_cell_family",
    "reverse_padded",
]
