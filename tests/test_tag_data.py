"""Tagged-corpus readers, vocabularies and batches (rnnkit.data.tagged)."""

from __future__ import annotations

import pytest

from rnnkit.data.tagged import (
    IGNORE_INDEX,
    TaggedBatches,
    TaggedSentence,
    TaggingVocab,
    batches,
    encode,
    parse_conllu,
    parse_wordtag,
    people_daily_path,
    read_tagged,
)
from rnnkit.data.vocab import TokenVocab
from rnnkit.errors import InvalidInputError

CONLLU = """\
# sent_id = 1
# text = I can't go.
1\tI\tI\tPRON\tPRP\t_\t3\tnsubj\t_\t_
2-3\tcan't\t_\t_\t_\t_\t_\t_\t_\t_
2\tca\tcan\tAUX\tMD\t_\t4\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_
3.1\tgone\t_\t_\t_\t_\t_\t_\t_\t_
4\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_
5\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_

1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_
"""


def test_wordtag_lines():
    sentences = parse_wordtag(["我/r  吃/v 苹果/n", "", "  ", "１/２/m 张/q"])
    assert sentences == [
        TaggedSentence(("我", "吃", "苹果"), ("r", "v", "n"), 1),
        TaggedSentence(("１/２", "张"), ("m", "q"), 4),  # the tag follows the last slash
    ]


def test_wordtag_pku_brackets_keep_inner_words():
    (s,) = parse_wordtag(["[中央/n 人民/n 广播/vn 电台/n]nt 报道/v"])
    assert s.words == ("中央", "人民", "广播", "电台", "报道")
    assert s.tags == ("n", "n", "vn", "n", "v")


@pytest.mark.parametrize("token", ["吃", "/v", "吃/"])
def test_wordtag_malformed_token_names_line(token):
    with pytest.raises(InvalidInputError, match=rf"corpus.txt:3: malformed token '{token}'"):
        parse_wordtag(["我/r", "", f"我/r {token} 苹果/n"], source="corpus.txt")


def test_read_tagged_file_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="no such file"):
        read_tagged(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="no tagged sentences found"):
        read_tagged(empty)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9/n".encode("latin-1"))
    with pytest.raises(InvalidInputError, match="not UTF-8"):
        read_tagged(latin)
    with pytest.raises(InvalidInputError, match="unknown format 'xml'"):
        read_tagged(empty, format="xml")


def test_conllu_forms_and_columns(tmp_path):
    first, second = parse_conllu(CONLLU.splitlines())
    assert first.words == ("I", "ca", "n't", "go", ".")  # no range token, no empty node
    assert first.tags == ("PRON", "AUX", "PART", "VERB", "PUNCT")
    assert first.line == 3 and second.words == ("Hi",) and second.line == 11
    (xpos, _) = parse_conllu(CONLLU.splitlines(), column="xpos")
    assert xpos.tags == ("PRP", "MD", "RB", "VB", ".")
    (deprel, _) = parse_conllu(CONLLU.splitlines(), column=8)
    assert deprel.tags == ("nsubj", "aux", "advmod", "root", "punct")
    path = tmp_path / "a.conllu"
    path.write_text(CONLLU, encoding="utf-8")
    assert len(read_tagged(path, "conllu")) == 2


def test_conllu_errors_name_line():
    bad = CONLLU.splitlines()
    bad[5] = "4 go go VERB"  # spaces, not tabs
    with pytest.raises(InvalidInputError, match=r"f.conllu:6: expected 10 tab-separated"):
        parse_conllu(bad, source="f.conllu")
    with pytest.raises(InvalidInputError, match=r":3: word 'I' has no FEATS value"):
        parse_conllu(CONLLU.splitlines(), column="feats")
    with pytest.raises(InvalidInputError, match="unknown CoNLL-U column 'pos'"):
        parse_conllu(CONLLU.splitlines(), column="pos")


def test_vocabularies():
    v = TokenVocab.build([["a", "b", "a"], ["c", "a", "b"]], min_freq=2)
    assert v.tokens == ["<pad>", "<unk>", "a", "b"]
    assert v.encode(["b", "c"]) == [3, 1]
    assert TokenVocab.from_json(v.to_json()).tokens == v.tokens
    train = parse_wordtag(["a/X b/Y a/X", "c/Y a/X"])
    vocab = TaggingVocab.build(train, min_freq=2, tag_sentences=train + parse_wordtag(["d/Z"]))
    assert vocab.words.tokens[2:] == ["a"] and vocab.rare_words == {"b", "c"}
    assert vocab.seen("b") and not vocab.seen("d")
    assert vocab.tags.tokens == ["X", "Y", "Z"]
    again = TaggingVocab.from_json(vocab.to_json())
    assert again.rare_words == vocab.rare_words and again.chars.tokens == vocab.chars.tokens
    with pytest.raises(InvalidInputError, match=r"tags unseen in training: 'W' \(2x\)"):
        vocab.check_tags(parse_wordtag(["a/W b/W a/X"]))


def test_encode_and_batches():
    train = parse_wordtag(["ab/X c/Y", "c/Y", "abc/X c/Y ab/X"])
    vocab = TaggingVocab.build(train)
    e = encode(TaggedSentence(("ab", "zz"), ("X", "Q")), vocab)
    assert e.words.tolist() == [vocab.words.index["ab"], 1]
    assert e.chars.tolist() == [vocab.chars.encode("ab"), [1, 1]]
    assert e.tags.tolist() == [vocab.tags.index["X"], IGNORE_INDEX]  # unknown tag is ignored
    seen = []
    for batch in batches(train, vocab, 2):
        B, T = batch.words.shape
        assert batch.lengths.tolist() == [len(train[i]) for i in batch.indices]
        assert batch.chars.shape[:2] == (B, T)
        for b, i in enumerate(batch.indices):
            n = len(train[i])
            assert (batch.words[b, n:] == 0).all() and (batch.tags[b, n:] == IGNORE_INDEX).all()
            assert vocab.tags.decode(batch.tags[b, :n].tolist()) == list(train[i].tags)
        seen += batch.indices
    assert sorted(seen) == [0, 1, 2]


def test_batch_source_is_reproducible_and_resumable():
    sentences = parse_wordtag([" ".join(["w/X"] * (1 + i % 7)) for i in range(50)])
    vocab = TaggingVocab.build(sentences)
    source = TaggedBatches([encode(s, vocab) for s in sentences], 4, shuffle=True, seed=1)
    assert len(source) == 13
    one = [b.indices for b in source.epoch(2)]
    assert one == [b.indices for b in source.epoch(2)]
    assert one != [b.indices for b in source.epoch(3)]
    assert [b.indices for b in source.epoch(2, start=5)] == one[5:]
    assert sorted(i for idx in one for i in idx) == list(range(50))
    # bucketing: within a pool, a batch holds sentences of similar length
    assert max(max(b.lengths) - min(b.lengths) for b in source.epoch(0)) <= 2


def test_peoples_daily_reads_in_place():
    path = people_daily_path()
    with path.open(encoding="utf-8") as f:
        head = [next(f) for _ in range(2)]
    first, second = parse_wordtag(head)
    assert first.words[:3] == ("迈向", "充满", "希望") and first.tags[:3] == ("v", "v", "n")
    assert second.tags[-2:] == ("nr", "nr")
