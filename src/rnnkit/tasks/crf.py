r"""Linear-chain conditional random field: sentence log-likelihood and Viterbi decoding.

For emissions :math:`e_t(k)` (the tagger's per-word tag scores) and a tag path
:math:`y_1 … y_n`, the path score is

.. math::

    s(y) = \pi_{y_1} + \sum_{t=1}^{n} e_t(y_t) + \sum_{t=2}^{n} A_{y_{t-1} y_t} + \omega_{y_n}

with ``start`` :math:`\pi`, ``transitions`` :math:`A` (row = previous tag, column = next tag)
and ``end`` :math:`\omega`. The model is :math:`p(y \mid x) = \exp s(y) / Z`, and
:math:`\log Z = \operatorname{logsumexp}_y s(y)` over all :math:`K^n` paths is computed by the
forward algorithm in :math:`O(n K^2)`:

.. math::

    \alpha_1(j) = \pi_j + e_1(j), \qquad
    \alpha_t(j) = \operatorname{logsumexp}_i \big(\alpha_{t-1}(i) + A_{ij}\big) + e_t(j), \qquad
    \log Z = \operatorname{logsumexp}_j \big(\alpha_n(j) + \omega_j\big).

Viterbi decoding replaces logsumexp by max and keeps back-pointers, giving
:math:`\arg\max_y s(y)`. Sentences in a batch have their own lengths; positions past a
sentence's length are ignored. Everything is differentiated by autograd.

Shapes: B sentences, T longest sentence, K tags.
    - ``emissions``: (B, T, K); ``tags``: (B, T) (values past the length are ignored);
      ``lengths``: (B,) integers in 1..T.

Example::

    >>> crf = CRF(num_tags=3)
    >>> emissions = torch.randn(2, 4, 3)
    >>> lengths = torch.tensor([4, 2])
    >>> crf.decode(emissions, lengths)  # doctest: +SKIP
    [[0, 2, 2, 1], [1, 0]]
    >>> nll = crf(emissions, torch.zeros(2, 4, dtype=torch.long), lengths)  # (B,)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def lengths_mask(lengths: Tensor, T: int) -> Tensor:
    """(B, T) boolean mask, True where ``t < lengths[b]``."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


class CRF(nn.Module):
    """Linear-chain CRF over ``num_tags`` tags (see the module docstring for the equations).

    Parameters: ``start`` (K), ``end`` (K), ``transitions`` (K, K), initialised to zero so an
    untrained CRF decodes exactly as per-word argmax.
    """

    def __init__(self, num_tags: int):
        super().__init__()
        if num_tags < 1:
            raise ValueError(f"num_tags must be >= 1, got {num_tags}")
        self.num_tags = num_tags
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}"

    def _check(self, emissions: Tensor, lengths: Tensor) -> Tensor:
        if emissions.dim() != 3 or emissions.shape[-1] != self.num_tags:
            raise ValueError(
                f"emissions must be (B, T, {self.num_tags}), got {tuple(emissions.shape)}"
            )
        B, T, _ = emissions.shape
        lengths = torch.as_tensor(lengths, device=emissions.device)
        if lengths.shape != (B,):
            raise ValueError(f"lengths must be ({B},), got {tuple(lengths.shape)}")
        if B and (int(lengths.min()) < 1 or int(lengths.max()) > T):
            raise ValueError(f"lengths must be in 1..{T}, got {lengths.tolist()}")
        return lengths

    def log_partition(self, emissions: Tensor, lengths: Tensor) -> Tensor:
        """:math:`\\log Z` per sentence by the forward algorithm, (B,)."""
        lengths = self._check(emissions, lengths)
        B, T, K = emissions.shape
        mask = lengths_mask(lengths, T)
        alpha = self.start + emissions[:, 0]  # (B, K)
        transitions = self.transitions[None]  # (1, K_prev, K_next)
        for t, (e_t, m_t) in enumerate(zip(emissions.unbind(1), mask.unbind(1))):
            if t == 0:
                continue
            step = torch.logsumexp(alpha[:, :, None] + transitions, dim=1) + e_t
            alpha = torch.where(m_t[:, None], step, alpha)  # finished sentences keep alpha_n
        return torch.logsumexp(alpha + self.end, dim=1)

    def score(self, emissions: Tensor, tags: Tensor, lengths: Tensor) -> Tensor:
        """Path score :math:`s(y)` of ``tags`` per sentence, (B,)."""
        lengths = self._check(emissions, lengths)
        B, T, K = emissions.shape
        mask = lengths_mask(lengths, T)
        tags = tags.clamp(0, K - 1) * mask  # padding (e.g. -100) -> any valid id, masked below
        emitted = emissions.gather(2, tags[:, :, None]).squeeze(2)  # (B, T)
        total = (emitted * mask).sum(1) + self.start[tags[:, 0]]
        if T > 1:
            moved = self.transitions[tags[:, :-1], tags[:, 1:]]  # (B, T-1)
            total = total + (moved * mask[:, 1:]).sum(1)
        last = tags.gather(1, (lengths - 1)[:, None]).squeeze(1)
        return total + self.end[last]

    def forward(self, emissions: Tensor, tags: Tensor, lengths: Tensor) -> Tensor:
        """Negative log-likelihood :math:`\\log Z - s(y)` per sentence, (B,)."""
        return self.log_partition(emissions, lengths) - self.score(emissions, tags, lengths)

    @torch.no_grad()
    def viterbi(self, emissions: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Best path and its score: ``(paths (B, T) with -1 past each length, scores (B,))``."""
        lengths = self._check(emissions, lengths)
        B, T, K = emissions.shape
        mask = lengths_mask(lengths, T)
        score = self.start + emissions[:, 0]
        identity = torch.arange(K, device=emissions.device).expand(B, K)
        pointers = []
        for t in range(1, T):
            best, argbest = (score[:, :, None] + self.transitions[None]).max(dim=1)
            m_t = mask[:, t, None]
            score = torch.where(m_t, best + emissions[:, t], score)
            # past the end the pointer is the identity, so backtracking passes through unchanged
            pointers.append(torch.where(m_t, argbest, identity))
        best_score, last = (score + self.end).max(dim=1)
        path = [last]
        for pointer in reversed(pointers):
            last = pointer.gather(1, last[:, None]).squeeze(1)
            path.append(last)
        paths = torch.stack(path[::-1], dim=1)
        return paths.masked_fill(~mask, -1), best_score

    def decode(self, emissions: Tensor, lengths: Tensor) -> list[list[int]]:
        """Viterbi tag ids for each sentence, cut to its length."""
        paths, _ = self.viterbi(emissions, lengths)
        return [row[: int(n)] for row, n in zip(paths.tolist(), torch.as_tensor(lengths).tolist())]
