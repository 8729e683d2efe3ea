"""Character n-gram baselines: what a language model must beat on the same validation text.

Counted on the training ids, scored on the validation ids exactly as the model is scored (every
character after the first; ``<unk>`` targets, id 0, are not scored):

* **unigram**, add-one smoothed over the ``V - 1`` characters of the vocabulary::

      P(c) = (n(c) + 1) / (N + V - 1)

* **bigram**, interpolated absolute discounting (Ney, Essen & Kneser 1994) with ``d = 0.75``::

      P(c | p) = max(n(p, c) - d, 0) / n(p)  +  d · N₁₊(p) / n(p) · P(c)

  where ``N₁₊(p)`` is the number of distinct characters seen after ``p``; a context never seen
  in training (or ``<unk>``) falls back to the unigram.

A model whose validation bits per character are above the unigram's has learnt less than the
character frequencies; above the bigram's, less than which character follows which.

Example::

    >>> import torch
    >>> train = torch.tensor([1, 2, 1, 2, 1, 2, 1, 2])
    >>> scores = ngram_bpc(train, torch.tensor([1, 2, 1, 2]), vocab_size=3)
    >>> round(scores["unigram"], 3), round(scores["bigram"], 3)
    (1.0, 0.159)
"""

from __future__ import annotations

import math

import numpy as np
import torch

DISCOUNT = 0.75


def ngram_bpc(train_ids: torch.Tensor, val_ids: torch.Tensor, vocab_size: int) -> dict:
    """``{"unigram": bpc, "bigram": bpc}`` of the validation ids under models counted on the
    training ids (1-D integer tensors of ids ``< vocab_size``; id 0 is ``<unk>``)."""
    train = np.asarray(train_ids, dtype=np.int64).reshape(-1)
    val = np.asarray(val_ids, dtype=np.int64).reshape(-1)
    V = int(vocab_size)
    if val.size < 2 or V < 2:
        raise ValueError("ngram_bpc needs at least 2 validation ids and 2 vocabulary entries")
    counts = np.bincount(train[train > 0], minlength=V)[:V].astype(np.float64)
    unigram = (counts + 1.0) / (counts.sum() + V - 1)
    unigram[0] = 0.0

    prev, nxt = val[:-1], val[1:]
    scored = nxt > 0
    prev, nxt = prev[scored], nxt[scored]
    if nxt.size == 0:
        raise ValueError("ngram_bpc: every validation target is <unk>")
    p_uni = unigram[nxt]

    pairs = train[:-1] * V + train[1:]
    pairs = pairs[(train[:-1] > 0) & (train[1:] > 0)]
    codes, pair_counts = np.unique(pairs, return_counts=True)
    context = codes // V
    n_context = np.bincount(context, weights=pair_counts, minlength=V)
    distinct = np.bincount(context, minlength=V).astype(np.float64)
    query = prev * V + nxt
    n_pair = np.zeros(query.size)
    if codes.size:
        at = np.searchsorted(codes, query).clip(max=codes.size - 1)
        n_pair = np.where(codes[at] == query, pair_counts[at], 0)
    n_p = n_context[prev]
    known = n_p > 0
    safe = np.where(known, n_p, 1.0)
    p_bi = np.where(
        known,
        np.maximum(n_pair - DISCOUNT, 0.0) / safe + DISCOUNT * distinct[prev] / safe * p_uni,
        p_uni,
    )
    to_bits = -1.0 / (nxt.size * math.log(2))
    return {
        "unigram": float(np.log(p_uni).sum() * to_bits),
        "bigram": float(np.log(p_bi).sum() * to_bits),
    }
