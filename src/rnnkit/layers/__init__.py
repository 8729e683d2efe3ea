"""Drop-in recurrent layers over any cell; see :mod:`rnnkit.layers.recurrent`."""

from rnnkit.layers.recurrent import GRU, IRNN, LSTM, RNN, RecurrentLayer, make_layer, reverse_padded

__all__ = ["GRU", "IRNN", "LSTM", "RNN", "RecurrentLayer", "make_layer", "reverse_padded"]
