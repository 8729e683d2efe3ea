"""The one vocabulary class (rnnkit.data.vocab.TokenVocab), its character forms and every JSON
format runs have written."""

from __future__ import annotations

import json

import pytest

from rnnkit.data.pairs import PairCharVocab, PairVocab
from rnnkit.data.tagged import TaggingVocab, parse_wordtag
from rnnkit.data.textclass import TextEncoder
from rnnkit.data.vocab import CharVocab, TokenVocab
from rnnkit.errors import InvalidInputError

# Written by rnnkit before the vocabularies had one class (one file of each kind, verbatim).
OLD_LM_VOCAB = '{"type": "char", "unknown": "<unk>", "tokens": ["<unk>", "\\n", "a", "b"]}'
OLD_CLASSIFY_ENCODERS = (
    '{"input": {"type": "text", "level": "word", "lowercase": true, "max_length": 40, '
    '"tokens": ["<pad>", "<unk>", "a", "film", "good"]}, "classes": ["neg", "pos"]}'
)
OLD_TAG_VOCAB = (
    '{"words": {"specials": true, "items": ["我"]}, "chars": {"specials": true, '
    '"items": ["我", "吃"]}, "tags": {"specials": false, "items": ["r", "v"]}, '
    '"rare_words": ["吃"]}'
)
OLD_SEQ2SEQ_VOCAB = (
    '{"type": "seq2seq-char", "source": ["<pad>", "<unk>", "<S>", "<E>", " ", "3", "a", "i", '
    '"m"], "target": ["<pad>", "<unk>", "<S>", "<E>", "-", "0", "3", "5"]}'
)


def test_specials_first_then_tokens():
    v = TokenVocab(["a", "b"])
    assert v.tokens == ["<pad>", "<unk>", "a", "b"] and (v.pad_id, v.unk_id) == (0, 1)
    assert v.index == {"<pad>": 0, "<unk>": 1, "a": 2, "b": 3}
    assert v.encode(["b", "zz"]) == [3, 1] and v.decode([2, 0]) == ["a", "<pad>"]
    assert "a" in v and "zz" not in v and v.unknown_tokens(["zz", "a", "zz", "y"]) == ["zz", "y"]
    with pytest.raises(ValueError, match=r"must be unique .*repeated: \['<unk>'\]"):
        TokenVocab(["<unk>", "a"])


def test_without_unknown_special_unknown_tokens_are_refused():
    tags = TokenVocab(["X", "Y"], specials=())
    assert tags.pad_id is None and tags.unk_id is None and tags.encode(["Y", "X"]) == [1, 0]
    with pytest.raises(InvalidInputError, match="unknown item 'Q'"):
        tags.encode(["Q"])


def test_build_orders_min_freq_and_max_size():
    texts = ["abcbcc", "d"]
    assert TokenVocab.build(texts).tokens[2:] == ["c", "b", "a", "d"]
    assert TokenVocab.build(texts, order="sorted").tokens[2:] == ["a", "b", "c", "d"]
    assert TokenVocab.build(texts, min_freq=2).tokens[2:] == ["c", "b"]
    # max_size keeps the most frequent, listed in the chosen order
    assert TokenVocab.build(texts, max_size=2, order="sorted").tokens[2:] == ["b", "c"]
    assert TokenVocab.build([["<pad>", "x"]]).tokens == ["<pad>", "<unk>", "x"]
    with pytest.raises(ValueError, match="min_freq must be >= 1"):
        TokenVocab.build(texts, min_freq=0)
    with pytest.raises(ValueError, match="order must be one of frequency, sorted"):
        TokenVocab.build(texts, order="random")


@pytest.mark.parametrize(
    "vocab",
    [
        TokenVocab(["the", "a"]),
        TokenVocab(["X"], specials=()),
        CharVocab("ab\n"),
        PairCharVocab("09-"),
    ],
)
def test_json_roundtrip_keeps_class_specials_and_tokens(vocab, tmp_path):
    again = type(vocab).from_json(json.loads(json.dumps(vocab.to_json())))
    assert again == vocab and again.specials == vocab.specials
    vocab.save(tmp_path / "vocab.json")
    assert type(vocab).load(tmp_path / "vocab.json") == vocab


def test_char_vocab_refuses_other_specials(tmp_path):
    with pytest.raises(InvalidInputError, match="a character vocabulary has the specials"):
        CharVocab.from_json(TokenVocab(["a"]).to_json())
    with pytest.raises(ValueError, match="single characters"):
        CharVocab(["ab"])


def test_old_lm_vocab_json_loads(tmp_path):
    (tmp_path / "vocab.json").write_text(OLD_LM_VOCAB, encoding="utf-8")
    vocab = CharVocab.load(tmp_path / "vocab.json")
    assert vocab == CharVocab.from_text("ab\n")
    assert vocab.encode("ba\n?").tolist() == [3, 2, 1, 0]


def test_old_classify_encoders_json_loads():
    encoders = json.loads(OLD_CLASSIFY_ENCODERS)
    encoder = TextEncoder.from_json(encoders["input"])
    assert encoder.vocab.tokens == ["<pad>", "<unk>", "a", "film", "good"]
    assert (encoder.level, encoder.lowercase, encoder.max_length) == ("word", True, 40)
    assert encoder.encode("A good film, really") == [2, 4, 3, 1, 1]
    new = encoder.to_json()
    assert new["type"] == "text" and TextEncoder.from_json(new).vocab == encoder.vocab


def test_old_tagging_vocab_json_loads(tmp_path):
    (tmp_path / "vocab.json").write_text(OLD_TAG_VOCAB, encoding="utf-8")
    vocab = TaggingVocab.load(tmp_path / "vocab.json")
    assert vocab.words.tokens == ["<pad>", "<unk>", "我"]
    assert vocab.chars.tokens == ["<pad>", "<unk>", "我", "吃"]
    assert vocab.tags.tokens == ["r", "v"] and vocab.tags.specials == ()
    assert vocab.rare_words == {"吃"} and vocab.seen("吃")
    rebuilt = TaggingVocab.build(parse_wordtag(["我/r 吃/v 我/r"]), min_freq=2)
    again = TaggingVocab.from_json(rebuilt.to_json())
    assert (again.words, again.chars, again.tags) == (vocab.words, vocab.chars, vocab.tags)


def test_old_seq2seq_vocab_json_loads(tmp_path):
    (tmp_path / "vocab.json").write_text(OLD_SEQ2SEQ_VOCAB, encoding="utf-8")
    vocab = PairVocab.load(tmp_path / "vocab.json")
    assert vocab == PairVocab.build([("3 mai", "05-03")])
    assert vocab.target.decode(vocab.target.encode("05") + [vocab.target.end_id, 4]) == "05"


@pytest.mark.parametrize(
    "data, match",
    [
        ({"tokens": "abc"}, "not a vocabulary written by rnnkit"),
        (["a", "b", 3], "not a vocabulary written by rnnkit"),
        ({"specials": ["<pad>"], "tokens": ["a", "<pad>"]}, "must start with the specials"),
        ({"specials": True, "items": ["a", "a"]}, "must be unique"),
        (7, "not a vocabulary written by rnnkit"),
    ],
)
def test_malformed_json_is_an_input_error_naming_the_file(data, match):
    with pytest.raises(InvalidInputError, match=f"run/vocab.json.*{match}"):
        TokenVocab.from_json(data, "run/vocab.json")
