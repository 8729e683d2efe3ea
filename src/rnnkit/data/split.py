"""One seeded train / validation / test split of ``n`` examples, shared by every task.

The examples' indices ``0 .. n-1`` are shuffled with ``random.Random(seed)``; the first
``n_test`` of the shuffled order are the test part, the next ``n_val`` the validation part and
the rest the training part. Each part is returned sorted, so it reads in file order. A part's
size is given as a count (an ``int``) or as a fraction of ``n`` (a ``float`` in ``[0, 1)``,
rounded with :func:`round`, i.e. halves to even).

Example::

    >>> parts = split_indices(10, val=0.2, test=1, seed=0)
    >>> {name: len(indices) for name, indices in parts.items()}
    {'test': 1, 'val': 2, 'train': 7}
    >>> sorted(parts["test"] + parts["val"] + parts["train"]) == list(range(10))
    True
"""

from __future__ import annotations

import numbers
import random

from rnnkit.errors import InvalidInputError


def split_size(n: int, size: int | float, name: str = "size") -> int:
    """How many of ``n`` examples ``size`` asks for: an ``int`` is a count, a ``float`` in
    ``[0, 1)`` a fraction of ``n`` (rounded halves to even).

    >>> split_size(25, 0.1), split_size(25, 3)
    (2, 3)
    """
    if isinstance(size, bool) or not isinstance(size, numbers.Real):
        raise TypeError(f"{name} must be a count (int) or a fraction (float); got {size!r}")
    if isinstance(size, numbers.Integral):
        if size < 0:
            raise ValueError(f"{name} must be a count >= 0 or a fraction in [0, 1); got {size}")
        return int(size)
    if not 0.0 <= size < 1.0:
        raise ValueError(f"{name} must be a fraction in [0, 1) or a count >= 0; got {size}")
    return round(n * size)


def split_indices(
    n: int,
    val: int | float = 0.1,
    test: int | float = 0.1,
    *,
    seed: int = 0,
    what: str = "examples",
) -> dict[str, list[int]]:
    """A seeded random partition of ``range(n)`` into ``test``, ``val`` and ``train`` index lists.

    Args:
        n: number of examples.
        val: size of the validation part, a count (``int``) or a fraction of ``n`` (``float``).
        test: size of the test part, likewise.
        seed: seed of the shuffle; the same ``(n, val, test, seed)`` always gives the same parts.
        what: the examples' name in error messages (``"sentences"``, ``"pairs"``, …).

    Returns:
        ``{"test": [...], "val": [...], "train": [...]}``, each list sorted.

    Raises:
        ValueError: a size that is neither a count >= 0 nor a fraction in [0, 1), or fractions
            that sum to 1 or more.
        InvalidInputError: too few examples to leave at least one for training.

    >>> split_indices(5, val=1, test=1, seed=3)
    {'test': [0], 'val': [2], 'train': [1, 3, 4]}
    """
    n_val = split_size(n, val, "val")
    n_test = split_size(n, test, "test")
    fractions = [s for s in (val, test) if not isinstance(s, numbers.Integral)]
    if sum(fractions) >= 1.0:
        raise ValueError(f"the val and test fractions must sum to < 1; got {sum(fractions)}")
    if n - n_val - n_test < 1:
        raise InvalidInputError(
            f"{n} {what} leave none for training after {n_val} validation and {n_test} test "
            f"{what}: too few to split; give more {what} or smaller --val-fraction/--test-fraction"
        )
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return {
        "test": sorted(order[:n_test]),
        "val": sorted(order[n_test : n_test + n_val]),
        "train": sorted(order[n_test + n_val :]),
    }
