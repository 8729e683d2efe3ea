"""One time step each: ``cell(x_t, state) -> (y_t, new_state)``; the specification of rnnkit."""

from rnnkit.cells.base import HiddenState, LSTMState, RecurrentCell
from rnnkit.cells.elman import NONLINEARITIES, ElmanCell
from rnnkit.cells.gru import GRUCell
from rnnkit.cells.lstm import LSTMCell
from rnnkit.cells.minimal import MinGRUCell, MinLSTMCell
from rnnkit.cells.slstm import SLSTMCell, SLSTMState

__all__ = [
    "NONLINEARITIES",
    "ElmanCell",
    "GRUCell",
    "HiddenState",
    "LSTMCell",
    "LSTMState",
    "MinGRUCell",
    "MinLSTMCell",
    "RecurrentCell",
    "SLSTMCell",
    "SLSTMState",
]
