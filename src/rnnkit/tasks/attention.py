r"""Attention over an encoder's outputs: Luong dot and general, Bahdanau additive.

Shapes: B batch, T query steps, S source positions, Q query features, M memory features.

Each module scores every (query step, source position), masks positions past a source's length,
normalises with a softmax over the source and returns the weighted sum of memory rows:

.. math::

    \alpha_{ts} = \mathrm{softmax}_s\, e_{ts}, \qquad c_t = \sum_s \alpha_{ts}\, m_s

with scores

- dot (Luong et al. 2015): :math:`e_{ts} = q_t^\top m_s` (needs Q = M);
- general (Luong): :math:`e_{ts} = q_t^\top W_a m_s`;
- additive (Bahdanau et al. 2015): :math:`e_{ts} = v_a^\top \tanh(W_a q_t + U_a m_s)`.

The memory-side projection does not depend on the query, so :meth:`keys` computes it once per
source and every decoding step reuses it.

Example::

    >>> attn = make_attention("general", query_size=8, memory_size=6)
    >>> memory, mask = torch.randn(2, 5, 6), torch.ones(2, 5, dtype=torch.bool)
    >>> context, weights = attn(torch.randn(2, 3, 8), attn.keys(memory), memory, mask)
    >>> context.shape, weights.shape
    (torch.Size([2, 3, 6]), torch.Size([2, 3, 5]))
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

ATTENTIONS = ("dot", "general", "additive", "none")


class Attention(nn.Module):
    """Base: ``forward(query (B,T,Q), keys, memory (B,S,M), mask (B,S)) -> (B,T,M), (B,T,S)``."""

    def keys(self, memory: Tensor) -> Tensor:
        """The query-independent part of the scores, computed once per source."""
        return memory

    def scores(self, query: Tensor, keys: Tensor) -> Tensor:  # (B,T,Q), keys -> (B,T,S)
        raise NotImplementedError

    def forward(self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor):
        scores = self.scores(query, keys)
        # Padding positions get -inf, so they receive exactly zero weight.
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return torch.bmm(weights, memory), weights


class DotAttention(Attention):
    """Luong dot: :math:`e_{ts} = q_t^\\top m_s`; query and memory sizes must match."""

    def __init__(self, query_size: int, memory_size: int) -> None:
        super().__init__()
        if query_size != memory_size:
            raise ValueError(
                f"dot attention needs the decoder hidden size ({query_size}) to equal the encoder "
                f"output size ({memory_size}); use attention='general' or match the sizes"
            )

    def scores(self, query: Tensor, keys: Tensor) -> Tensor:
        return torch.bmm(query, keys.transpose(1, 2))


class GeneralAttention(Attention):
    """Luong general: :math:`e_{ts} = q_t^\\top W_a m_s`."""

    def __init__(self, query_size: int, memory_size: int) -> None:
        super().__init__()
        self.weight = nn.Linear(memory_size, query_size, bias=False)

    def keys(self, memory: Tensor) -> Tensor:
        return self.weight(memory)  # (B, S, Q)

    def scores(self, query: Tensor, keys: Tensor) -> Tensor:
        return torch.bmm(query, keys.transpose(1, 2))


class AdditiveAttention(Attention):
    """Bahdanau additive: :math:`e_{ts} = v_a^\\top \\tanh(W_a q_t + U_a m_s)`."""

    def __init__(self, query_size: int, memory_size: int, attention_size: int | None = None):
        super().__init__()
        attention_size = attention_size or query_size
        self.query_proj = nn.Linear(query_size, attention_size, bias=False)
        self.memory_proj = nn.Linear(memory_size, attention_size, bias=True)
        self.v = nn.Linear(attention_size, 1, bias=False)

    def keys(self, memory: Tensor) -> Tensor:
        return self.memory_proj(memory)  # (B, S, A)

    def scores(self, query: Tensor, keys: Tensor) -> Tensor:
        q = self.query_proj(query)  # (B, T, A)
        hidden = torch.tanh(q.unsqueeze(2) + keys.unsqueeze(1))  # (B, T, S, A)
        return self.v(hidden).squeeze(-1)


def make_attention(kind: str, query_size: int, memory_size: int) -> Attention | None:
    """``dot``, ``general``, ``additive``, or ``none`` (returns None)."""
    if kind == "none":
        return None
    classes = {"dot": DotAttention, "general": GeneralAttention, "additive": AdditiveAttention}
    if kind not in classes:
        raise ValueError(f"attention must be one of {', '.join(ATTENTIONS)}; got {kind!r}")
    return classes[kind](query_size, memory_size)
