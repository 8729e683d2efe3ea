"""Batch sources share one seeded epoch order (rnnkit.data.batching); each keeps the order it
has always produced for a given seed and epoch (exact resume, reproducible figures)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from rnnkit.data.batching import (
    ClassificationBatches,
    IndexBatches,
    Shuffler,
    epoch_seed,
    length_buckets,
)
from rnnkit.data.pairs import PairBatches, PairVocab
from rnnkit.data.series import WindowBatches
from rnnkit.data.tagged import TaggedBatches, TaggingVocab, encode, parse_wordtag
from rnnkit.data.text import StreamBatches


class Numbered(IndexBatches):
    def make_batch(self, indices):
        return indices


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("lengths", [None, [i % 5 for i in range(23)]])
def test_index_batches_cover_every_example_once_and_resume(shuffle, lengths):
    source = Numbered(23, 4, shuffle=shuffle, seed=2, lengths=lengths, pool_batches=2)
    one = list(source.epoch(3))
    assert len(one) == len(source) == 6
    assert sorted(i for batch in one for i in batch) == list(range(23))
    assert list(source.epoch(3, start=4)) == one[4:] and list(source) == list(source.epoch(0))
    if shuffle:
        assert one != list(source.epoch(4))
    if lengths is not None:  # a batch is a run of its pool sorted by length
        assert all([lengths[i] for i in b] == sorted(lengths[i] for i in b) for b in one)
    if lengths is not None and not shuffle:  # pools keep the order, sorted within
        pool = [lengths[i] for b in one[:2] for i in b]
        assert pool == sorted(pool) and sorted(one[0] + one[1]) == list(range(8))


def test_shuffler_generators_and_errors():
    for generator in ("python", "numpy", "torch"):
        a = Shuffler.for_epoch(3, 1, generator)
        b = Shuffler.for_epoch(3, 1, generator)
        assert a.permutation(10) == b.permutation(10) and sorted(a.permutation(7)) == list(range(7))
    with pytest.raises(ValueError, match="generator must be one of python, numpy, torch"):
        Shuffler(0, "jax")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        Numbered(3, 0)


# The orders as each source wrote them before they shared the helper, spelled out.
def legacy_python_bucketed(n, lengths, batch_size, seed, pool=50):
    rng = random.Random(seed)
    order = list(range(n))
    rng.shuffle(order)
    chunks = []
    for s in range(0, n, pool * batch_size):
        block = sorted(order[s : s + pool * batch_size], key=lambda i: lengths[i])
        chunks += [block[i : i + batch_size] for i in range(0, len(block), batch_size)]
    rng.shuffle(chunks)
    return chunks


def legacy_numpy_bucketed(lengths, batch_size, seed, epoch, pool):
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    batches = []
    for p in range(0, len(order), batch_size * pool):
        chunk = order[p : p + batch_size * pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size))
    return [batches[i].tolist() for i in rng.permutation(len(batches))]


@pytest.mark.parametrize("seed, epoch", [(0, 0), (1, 2), (7, 5)])
def test_every_source_keeps_its_order(seed, epoch):
    sentences = parse_wordtag([" ".join(["w/X"] * (1 + (i * 7) % 13)) for i in range(230)])
    vocab = TaggingVocab.build(sentences)
    tagged = TaggedBatches([encode(s, vocab) for s in sentences], 4, shuffle=True, seed=seed)
    lengths = [len(s) for s in sentences]
    expected = legacy_python_bucketed(230, lengths, 4, epoch_seed(seed, epoch))
    assert [b.indices for b in tagged.epoch(epoch)] == expected

    pairs = [(f"s{i}", f"t{i}") for i in range(53)]
    order = list(range(53))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    got = [b.pairs for b in PairBatches(pairs, PairVocab.build(pairs), 4, seed=seed).epoch(epoch)]
    assert got == [[pairs[j] for j in order[i : i + 4]] for i in range(0, 53, 4)]

    series_lengths = np.random.default_rng(0).integers(1, 30, 301)
    inputs = [np.zeros(n, dtype=np.int64) for n in series_lengths]
    source = ClassificationBatches(inputs, [0] * 301, 8, shuffle=True, seed=seed, pool_batches=4)
    got = [b.tolist() for b in source.batch_indices(epoch)]
    assert got == legacy_numpy_bucketed(series_lengths, 8, seed, epoch, 4)

    windows = WindowBatches(np.arange(50.0)[:, None, None], np.arange(50.0)[:, None], 4, seed=seed)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(50, generator=g)
    got = torch.cat([x.flatten() for x, _ in windows.epoch(epoch)])
    assert torch.equal(got, perm.double().float())

    streams = StreamBatches(torch.arange(1000), 4, 10, offset_seed=seed)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    offset = 0 if epoch == 0 else int(torch.randint(10, (1,), generator=g))
    assert streams.offset(epoch) == offset


def test_length_buckets_are_stable_within_a_pool():
    assert length_buckets([3, 2, 1, 0], [1, 1, 1, 1], 2, 1) == [[3, 2], [1, 0]]
    assert length_buckets([], [], 2, 1) == []
