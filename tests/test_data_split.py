"""The one train/validation/test split (rnnkit.data.split), by counts and by fractions."""

from __future__ import annotations

import pytest

from rnnkit.data.split import split_indices, split_size
from rnnkit.errors import InvalidInputError


def test_fractions_partition_is_seeded_and_complete():
    a = split_indices(103, 0.1, 0.2, seed=5)
    assert a == split_indices(103, 0.1, 0.2, seed=5)
    assert a != split_indices(103, 0.1, 0.2, seed=6)
    assert (len(a["train"]), len(a["val"]), len(a["test"])) == (72, 10, 21)
    assert sorted(a["train"] + a["val"] + a["test"]) == list(range(103))
    assert all(part == sorted(part) for part in a.values())
    with pytest.raises(ValueError, match="val and test fractions must sum to < 1"):
        split_indices(10, 0.5, 0.5, seed=0)


def test_counts_partition_is_seeded_and_disjoint():
    split = split_indices(20, 3, 5, seed=1)
    assert [len(split[k]) for k in ("train", "val", "test")] == [12, 3, 5]
    assert sorted(split["train"] + split["val"] + split["test"]) == list(range(20))
    assert split_indices(20, 3, 5, seed=1) == split != split_indices(20, 3, 5, seed=2)


def test_counts_and_fractions_agree():
    # 0.1 of 100 is the count 10: the same sizes give the same parts.
    assert split_indices(100, 0.1, 0.2, seed=3) == split_indices(100, 10, 20, seed=3)
    assert split_indices(100, 10, 0.2, seed=3) == split_indices(100, 0.1, 20, seed=3)


def test_too_few_examples_names_them():
    with pytest.raises(InvalidInputError, match="too few"):
        split_indices(2, 0.5, 0.4, what="sentences")
    with pytest.raises(InvalidInputError, match="20 pairs leave none for training"):
        split_indices(20, 10, 10, what="pairs")


@pytest.mark.parametrize(
    "size, error, match",
    [
        (-1, ValueError, "val must be a count >= 0"),
        (1.0, ValueError, r"val must be a fraction in \[0, 1\)"),
        (True, TypeError, "val must be a count"),
        ("0.1", TypeError, "val must be a count"),
    ],
)
def test_bad_sizes_name_the_argument(size, error, match):
    with pytest.raises(error, match=match):
        split_indices(10, size, 0, seed=0)


def test_split_size_rounds_halves_to_even():
    assert [split_size(n, 0.5) for n in (1, 3, 5)] == [0, 2, 2]
    assert split_size(7, 0) == 0 and split_size(7, 0.0) == 0
