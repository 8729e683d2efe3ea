"""Batch sources: one seeded epoch order, length bucketing, padding, and the classification source.

Every batch source of the training loop (:class:`rnnkit.train.Trainer`) has the same shape: ``len``
is the number of batches per epoch and ``epoch(e, start)`` yields the batches of epoch ``e`` from
batch ``start`` on. The order of epoch ``e`` depends only on ``(seed, e)``, never on a global RNG,
so a resumed run sees exactly the batches it would have seen. :class:`IndexBatches` is that
shape over ``n`` indexed examples; a source says how to make one batch from its indices.

The order (:meth:`IndexBatches.batch_indices`):

1. with ``shuffle``, the indices ``0 .. n-1`` are permuted by a :class:`Shuffler` seeded for the
   epoch; otherwise they keep their order;
2. with ``lengths`` (length bucketing), the order is cut into pools of ``pool_batches`` batches,
   each pool is sorted by length (stable) and cut into batches, so similar lengths share a batch
   and little compute goes to padding; with ``shuffle`` the batches are then permuted by the
   same shuffler;
3. without ``lengths``, the order is cut into consecutive batches of ``batch_size``.

Each source keeps the generator it was written with, so its batches for a given seed and epoch
are those it has always produced: ``"python"`` (:class:`random.Random`, seeded with
:func:`epoch_seed`) for tagging and seq2seq, ``"torch"`` (:class:`torch.Generator`, seeded with
:func:`epoch_seed`) for forecasting windows, ``"numpy"`` (``np.random.default_rng([seed,
epoch])``) for classification.

Example::

    >>> source = ClassificationBatches([[1, 2], [3], [4, 5, 6]], [0, 1, 0], batch_size=2)
    >>> len(source), [idx.tolist() for idx in source.batch_indices(0)]
    (2, [[0, 1], [2]])
    >>> inputs, lengths, targets = next(source.epoch(0))
    >>> inputs.tolist(), lengths.tolist(), targets.tolist()
    ([[1, 2], [3, 0]], [2, 1], [0, 1])
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

GENERATORS = ("python", "numpy", "torch")
# Spreads (seed, epoch) over one integer: seeds 0 and 1 never share an epoch's generator.
EPOCH_SEED_STRIDE = 1_000_003


def epoch_seed(seed: int, epoch: int) -> int:
    """The one integer that seeds epoch ``epoch`` of a source seeded with ``seed``.

    >>> epoch_seed(0, 3), epoch_seed(2, 1)
    (3, 2000007)
    """
    # Reduced modulo 2**64, the range torch.Generator.manual_seed accepts: unchanged for every
    # seed below ~1.8e13, and a larger --seed no longer overflows the generator at epoch 0.
    return (seed * EPOCH_SEED_STRIDE + epoch) % 2**64


class Shuffler:
    """Seeded permutations, drawn one after another from one generator.

    Args:
        seed: an ``int`` (``"python"``, ``"torch"``) or a sequence of ints (``"numpy"``).
        generator: ``"python"`` (:class:`random.Random`), ``"numpy"``
            (:func:`numpy.random.default_rng`) or ``"torch"`` (:class:`torch.Generator`).

    >>> Shuffler(0).permutation(5)
    [2, 1, 0, 4, 3]
    >>> Shuffler.for_epoch(0, 1, "numpy").permutation(3) == Shuffler([0, 1], "numpy").permutation(3)
    True
    """

    def __init__(self, seed: int | Sequence[int], generator: str = "python") -> None:
        if generator not in GENERATORS:
            raise ValueError(f"generator must be one of {', '.join(GENERATORS)}; got {generator!r}")
        self.generator = generator
        if generator == "python":
            self._rng = random.Random(seed)
        elif generator == "numpy":
            self._rng = np.random.default_rng(seed)
        else:
            self._rng = torch.Generator().manual_seed(seed)

    @classmethod
    def for_epoch(cls, seed: int, epoch: int, generator: str = "python") -> Shuffler:
        """The shuffler of epoch ``epoch``: numpy is seeded with the pair ``[seed, epoch]``,
        python and torch with :func:`epoch_seed`."""
        return cls([seed, epoch] if generator == "numpy" else epoch_seed(seed, epoch), generator)

    def permutation(self, n: int) -> list[int]:
        """A permutation of ``range(n)``; each call draws the next one."""
        if self.generator == "python":
            order = list(range(n))
            self._rng.shuffle(order)
            return order
        if self.generator == "numpy":
            return self._rng.permutation(n).tolist()
        return torch.randperm(n, generator=self._rng).tolist()


def length_buckets(
    order: Sequence[int], lengths: Sequence[int], batch_size: int, pool_batches: int
) -> list[list[int]]:
    """Cut ``order`` into pools of ``pool_batches * batch_size`` indices, sort each pool by
    ``lengths`` (stable: equal lengths keep their order) and cut it into batches.

    >>> length_buckets([0, 1, 2, 3, 4], [5, 1, 3, 1, 2], batch_size=2, pool_batches=2)
    [[1, 3], [2, 0], [4]]
    """
    pool = batch_size * pool_batches
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches.extend(chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size))
    return batches


class IndexBatches:
    """A batch source over ``size`` indexed examples (see the module docstring for the order).

    Subclasses set ``generator`` and implement :meth:`make_batch`.

    Args:
        size: number of examples n.
        batch_size: examples per batch (the last batch of an epoch may be smaller).
        shuffle: draw a new order every epoch (training); else keep the examples' order.
        seed: seed of the epoch orders.
        lengths: (n,) example lengths: bucket batches by length (see :func:`length_buckets`).
        pool_batches: batches per bucketing pool.
    """

    generator = "python"

    def __init__(
        self,
        size: int,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        lengths: Sequence[int] | None = None,
        pool_batches: int = 50,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if pool_batches < 1:
            raise ValueError(f"pool_batches must be >= 1, got {pool_batches}")
        if lengths is not None and len(lengths) != size:
            raise ValueError(f"{len(lengths)} lengths for {size} examples")
        self.size, self.batch_size, self.shuffle, self.seed = size, batch_size, shuffle, seed
        self.bucket_lengths = lengths
        self.pool_batches = pool_batches

    def __len__(self) -> int:
        return -(-self.size // self.batch_size)

    def batch_indices(self, epoch: int) -> list[list[int]]:
        """The example indices of every batch of ``epoch``, in order."""
        shuffler = Shuffler.for_epoch(self.seed, epoch, self.generator) if self.shuffle else None
        order = shuffler.permutation(self.size) if shuffler else list(range(self.size))
        if self.bucket_lengths is None:
            size = self.batch_size
            return [order[b : b + size] for b in range(0, self.size, size)]
        batches = length_buckets(order, self.bucket_lengths, self.batch_size, self.pool_batches)
        if shuffler:
            batches = [batches[i] for i in shuffler.permutation(len(batches))]
        return batches

    def make_batch(self, indices: list[int]):
        """The batch of the examples at ``indices``."""
        raise NotImplementedError

    def epoch(self, epoch: int, start: int = 0) -> Iterator:
        """Batches of ``epoch`` from batch ``start`` on."""
        for indices in self.batch_indices(epoch)[start:]:
            yield self.make_batch(indices)

    def __iter__(self) -> Iterator:
        return self.epoch(0)


def pad_batch(sequences: Sequence, dtype=None) -> tuple[Tensor, Tensor]:
    """Pad 1-D id sequences to (B, T) or (T_i, C) series to (B, T, C) with zeros.

    Returns the padded tensor and the (B,) int64 lengths.

    >>> x, lengths = pad_batch([[1, 2, 3], [4]])
    >>> x.tolist(), lengths.tolist()
    ([[1, 2, 3], [4, 0, 0]], [3, 1])
    """
    tensors = [torch.as_tensor(np.asarray(s)) for s in sequences]
    if dtype is not None:
        tensors = [t.to(dtype) for t in tensors]
    lengths = torch.tensor([len(t) for t in tensors], dtype=torch.int64)
    padded = nn.utils.rnn.pad_sequence(tensors, batch_first=True)
    return padded, lengths


class ClassificationBatches(IndexBatches):
    """Batch source for classification: ``(inputs, lengths, targets)`` batches.

    Shapes: ``inputs`` (B, T) ids or (B, T, C) series, zero-padded; ``lengths`` (B,) int64;
    ``targets`` (B,) int64 class ids. With ``shuffle`` batches are bucketed by length (pools of
    ``pool_batches`` batches) and the order is drawn from ``np.random.default_rng([seed, e])``;
    without ``shuffle`` the examples keep their order.
    """

    generator = "numpy"

    def __init__(
        self,
        inputs: Sequence,
        targets: Sequence[int],
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        pool_batches: int = 50,
    ) -> None:
        if len(inputs) != len(targets):
            raise ValueError(f"{len(inputs)} inputs but {len(targets)} targets")
        self.inputs, self.targets = list(inputs), list(targets)
        self.lengths = np.array([len(x) for x in self.inputs], dtype=np.int64)
        super().__init__(
            len(self.inputs),
            batch_size,
            shuffle=shuffle,
            seed=seed,
            lengths=self.lengths.tolist() if shuffle else None,
            pool_batches=pool_batches,
        )
        first = np.asarray(self.inputs[0]) if self.inputs else np.zeros(0, dtype=np.int64)
        self.dtype = torch.float32 if first.dtype.kind == "f" else torch.int64

    def batch_indices(self, epoch: int) -> list[np.ndarray]:
        """The example indices of every batch of ``epoch``, in order (int64 arrays)."""
        return [np.asarray(b, dtype=np.int64) for b in super().batch_indices(epoch)]

    def make_batch(self, indices) -> tuple[Tensor, Tensor, Tensor]:
        inputs, lengths = pad_batch([self.inputs[i] for i in indices], dtype=self.dtype)
        targets = torch.tensor([self.targets[i] for i in indices], dtype=torch.int64)
        return inputs, lengths, targets


class MemberBatch(tuple):
    """The batches of one training step of an ensemble, one per member (a tuple of them)."""


class MemberBatches:
    """One batch per ensemble member per step: ``sources`` (one per member, each with its own
    seed) read side by side, so every member sees its own epoch orders, as if it trained alone.

    ``len`` is the sources' common number of batches per epoch; ``epoch(e, start)`` yields a
    :class:`MemberBatch` per step.

    >>> sources = [ClassificationBatches([[1], [2], [3]], [0, 1, 0], 2, shuffle=True, seed=s)
    ...            for s in (0, 1)]
    >>> step = next(MemberBatches(sources).epoch(0))
    >>> type(step).__name__, len(step)
    ('MemberBatch', 2)
    """

    def __init__(self, sources: Sequence) -> None:
        counts = {len(s) for s in sources}
        if not sources or len(counts) != 1:
            raise ValueError(f"the member sources must have one batch count, got {counts}")
        self.sources = list(sources)

    def __len__(self) -> int:
        return len(self.sources[0])

    def epoch(self, epoch: int, start: int = 0) -> Iterator[MemberBatch]:
        streams = [s.epoch(epoch, start) for s in self.sources]
        for batches in zip(*streams):
            yield MemberBatch(batches)

    def __iter__(self) -> Iterator[MemberBatch]:
        return self.epoch(0)
