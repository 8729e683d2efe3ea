"""1-nearest-neighbour DTW (rnnkit.tasks.dtw) against the textbook dynamic programme."""

from __future__ import annotations

import math

import pytest
import torch

from rnnkit.tasks.dtw import dtw_distances, nearest_neighbour_labels


def textbook_dtw(x, y) -> float:
    """D[i, j] = |x_i - y_j|² + min(D[i-1, j-1], D[i-1, j], D[i, j-1]), cell by cell."""
    n, m = len(x), len(y)
    D = [[math.inf] * (m + 1) for _ in range(n + 1)]
    D[0][0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost = float(((x[i - 1] - y[j - 1]) ** 2).sum())
            D[i][j] = cost + min(D[i - 1][j - 1], D[i - 1][j], D[i][j - 1])
    return D[n][m]


@pytest.mark.parametrize("Ta, Tb, max_cells", [(7, 5, 10**7), (3, 9, 10), (1, 4, 10**7), (6, 6, 1)])
def test_distances_match_the_textbook_programme_for_unequal_padded_lengths(Ta, Tb, max_cells):
    g = torch.Generator().manual_seed(Ta * 10 + Tb)
    a = torch.randn(3, Ta, 2, generator=g, dtype=torch.float64)
    b = torch.randn(4, Tb, 2, generator=g, dtype=torch.float64)
    la = torch.randint(1, Ta + 1, (3,), generator=g)
    lb = torch.randint(1, Tb + 1, (4,), generator=g)
    got = dtw_distances(a, b, la, lb, max_cells=max_cells)
    assert got.dtype == torch.float64 and got.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            want = textbook_dtw(a[i, : la[i]], b[j, : lb[j]])
            assert abs(float(got[i, j]) - want) <= 1e-12 * max(1.0, want)


def test_warping_makes_a_stretched_copy_distance_zero_and_padding_is_ignored():
    x = torch.tensor([[0.0, 1.0, 2.0, 3.0, 0.0, 0.0]]).unsqueeze(-1)
    stretched = torch.tensor([[0.0, 0.0, 1.0, 2.0, 2.0, 3.0]]).unsqueeze(-1)
    assert float(dtw_distances(x, stretched, [4], [6])[0, 0]) == 0.0
    assert float(dtw_distances(x, stretched)[0, 0]) > 0  # the trailing zeros count when unmasked


def test_nearest_neighbour_labels_pick_the_closest_training_series():
    train = torch.tensor([[0.0, 0, 1, 1], [5, 5, 6, 6], [0, 0, 0, 9]]).unsqueeze(-1)
    test = torch.tensor([[5.2, 6.1, 6.0, 0.0], [0.1, 1.0, 0.0, 0.0]]).unsqueeze(-1)
    labels = nearest_neighbour_labels(train, ["a", "b", "c"], test, test_lengths=[3, 2])
    assert labels == ["b", "a"]


@pytest.mark.parametrize(
    "a, b, la, message",
    [
        (torch.zeros(2, 3), torch.zeros(2, 3, 1), None, "(N, T, C)"),
        (torch.zeros(2, 3, 1), torch.zeros(2, 3, 2), None, "channels"),
        (torch.zeros(2, 3, 1), torch.zeros(2, 3, 1), [4, 1], "lengths"),
        (torch.zeros(2, 3, 1), torch.zeros(2, 3, 1), [0, 1], "lengths"),
    ],
)
def test_bad_inputs_are_value_errors(a, b, la, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        dtw_distances(a, b, la)
