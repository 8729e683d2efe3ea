"""Seq2seq: pairs reading, teacher forcing vs step-by-step decoding, greedy vs beam, metrics."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from rnnkit.data.pairs import (
    PairBatches,
    PairCharVocab,
    PairVocab,
    collate,
    parse_pairs,
    read_pairs,
)
from rnnkit.errors import InvalidInputError
from rnnkit.tasks.seq2seq import (
    END,
    START,
    Seq2Seq,
    _decodable,
    sequence_metrics,
    translate,
)

PAIRS = [
    ("7 mars 2020", "2020-03-07"),
    ("May 4, 1999", "1999-05-04"),
    ("2001/12/31", "2001-12-31"),
    ("1. Januar 1950", "1950-01-01"),
    ("sab", "bas"),
]
ATTENTIONS = ["dot", "general", "additive", "none"]


def tiny_model(vocab, dtype=torch.float64, **options) -> Seq2Seq:
    torch.manual_seed(0)
    options = {"hidden_size": 6, "embedding_size": 5, **options}
    model = Seq2Seq.for_vocab(vocab, **options).to(dtype)
    return model.eval()


# -- reading pairs -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "lines, match",
    [
        (["a\tb", "no tab here"], r"line 2: expected exactly one tab .* found 0"),
        (["a\tb", "x\ty", "a\tb\tc"], r"line 3: expected exactly one tab .* found 2"),
        (["\tb"], r"line 1: empty source"),
        (["a\t  "], r"line 1: empty target"),
        (["", "  "], r"has no pairs"),
    ],
)
def test_bad_pairs_name_the_line(lines, match):
    with pytest.raises(InvalidInputError, match=match):
        parse_pairs(lines, source="p.tsv")


def test_pairs_file_skips_blank_lines_and_crlf(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_bytes(b"a b\t1\r\n\r\nc\td\r\n")
    assert read_pairs(path) == [("a b", "1"), ("c", "d")]
    path.write_bytes(b"ok\tfine\n\xff\tx\n")
    with pytest.raises(InvalidInputError, match=r"line 2: not UTF-8"):
        read_pairs(path)
    with pytest.raises(InvalidInputError, match="does not exist"):
        read_pairs(tmp_path / "missing.tsv")


def test_vocab_collate_and_roundtrip(tmp_path):
    vocab = PairVocab.build(PAIRS)
    assert vocab.source.tokens[:4] == ["<pad>", "<unk>", "<S>", "<E>"]
    batch = collate(PAIRS[:2], vocab)
    assert batch.source.shape == (2, 11)
    assert batch.source_lengths.tolist() == [11, 11]
    # target_in = <S> y, target_out = y <E>; both of length T+1.
    assert batch.target_in[0, 0] == START and batch.target_out[0, 10] == END
    assert vocab.target.decode(batch.target_out[1]) == "1999-05-04"
    assert torch.equal(batch.target_in[:, 1:], batch.target_out[:, :-1])
    vocab.save(tmp_path / "vocab.json")
    assert PairVocab.load(tmp_path / "vocab.json") == vocab
    with pytest.raises(InvalidInputError, match="never saw"):
        vocab.check_source("7 mars 2020 ☃")
    source = PairBatches(PAIRS, vocab, 2, seed=3)
    assert len(source) == 3
    first = [b.pairs for b in source.epoch(1)]
    assert [b.pairs for b in source.epoch(1)] == first  # same epoch, same order
    assert [b.pairs for b in source.epoch(1, start=1)] == first[1:]


# -- the model -------------------------------------------------------------------------------------
def step_by_step_loss(model: Seq2Seq, batch) -> torch.Tensor:
    """Cross-entropy accumulated one decoder step at a time, fed the true previous token."""
    memory, mask, keys, state = model.encode(batch.source, batch.source_lengths)
    total, count = 0.0, 0
    for t in range(batch.target_in.shape[1]):
        logits, state, _ = model.decode_step(batch.target_in[:, t], state, memory, mask, keys)
        target = batch.target_out[:, t]
        valid = target != 0
        total = total + F.cross_entropy(logits[valid], target[valid], reduction="sum")
        count += int(valid.sum())
    return total / count


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("decoder_cell", ["lstm", "gru"])
def test_teacher_forced_loss_equals_step_by_step_decoding(attention, decoder_cell):
    vocab = PairVocab.build(PAIRS)
    model = tiny_model(
        vocab, attention=attention, decoder_cell=decoder_cell, encoder_layers=2, decoder_layers=2
    )
    batch = collate(PAIRS, vocab)  # source lengths 3..14: padding and masking exercised
    loss, logits, count = model.loss(batch)
    assert count == int(batch.target_lengths.sum())
    torch.testing.assert_close(loss, step_by_step_loss(model, batch), rtol=1e-12, atol=1e-12)
    # ... and it is the mean negative log-likelihood, computed by hand.
    logp = torch.log_softmax(logits, -1)
    nll = [
        -logp[b, t, batch.target_out[b, t]]
        for b in range(len(PAIRS))
        for t in range(int(batch.target_lengths[b]))
    ]
    torch.testing.assert_close(loss, torch.stack(nll).mean(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("encoder_cell, bidirectional", [("gru", True), ("rnn", False)])
def test_beam_of_one_equals_greedy(attention, encoder_cell, bidirectional):
    vocab = PairVocab.build(PAIRS)
    model = tiny_model(
        vocab,
        attention=attention,
        encoder_cell=encoder_cell,
        bidirectional=bidirectional,
        decoder_cell="gru",
    )
    batch = collate(PAIRS, vocab)
    greedy, greedy_attention = model.greedy(batch.source, batch.source_lengths, max_length=12)
    beam, beam_attention, _ = model.beam_search(
        batch.source, batch.source_lengths, 1, max_length=12
    )
    assert beam == greedy
    if attention == "none":
        assert greedy_attention is None and beam_attention is None
    else:
        for g, b, n in zip(greedy_attention, beam_attention, batch.source_lengths.tolist()):
            assert g.shape[1] == n
            torch.testing.assert_close(g, b)
            torch.testing.assert_close(g.sum(1), torch.ones(g.shape[0], dtype=g.dtype))


def sequence_log_prob(model, batch_one, ids: list[int]) -> float:
    """log p(ids <E> | source), by teacher forcing."""
    target_in = torch.tensor([[START, *ids]])
    logits = model(batch_one.source, batch_one.source_lengths, target_in)
    logp = torch.log_softmax(_decodable(logits), -1)[0]
    return float(sum(logp[t, tok] for t, tok in enumerate([*ids, END])).detach())


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_wide_beam_finds_the_exhaustive_optimum(length_penalty):
    pairs = [("ab", "ba"), ("ba", "ab"), ("aab", "b")]
    vocab = PairVocab.build(pairs)  # targets: 2 characters
    model = tiny_model(vocab, attention="general", length_penalty=length_penalty)
    batch = collate(pairs, vocab)
    max_length = 3
    outputs, _, scores = model.beam_search(
        batch.source, batch.source_lengths, 30, max_length=max_length
    )
    chars = list(range(4, len(vocab.target)))
    for b in range(len(pairs)):
        one = collate(pairs[b : b + 1], vocab)
        best, best_score = None, -math.inf
        for n in range(max_length + 1):
            for ids in itertools.product(chars, repeat=n):
                score = sequence_log_prob(model, one, list(ids)) / (n + 1) ** length_penalty
                if score > best_score:
                    best, best_score = list(ids), score
        assert outputs[b] == best
        assert scores[b] == pytest.approx(best_score, abs=1e-9)


def test_batch_padding_does_not_change_outputs():
    vocab = PairVocab.build(PAIRS)
    model = tiny_model(vocab, attention="additive")
    batch = collate(PAIRS, vocab)
    together = model.beam_search(batch.source, batch.source_lengths, 3, max_length=8)[0]
    for b in range(len(PAIRS)):
        one = collate(PAIRS[b : b + 1], vocab)
        assert model.beam_search(one.source, one.source_lengths, 3, max_length=8)[0] == [
            together[b]
        ]


def test_outputs_respect_max_length_and_specials():
    vocab = PairVocab.build(PAIRS)
    model = tiny_model(vocab)
    with torch.no_grad():  # make <pad>, <unk>, <S> the likeliest tokens: decoding must skip them
        model.output.bias[:3] = 50.0
    batch = collate(PAIRS, vocab)
    for outputs in (
        model.greedy(batch.source, batch.source_lengths, max_length=4)[0],
        model.beam_search(batch.source, batch.source_lengths, 2, max_length=4)[0],
    ):
        assert all(len(o) <= 4 and min(o) >= 4 for o in outputs)


def test_scheduled_sampling_of_one_feeds_own_predictions():
    vocab = PairVocab.build(PAIRS)
    model = tiny_model(vocab, attention="general", scheduled_sampling=1.0)
    batch = collate(PAIRS[:1], vocab)
    greedy = model.greedy(batch.source, batch.source_lengths, max_length=10)[0][0]
    model.train()  # dropout is 0, so only the feeding differs from teacher forcing
    logits = model(batch.source, batch.source_lengths, batch.target_in)
    free_running = _decodable(logits).argmax(-1)[0].tolist()
    n = min(len(greedy), logits.shape[1])
    assert free_running[:n] == greedy[:n]
    model.scheduled_sampling = 0.0
    assert not torch.equal(logits, model(batch.source, batch.source_lengths, batch.target_in))


def test_config_roundtrip_and_bad_options():
    vocab = PairVocab.build(PAIRS)
    model = tiny_model(vocab, attention="additive", encoder_options={"peephole": True})
    again = Seq2Seq.from_config(model.config())
    assert again.config() == model.config()
    assert set(again.state_dict()) == set(model.state_dict())
    with pytest.raises(ValueError, match="attention must be one of"):
        Seq2Seq(10, 10, attention="luong")
    with pytest.raises(ValueError, match="decoder_cell must be one of"):
        Seq2Seq(10, 10, decoder_cell="rnn")
    with pytest.raises(ValueError, match="dot attention needs"):
        Seq2Seq(10, 10, hidden_size=8, decoder_hidden_size=5, attention="dot")


def test_training_steps_reduce_the_loss_and_translate_runs():
    pairs = [(s, s[::-1]) for s in ["abc", "cab", "bca", "aab", "bba", "cca"]]
    vocab = PairVocab.build(pairs)
    model = tiny_model(vocab, dtype=torch.float32, hidden_size=16).train()
    batch = collate(pairs, vocab)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    first = model.step(batch).loss.item()
    for _ in range(60):
        optimizer.zero_grad()
        model.step(batch).loss.backward()
        optimizer.step()
    assert model.step(batch).loss.item() < first / 4
    results = translate(model, vocab, ["abc", "cab"], beam=2)
    assert [r["output"] for r in results] == ["cba", "bac"]
    assert len(results[0]["attention"][0]) == 3


# -- metrics ---------------------------------------------------------------------------------------
def test_metrics_by_hand():
    m = sequence_metrics(["abcd", "xy"], ["abcd", "xyz"])
    assert m["exact_match"] == 0.5
    assert m["char_accuracy"] == 6 / 7  # 4 + 2 matches over max lengths 4 + 3
    # BLEU-4 over characters: 1-grams 6/6, 2-grams 4/4, 3-grams 2/2, 4-grams 1/1 (xy has none);
    # c = 6, r = 7 -> brevity exp(1 - 7/6).
    assert m["bleu"] == pytest.approx(math.exp(1 - 7 / 6))
    partial = sequence_metrics(["abcde"], ["abXde"])
    # 1: 4/5, 2: 2/4, 3: 0/3 -> a zero precision gives BLEU 0 (no smoothing).
    assert partial["bleu"] == 0.0
    assert sequence_metrics(["aaaa"], ["aaaa"])["bleu"] == pytest.approx(1.0)
    assert sequence_metrics(["abab"], ["abab"])["char_accuracy"] == 1.0


def test_token_vocab_decode_stops_at_end():
    v = PairCharVocab.build(["ab"])
    assert v.decode([4, 1, 5, 3, 4]) == "a\ufffdb"


@pytest.mark.parametrize("kind", ["dot", "general", "additive"])
def test_attention_by_hand_and_masking(kind):
    from rnnkit.tasks.attention import make_attention

    torch.manual_seed(1)
    attn = make_attention(kind, 4, 4).double()
    memory = torch.randn(2, 5, 4, dtype=torch.float64)
    query = torch.randn(2, 3, 4, dtype=torch.float64)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    context, weights = attn(query, attn.keys(memory), memory, mask)
    assert torch.all(weights[1, :, 2:] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, dtype=torch.float64))
    for b, n in ((0, 5), (1, 2)):
        for t in range(3):
            q, m = query[b, t], memory[b, :n]
            if kind == "dot":
                scores = m @ q
            elif kind == "general":
                scores = m @ attn.weight.weight.T @ q
            else:
                hidden = torch.tanh(
                    attn.query_proj.weight @ q
                    + m @ attn.memory_proj.weight.T
                    + attn.memory_proj.bias
                )
                scores = hidden @ attn.v.weight[0]
            alpha = torch.softmax(scores, 0)
            torch.testing.assert_close(weights[b, t, :n], alpha)
            torch.testing.assert_close(context[b, t], alpha @ m)
