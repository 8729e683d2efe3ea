"""The 1-nearest-neighbour DTW classifier: the baseline the UCR/UEA archives publish.

Dynamic time warping between series ``a`` (``Ta`` steps) and ``b`` (``Tb`` steps), channels
compared jointly (DTW_D of the UEA archive; for one channel it is plain DTW), full window::

    c[i, j] = ||a_i - b_j||²
    D[i, j] = c[i, j] + min(D[i-1, j-1], D[i-1, j], D[i, j-1]),   D[0, 0] = c[0, 0]
    DTW(a, b) = D[Ta-1, Tb-1]

A test series gets the label of the training series with the smallest DTW. The recurrence runs
along anti-diagonals ``k = i + j`` (every cell of a diagonal depends only on the two before it),
vectorised over all pairs of a chunk, so padded batches of unequal lengths are exact: a cell
``(i, j)`` only reads cells with smaller indices, and each pair's distance is read at its own
``(Ta-1, Tb-1)``.

Example::

    >>> a = torch.tensor([[0.0, 1.0, 2.0, 2.0]]).unsqueeze(-1)
    >>> b = torch.tensor([[0.0, 1.0, 1.0, 2.0]]).unsqueeze(-1)
    >>> float(dtw_distances(a, b)[0, 0])
    0.0
    >>> x = torch.tensor([[0.0, 0, 1, 1], [5, 5, 6, 6]]).unsqueeze(-1)
    >>> nearest_neighbour_labels(x, [0, 1], torch.tensor([[0.2, 1.1], [5.5, 6.0]]).unsqueeze(-1))
    [0, 1]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

_INF = float("inf")


def _lengths(x: Tensor, lengths) -> Tensor:
    if lengths is None:
        return torch.full((x.shape[0],), x.shape[1], dtype=torch.long)
    lengths = torch.as_tensor(lengths, dtype=torch.long)
    if lengths.shape != (x.shape[0],) or int(lengths.min()) < 1 or int(lengths.max()) > x.shape[1]:
        raise ValueError(f"lengths must be ({x.shape[0]},) values in 1..{x.shape[1]}")
    return lengths


def _check(x: Tensor, name: str) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must be a (N, T, C) tensor with N, T >= 1")
    return x if x.dtype in (torch.float32, torch.float64) else x.to(torch.float32)


@torch.no_grad()
def dtw_distances(
    a: Tensor,
    b: Tensor,
    a_lengths: Sequence[int] | Tensor | None = None,
    b_lengths: Sequence[int] | Tensor | None = None,
    *,
    max_cells: int = 20_000_000,
) -> Tensor:
    """DTW between every series of ``a`` ``(Na, Ta, C)`` and of ``b`` ``(Nb, Tb, C)``:
    ``(Na, Nb)`` in the inputs' floating dtype (float32 unless one is float64).
    ``*_lengths``: valid steps per series (padding after them is ignored). ``max_cells`` bounds
    the work arrays (pairs × ``Ta``) of each chunk of ``b``.

    Raises:
        ValueError: not 3-D tensors, channel counts differ, or bad lengths.
    """
    a, b = _check(a, "a"), _check(b, "b")
    dtype = torch.promote_types(a.dtype, b.dtype)
    a, b = a.to(dtype), b.to(dtype)
    if a.shape[2] != b.shape[2]:
        raise ValueError(f"a has {a.shape[2]} channels, b {b.shape[2]}")
    la, lb = _lengths(a, a_lengths), _lengths(b, b_lengths)
    Na, Ta = a.shape[:2]
    out = torch.empty(Na, b.shape[0], dtype=dtype)
    chunk = max(1, max_cells // max(1, Na * Ta))
    for start in range(0, b.shape[0], chunk):
        part = slice(start, start + chunk)
        out[:, part] = _dtw_block(a, la, b[part], lb[part])
    return out


def _dtw_block(a: Tensor, la: Tensor, b: Tensor, lb: Tensor) -> Tensor:
    """DTW of every pair (a row, b row): ``(Na, Nb)``, along anti-diagonals."""
    Na, Ta, _ = a.shape
    Nb, Tb = b.shape[:2]
    P = Na * Nb
    flipped = b.flip(1)  # b[:, k - i] for i = lo..hi is a forward slice of the flipped series
    ends_i = (la.unsqueeze(1).expand(Na, Nb) - 1).reshape(-1)
    ends_k = ends_i + (lb.unsqueeze(0).expand(Na, Nb) - 1).reshape(-1)
    result = torch.full((P,), _INF, dtype=a.dtype)
    # Three diagonals in rotation; column i + 1 holds D[i, k - i], column 0 is always inf.
    # Cells outside a diagonal are never written, or hold values no later diagonal reads.
    buffers = [torch.full((P, Ta + 1), _INF, dtype=a.dtype) for _ in range(3)]
    for k in range(Ta + Tb - 1):
        lo, hi = max(0, k - Tb + 1), min(k, Ta - 1)
        j0 = Tb - 1 - k + lo
        cost = (a[:, None, lo : hi + 1] - flipped[None, :, j0 : j0 + hi - lo + 1]).pow(2)
        cost = cost.sum(-1).view(P, -1)  # (P, n): c[i, k - i]
        current, prev1, prev2 = buffers[k % 3], buffers[(k - 1) % 3], buffers[(k - 2) % 3]
        if k == 0:
            current[:, 1:2] = cost
        else:
            best = torch.minimum(prev2[:, lo : hi + 1], prev1[:, lo : hi + 1])  # D[i-1, j-1|j]
            torch.minimum(best, prev1[:, lo + 1 : hi + 2], out=best)  # D[i, j-1]
            current[:, lo + 1 : hi + 2] = cost + best
        done = ends_k == k
        if bool(done.any()):
            rows = done.nonzero().squeeze(1)
            result[rows] = current[rows, ends_i[rows] + 1]
    return result.view(Na, Nb)


def nearest_neighbour_labels(
    train: Tensor,
    train_labels: Sequence,
    test: Tensor,
    train_lengths=None,
    test_lengths=None,
) -> list:
    """The 1-NN DTW prediction for every test series (ties: the first training series)."""
    if len(train_labels) != train.shape[0]:
        raise ValueError(f"{len(train_labels)} labels for {train.shape[0]} training series")
    distances = dtw_distances(test, train, test_lengths, train_lengths)
    return [train_labels[int(j)] for j in distances.argmin(1)]
