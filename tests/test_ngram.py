"""The language model's n-gram baselines against a direct count, and in the run's report."""

from __future__ import annotations

import collections
import math

import pytest
import torch

from rnnkit.tasks.ngram import DISCOUNT, ngram_bpc


def direct_bpc(train: list[int], val: list[int], V: int) -> dict:
    """The same models written out with dictionaries, one character at a time."""
    uni = collections.Counter(c for c in train if c > 0)
    total = sum(uni.values())
    p_uni = {c: (uni[c] + 1) / (total + V - 1) for c in range(1, V)}
    pairs = collections.Counter(
        (p, c) for p, c in zip(train, train[1:], strict=False) if p > 0 and c > 0
    )
    after = collections.defaultdict(set)
    for p, c in pairs:
        after[p].add(c)
    n_ctx = collections.Counter()
    for (p, _), n in pairs.items():
        n_ctx[p] += n
    bits = {"unigram": 0.0, "bigram": 0.0}
    scored = 0
    for p, c in zip(val, val[1:], strict=False):
        if c == 0:
            continue
        scored += 1
        bits["unigram"] -= math.log2(p_uni[c])
        if n_ctx[p]:
            prob = max(pairs[(p, c)] - DISCOUNT, 0) / n_ctx[p]
            prob += DISCOUNT * len(after[p]) / n_ctx[p] * p_uni[c]
        else:
            prob = p_uni[c]
        bits["bigram"] -= math.log2(prob)
    return {k: v / scored for k, v in bits.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ngram_bpc_matches_a_direct_count(seed):
    g = torch.Generator().manual_seed(seed)
    V = 7
    train = torch.randint(0, V, (300,), generator=g)
    val = torch.randint(0, V, (80,), generator=g)
    val[5] = V - 1  # a character and a context, maybe unseen after some contexts
    got = ngram_bpc(train, val, V)
    want = direct_bpc(train.tolist(), val.tolist(), V)
    assert got == pytest.approx(want, rel=1e-12)


def test_a_uniform_text_costs_log2_of_the_alphabet_and_a_cycle_is_learnt():
    V = 5  # <unk> + 4 characters
    cycle = torch.tensor([1, 2, 3, 4] * 200)
    scores = ngram_bpc(cycle, torch.tensor([1, 2, 3, 4] * 10), V)
    assert scores["unigram"] == pytest.approx(2.0, abs=1e-2)
    assert scores["bigram"] < 0.01  # each character fixes the next


def test_ngram_bpc_refuses_what_it_cannot_score():
    with pytest.raises(ValueError, match="at least 2 validation ids"):
        ngram_bpc(torch.tensor([1, 2]), torch.tensor([1]), 3)
    with pytest.raises(ValueError, match="every validation target is <unk>"):
        ngram_bpc(torch.tensor([1, 2]), torch.tensor([1, 0, 0]), 3)


def test_the_language_model_report_carries_the_baselines(tmp_path):
    from rnnkit import runs
    from rnnkit.tasks.lm import SPEC, LMConfig, TextData
    from rnnkit.train import TrainConfig

    text = tmp_path / "t.txt"
    text.write_text("abcabcabd" * 60, encoding="utf-8")
    done = runs.train_run(
        SPEC,
        tmp_path / "run",
        data=TextData(text=str(text), batch_size=4, bptt=10),
        model=LMConfig(embedding_size=4, hidden_size=8, num_layers=1),
        train=TrainConfig(steps=3, eval_every=3),
    )
    prepared = SPEC.prepare(TextData(text=str(text), batch_size=4, bptt=10), 0)
    want = ngram_bpc(prepared.train.ids, prepared.vocab.encode(prepared.val_text), 5)
    assert done.report["baselines"] == pytest.approx(want)
    line = SPEC.format_report(done.report)
    assert "unigram" in line and "bigram" in line
    assert "LOSES to the unigram and bigram baselines" in line  # 3 steps learn nothing yet
