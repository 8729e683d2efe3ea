"""The Tagger model, its padded bidirectional encoder, training through the engine, metrics."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

import rnnkit
from rnnkit.data.tagged import TaggedBatches, TaggedSentence, TaggingVocab, batches, encode
from rnnkit.tasks.tagger import (
    PaddedBiRNN,
    Tagger,
    evaluate_tagger,
    is_span_tagset,
    predict_tags,
    spans,
    tagging_metrics,
)
from rnnkit.train import TrainConfig, Trainer


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread is fastest, and avoids oversubscribing a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_padded_birnn_equals_bidirectional_layer_with_lengths():
    torch.manual_seed(0)
    enc = PaddedBiRNN("lstm", 5, 4, num_layers=2).double()
    ref = rnnkit.LSTM(5, 4, num_layers=2, bidirectional=True, batch_first=True).double()
    with torch.no_grad():
        for layer in range(2):
            for name, p in enc.forward_layers[layer].named_parameters():
                getattr(ref, name.replace("_l0", f"_l{layer}")).copy_(p)
            for name, p in enc.backward_layers[layer].named_parameters():
                getattr(ref, name.replace("_l0", f"_l{layer}") + "_reverse").copy_(p)
    x = torch.randn(3, 6, 5, dtype=torch.float64)
    lengths = torch.tensor([6, 2, 4])
    out, finals = enc(x, lengths)
    ref_out, (h, _) = ref(x, lengths=lengths)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(finals, torch.cat([h[-2], h[-1]], dim=1))


def make_batch(sentences, vocab):
    (batch,) = batches(sentences, vocab, len(sentences))
    order = sorted(range(len(sentences)), key=lambda i: batch.indices[i])
    return batch, order


@pytest.mark.parametrize("crf", [False, True])
def test_padding_does_not_change_a_sentence(crf):
    sents = [TaggedSentence(tuple("abcab"), tuple("XYXYX")), TaggedSentence(("ab", "c"), "XY")]
    vocab = TaggingVocab.build(sents)
    torch.manual_seed(0)
    model = Tagger(len(vocab.words), 2, len(vocab.chars), crf=crf, hidden_size=8).double().eval()
    alone = model(*_inputs(encode(sents[1], vocab)))
    batch = next(iter(batches(sents, vocab, 2)))
    row = batch.indices.index(1)
    together = model(batch.words, batch.lengths, batch.chars)[row, :2]
    torch.testing.assert_close(alone[0], together)


def _inputs(e):
    return e.words[None], torch.tensor([len(e)]), e.chars[None]


def test_losses_are_per_word():
    sents = [TaggedSentence(tuple("abca"), tuple("XYXY")), TaggedSentence(("b",), ("Y",))]
    vocab = TaggingVocab.build(sents)
    for crf in (False, True):
        torch.manual_seed(0)
        model = Tagger(len(vocab.words), 2, len(vocab.chars), crf=crf, dropout=0.0).double()
        batch = next(iter(batches(sents, vocab, 2)))
        loss = model.loss(batch.words, batch.lengths, batch.tags, batch.chars)
        e = model(batch.words, batch.lengths, batch.chars)
        if crf:
            expected = model.crf(e, batch.tags, batch.lengths).sum() / 5
        else:
            mask = batch.tags != -100
            expected = F.cross_entropy(e[mask], batch.tags[mask])
        torch.testing.assert_close(loss, expected)


def test_config_round_trip_and_bad_options():
    model = Tagger(10, 3, 5, crf=True, cell="gru", num_layers=2, char_hidden_size=4)
    again = Tagger.from_config(model.config())
    assert again.config() == model.config()
    assert {k: v.shape for k, v in again.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }
    assert Tagger(10, 3, 5, char_hidden_size=0).char_features is None
    with pytest.raises(ValueError, match="unknown tagger option"):
        Tagger(10, 3, hidden=4)
    with pytest.raises(ValueError, match="dropout must be in"):
        Tagger(10, 3, dropout=1.0)


def suffix_corpus(n, seed, stems):
    """Tag = the word's last letter class: words ending in 'a' are A, in 'o' are O, else N."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = tuple(rng.choice(stems) + rng.choice("aoxy") for _ in range(rng.randint(2, 6)))
        tags = tuple({"a": "A", "o": "O"}.get(w[-1], "N") for w in words)
        out.append(TaggedSentence(words, tags))
    return out


@pytest.mark.parametrize("crf", [False, True])
def test_trains_with_the_engine_and_tags_unknown_words_by_spelling(crf):
    """Words of the test set were never seen; only character features can tag them."""
    letters = "bcdfghklmnprstvz"
    train_stems = [a + b for a in letters[:8] for b in "eiu"]
    test_stems = [a + b for a in letters[8:] for b in "eiu"]
    train = suffix_corpus(150, 0, train_stems)
    test = suffix_corpus(30, 1, test_stems)
    vocab = TaggingVocab.build(train)
    torch.manual_seed(0)
    model = Tagger(
        len(vocab.words),
        len(vocab.tags),
        len(vocab.chars),
        crf=crf,
        embedding_size=8,
        hidden_size=16,
        char_embedding_size=8,
        char_hidden_size=8,
        dropout=0.0,
    )
    source = TaggedBatches([encode(s, vocab) for s in train], 16, shuffle=True)
    config = TrainConfig(lr=0.02, epochs=12, eval_every=1000)
    result = Trainer(model, config, source, source).fit()
    assert result.metrics["val_accuracy"] > 0.98
    metrics = evaluate_tagger(model, vocab, test)
    assert metrics["unknown_tokens"] == metrics["tokens"]
    assert metrics["unknown_accuracy"] > 0.9
    assert predict_tags(model, vocab, [TaggedSentence(("zia", "zio"), ())]) == [["A", "O"]]


def test_metrics_by_hand():
    gold = [["n", "v", "n"], ["r", "v"]]
    pred = [["n", "n", "n"], ["r", "v"]]
    unknown = [[False, True, False], [True, False]]
    m = tagging_metrics(gold, pred, unknown)
    assert m["tokens"] == 5 and m["accuracy"] == pytest.approx(4 / 5)
    assert m["unknown_tokens"] == 2 and m["unknown_accuracy"] == pytest.approx(1 / 2)
    assert m["known_accuracy"] == pytest.approx(3 / 3)
    assert m["per_tag"]["n"] == pytest.approx(
        {"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2}
    )
    assert m["per_tag"]["v"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2}
    )
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 1.0) / 3)
    assert m["span"] is None  # PKU-style tags are not spans
    with pytest.raises(ValueError, match="sentence 0: 3 gold tags but 2 predicted"):
        tagging_metrics([["n", "v", "n"]], [["n", "v"]])


def test_spans_bio_iobes_bmes():
    assert spans(["B-PER", "I-PER", "O", "B-LOC"]) == {(0, 2, "PER"), (3, 4, "LOC")}
    # conlleval: an I- that does not continue a chunk starts one; a type change ends one
    assert spans(["I-ORG", "I-PER", "O", "I-PER"]) == {(0, 1, "ORG"), (1, 2, "PER"), (3, 4, "PER")}
    assert spans(["S-X", "B-X", "E-X", "B-X"]) == {(0, 1, "X"), (1, 3, "X"), (3, 4, "X")}
    assert spans(list("bmesbe")) == {(0, 3, ""), (3, 4, ""), (4, 6, "")}  # word segmentation
    assert is_span_tagset(["O", "B-PER", "I-PER"]) and is_span_tagset(list("bmes"))
    assert not is_span_tagset(["n", "v", "nr"]) and not is_span_tagset(["O", "I-X"])
    m = tagging_metrics([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "O"]])
    assert m["span"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "gold": 2, "predicted": 1}
    )
