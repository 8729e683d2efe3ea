"""Whole-model saving as users do it: torch.save / torch.load(weights_only=True) with
rnnkit.safe_globals(), pickle and copy.deepcopy, for every layer class and cell family."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch import nn

import rnnkit

LAYERS = {
    "rnn-relu": lambda: rnnkit.RNN(6, 8, nonlinearity="relu", num_layers=2),
    "rnn-sigmoid": lambda: rnnkit.make_layer("rnn", 6, 8, nonlinearity="sigmoid"),
    "irnn": lambda: rnnkit.IRNN(6, 8),
    "lstm-variants": lambda: rnnkit.LSTM(
        6, 8, peephole=True, layer_norm=True, proj_size=4, bidirectional=True, zoneout=0.1
    ),
    "lstm-coupled-residual": lambda: rnnkit.LSTM(
        6, 8, coupled=True, num_layers=3, residual=True, learn_initial_state=True
    ),
    "gru-reset-before": lambda: rnnkit.GRU(6, 8, reset_after=False, weight_drop=0.2),
    "mingru": lambda: rnnkit.MinGRU(6, 8, num_layers=2),
    "minlstm": lambda: rnnkit.MinLSTM(6, 8, bidirectional=True),
    "slstm": lambda: rnnkit.SLSTM(6, 8, num_heads=2),
}


class WordModel(nn.Module):
    """The shape of PyTorch's word language-model example: embedding → recurrent → linear."""

    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        self.encoder = nn.Embedding(20, 6)
        self.rnn = rnn
        width = rnn.proj_size or rnn.hidden_size
        self.decoder = nn.Linear(width * (2 if rnn.bidirectional else 1), 20)

    def forward(self, tokens, hidden=None):
        output, hidden = self.rnn(self.encoder(tokens), hidden)
        return self.decoder(output), hidden


def _outputs(model, tokens):
    model.eval()
    with torch.no_grad():
        return model(tokens)[0]


@pytest.mark.parametrize("name", list(LAYERS))
def test_a_user_model_saves_whole_and_loads_with_weights_only(name):
    torch.manual_seed(0)
    model = WordModel(LAYERS[name]())
    tokens = torch.randint(0, 20, (7, 3))
    expected = _outputs(model, tokens)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    with pytest.raises(pickle.UnpicklingError):  # torch's default refuses unknown classes
        torch.load(buffer)
    buffer.seek(0)
    allowed = [*rnnkit.safe_globals(), WordModel, nn.Embedding, nn.Linear]
    with torch.serialization.safe_globals(allowed):
        loaded = torch.load(buffer)
    assert torch.equal(_outputs(loaded, tokens), expected)
    assert torch.equal(_outputs(pickle.loads(pickle.dumps(model)), tokens), expected)
    twin = copy.deepcopy(model)
    assert torch.equal(_outputs(twin, tokens), expected)
    with torch.no_grad():
        next(twin.rnn.parameters()).add_(1.0)  # a deep copy shares no storage
    assert torch.equal(_outputs(model, tokens), expected)


def test_safe_globals_names_every_registered_family_and_cell():
    names = {c.__name__ for c in rnnkit.safe_globals()}
    families = {cls.__name__ for cls in rnnkit.layers.cell_families().values()}
    assert families <= names
    assert {"ElmanCell", "LSTMCell", "GRUCell", "MinGRUCell", "SLSTMCell", "LSTMState"} <= names
