"""Recurrent regularisers: variational dropout, DropConnect on W_hh, zoneout.

All three are drawn by the layer, outside the backends, so every backend sees the same masks for
the same seed, and all three are inactive (or replaced by their expectation) in ``eval()``.

- Variational dropout (Gal & Ghahramani 2016): one Bernoulli mask per sequence and feature,
  reused at every time step, on the input of the first layer and the output of every layer;
  kept units are scaled by ``1/(1-p)`` so the expectation is unchanged.
- Weight drop (Wan et al. 2013, AWD-LSTM): DropConnect on ``weight_hh``, one mask per forward
  call shared by all time steps, scaled by ``1/(1-p)``.
- Zoneout (Krueger et al. 2017): each unit of each state field keeps its previous value with
  probability p at each step, ``s_t = m ⊙ s_{t-1} + (1-m) ⊙ s̃_t``; in eval ``m`` is replaced
  by its expectation p.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def check_probability(name: str, p: float, *, allow_one: bool = False) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        raise TypeError(f"{name} must be a float in [0, 1), got {type(p).__name__}: {p!r}")
    upper_ok = p <= 1 if allow_one else p < 1
    if not (p >= 0 and upper_ok):
        bound = "[0, 1]" if allow_one else "[0, 1)"
        raise ValueError(f"{name} must be in {bound}, got {p}")
    return float(p)


def sequence_mask(batch: int, features: int, p: float, like: Tensor) -> Tensor:
    """A (1, B, F) inverted-dropout mask, broadcast over time (time-major)."""
    keep = torch.full((1, batch, features), 1.0 - p, dtype=like.dtype, device=like.device)
    return torch.bernoulli(keep) / (1.0 - p)


def drop_connect(weight: Tensor, p: float, training: bool) -> Tensor:
    """DropConnect: an inverted-dropout mask on the weight itself."""
    if not training or p == 0:
        return weight
    return F.dropout(weight, p, training=True)


def zoneout_keep(shape: tuple[int, ...], p: float, training: bool, like: Tensor) -> Tensor:
    """Keep-previous probabilities for zoneout: a Bernoulli(p) draw in training, p in eval."""
    keep = torch.full(shape, p, dtype=like.dtype, device=like.device)
    return torch.bernoulli(keep) if training else keep
