"""Vocabularies: one token <-> id map with configurable specials, and its character form.

:class:`TokenVocab` is the one vocabulary class: ids ``0 .. k-1`` are the ``specials`` (by
default ``<pad>``, ``<unk>``), the regular tokens follow. When ``<unk>`` is among the specials,
tokens never seen map to it; a vocabulary without ``<unk>`` (class labels, tags) refuses them.
Every task builds its vocabularies from it: classification (words or characters, ``<pad>``,
``<unk>``), tagging (words and characters with ``<pad>``, ``<unk>``; tags without specials),
seq2seq (:class:`rnnkit.data.pairs.PairCharVocab`, characters after ``<pad>``, ``<unk>``,
``<S>``, ``<E>``) and the language model (:class:`CharVocab`, characters after ``<unk>``).

Saved as JSON (``vocab.json`` or inside a task's encoders)::

    {"type": "tokens", "specials": ["<pad>", "<unk>"], "unknown": "<unk>",
     "tokens": ["<pad>", "<unk>", "the", ...]}

``type`` is ``"char"`` for the character vocabularies. :meth:`TokenVocab.from_json` also reads
the formats written before there was one class: ``{"tokens": [...]}`` (classification),
``{"specials": true, "items": [...]}`` (tagging), a bare list (seq2seq) and
``{"type": "char", "unknown": "<unk>", "tokens": [...]}`` (language model).

Example::

    >>> v = CharVocab.from_text("abca")
    >>> v.encode("abz").tolist()        # z was never seen
    [1, 2, 0]
    >>> v.decode([3, 1])
    'ca'
    >>> len(v)
    4
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from rnnkit.errors import InvalidInputError
from rnnkit.io import atomic_write_json, read_json

PAD = "<pad>"
UNKNOWN = "<unk>"
START = "<S>"
END = "<E>"
# The markers that open the token lists of the formats that did not name their specials.
LEGACY_SPECIALS = (PAD, UNKNOWN, START, END)
ORDERS = ("frequency", "sorted")


class TokenVocab:
    """Tokens <-> ids: the ``specials`` first (ids ``0 .. k-1``), then the regular tokens.

    Args:
        tokens: the regular tokens, without duplicates and without the specials.
        specials: the special tokens, in id order. When ``<unk>`` is one of them, unknown
            tokens encode to it; otherwise :meth:`encode` raises on an unknown token.

    Attributes:
        tokens: every token, specials first (``tokens[i]`` is the token of id ``i``).
        index: token -> id, specials included.
        specials: the special tokens.

    >>> v = TokenVocab.build([["a", "b", "a"], ["a", "c"]], min_freq=2)
    >>> v.tokens, v.encode(["a", "z"]), v.pad_id, v.unk_id
    (['<pad>', '<unk>', 'a'], [2, 1], 0, 1)
    >>> tags = TokenVocab(["NOUN", "VERB"], specials=())
    >>> tags.encode(["VERB"]), tags.decode([0]), tags.unk_id is None
    ([1], ['NOUN'], True)
    """

    SPECIALS: tuple[str, ...] = (PAD, UNKNOWN)
    KIND = "tokens"  # the "type" of the JSON form

    def __init__(self, tokens: Iterable[str], specials: Sequence[str] | None = None) -> None:
        specials = self.SPECIALS if specials is None else tuple(specials)
        self.specials: tuple[str, ...] = specials
        self.tokens: list[str] = [*specials, *tokens]
        self.index: dict[str, int] = {t: i for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            repeated = [t for t, n in Counter(self.tokens).items() if n > 1]
            raise ValueError(
                f"vocabulary tokens must be unique (specials included); repeated: {repeated[:10]}"
            )

    @classmethod
    def build(
        cls,
        sequences: Iterable[Iterable[str]],
        *,
        specials: Sequence[str] | None = None,
        min_freq: int = 1,
        max_size: int | None = None,
        order: str = "frequency",
    ) -> TokenVocab:
        """The tokens of ``sequences`` seen at least ``min_freq`` times.

        Args:
            sequences: token sequences (a string is a sequence of characters).
            specials: the special tokens (default: the class's ``SPECIALS``); occurrences of
                them in ``sequences`` are not counted.
            min_freq: fewer occurrences than this and a token is left out (maps to ``<unk>``).
            max_size: keep at most this many regular tokens, the most frequent (ties
                alphabetical); None: no limit.
            order: ``"frequency"`` (most frequent first, ties alphabetical) or ``"sorted"``
                (by code point).

        >>> TokenVocab.build(["abcb"], specials=(), order="sorted").tokens
        ['a', 'b', 'c']
        >>> TokenVocab.build(["abcb"], specials=(), max_size=2).tokens
        ['b', 'a']
        """
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1; got {min_freq}")
        if max_size is not None and max_size < 0:
            raise ValueError(f"max_size must be >= 0 or None; got {max_size}")
        if order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}; got {order!r}")
        specials = cls.SPECIALS if specials is None else tuple(specials)
        counts = Counter(t for seq in sequences for t in seq)
        for special in specials:
            counts.pop(special, None)
        kept = sorted(
            (t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t)
        )
        if max_size is not None:
            kept = kept[:max_size]
        if order == "sorted":
            kept.sort()
        return cls(kept, specials=specials)

    # -- ids ----------------------------------------------------------------------------------
    def _special_id(self, token: str) -> int | None:
        return self.index[token] if token in self.specials else None

    @property
    def pad_id(self) -> int | None:
        """Id of ``<pad>``; None when it is not a special."""
        return self._special_id(PAD)

    @property
    def unk_id(self) -> int | None:
        """Id of ``<unk>``, which unknown tokens encode to; None when it is not a special."""
        return self._special_id(UNKNOWN)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.index

    def __eq__(self, other) -> bool:
        return (
            type(other) is type(self)
            and self.specials == other.specials
            and self.tokens == other.tokens
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} tokens, specials {list(self.specials)})"

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Ids of ``tokens``; unknown tokens become ``unk_id``.

        Raises:
            InvalidInputError: an unknown token and no ``<unk>`` special to map it to.
        """
        unk = self.unk_id
        if unk is not None:
            return [self.index.get(t, unk) for t in tokens]
        try:
            return [self.index[t] for t in tokens]
        except KeyError as exc:
            raise InvalidInputError(
                f"unknown item {exc.args[0]!r}; known are {', '.join(map(repr, self.tokens[:10]))}"
                + (" ..." if len(self) > 10 else "")
            ) from None

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens of ``ids`` (specials included)."""
        return [self.tokens[int(i)] for i in ids]

    def unknown_tokens(self, tokens: Iterable[str]) -> list[str]:
        """Distinct tokens of ``tokens`` not in the vocabulary, in order of appearance."""
        return list(dict.fromkeys(t for t in tokens if t not in self.index))

    # -- files --------------------------------------------------------------------------------
    def to_json(self) -> dict:
        """The JSON form (see the module docstring); :meth:`from_json` reads it back."""
        return {
            "type": self.KIND,
            "specials": list(self.specials),
            "unknown": UNKNOWN if UNKNOWN in self.specials else None,
            "tokens": list(self.tokens),
        }

    @classmethod
    def from_json(cls, data, where: str = "vocab.json") -> TokenVocab:
        """A vocabulary from its JSON form or from any of the earlier formats (module docstring).

        Raises:
            InvalidInputError: ``data`` is none of them (the message names ``where``), or its
                specials are not those this class requires.

        >>> TokenVocab.from_json({"specials": False, "items": ["X", "Y"]}).tokens
        ['X', 'Y']
        >>> TokenVocab.from_json({"tokens": ["<pad>", "<unk>", "a"]}).specials
        ('<pad>', '<unk>')
        """
        tokens, specials = _parse_json(data, where)
        try:
            return cls(tokens[len(specials) :], specials=specials)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"{where}: {exc}") from None

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> TokenVocab:
        return cls.from_json(read_json(path), str(Path(path)))


def _parse_json(data, where: str) -> tuple[list[str], tuple[str, ...]]:
    """``(every token, specials)`` of a vocabulary's JSON in the current or an earlier format."""
    not_vocab = InvalidInputError(f"{where} is not a vocabulary written by rnnkit")
    if isinstance(data, list):  # seq2seq before one class: the bare token list
        tokens = data
        specials = None
    elif not isinstance(data, dict):
        raise not_vocab
    elif "items" in data:  # tagging before one class: {"specials": bool, "items": [...]}
        if not isinstance(data["items"], list) or not isinstance(data.get("specials"), bool):
            raise not_vocab
        specials = (PAD, UNKNOWN) if data["specials"] else ()
        tokens = [*specials, *data["items"]]
    else:
        tokens = data.get("tokens")
        specials = data.get("specials")
        if specials is not None:
            if not isinstance(specials, list) or not all(isinstance(s, str) for s in specials):
                raise not_vocab
            specials = tuple(specials)
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise not_vocab
    if specials is None:
        # Classification, seq2seq and the language model wrote every token, specials first.
        count = 0
        while count < len(tokens) and tokens[count] in LEGACY_SPECIALS:
            count += 1
        specials = tuple(tokens[:count])
    if tuple(tokens[: len(specials)]) != specials:
        raise InvalidInputError(
            f"{where}: the tokens must start with the specials {list(specials)}; "
            f"got {tokens[: len(specials)]}"
        )
    return tokens, specials


class CharVocab(TokenVocab):
    """Characters <-> ids for the language model; id 0 is ``<unk>``, characters follow.

    Characters never seen when the vocabulary was built map to id 0. Models never *predict*
    ``<unk>`` when sampling, evaluation excludes ``<unk>`` targets from the loss and reports how
    many there were, and :meth:`check_known` lets callers refuse text with unseen characters
    (``rnnkit sample --prime`` does, naming them). Saved as ``vocab.json``::

        {"type": "char", "specials": ["<unk>"], "unknown": "<unk>", "tokens": ["<unk>", "\\n", ...]}

    Args:
        chars: the known characters (each a single code point), without duplicates.
        specials: must be ``("<unk>",)`` (or None); other specials are refused.

    Shapes: :meth:`encode` returns a 1-D int64 tensor of ``len(text)`` ids.

    >>> v = CharVocab("ab")
    >>> v.tokens, v.unknown_chars("abcb")
    (['<unk>', 'a', 'b'], ['c'])
    """

    SPECIALS = (UNKNOWN,)
    KIND = "char"
    unknown_id = 0

    def __init__(self, chars: Iterable[str], specials: Sequence[str] | None = None) -> None:
        if specials is not None and tuple(specials) != self.SPECIALS:
            raise ValueError(f"a character vocabulary has the specials {list(self.SPECIALS)}")
        chars = list(chars)
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"vocabulary entries must be single characters, got {c!r}")
        if len(set(chars)) != len(chars):
            raise ValueError("vocabulary has duplicate characters")
        super().__init__(chars)

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        """Every distinct character of ``text``, sorted by code point."""
        return cls(sorted(set(text)))

    def encode(self, text: str) -> torch.Tensor:
        """Ids of ``text`` as a 1-D int64 tensor; unseen characters become ``unknown_id``."""
        # A lookup table over code points is ~50x faster than a Python loop on large corpora.
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        if codes.size == 0:
            return torch.zeros(0, dtype=torch.int64)
        known = np.array([ord(c) for c in self.tokens[1:]], dtype=np.int64)
        top = int(max(codes.max(), known.max() if known.size else 0)) + 1
        table = np.zeros(top, dtype=np.int64)
        table[known] = np.arange(1, len(self.tokens), dtype=np.int64)
        return torch.from_numpy(table[codes.astype(np.int64)])

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; ``unknown_id`` decodes to U+FFFD (the replacement character)."""
        return "".join("\ufffd" if i == 0 else self.tokens[i] for i in (int(i) for i in ids))

    def unknown_chars(self, text: str) -> list[str]:
        """Distinct characters of ``text`` not in the vocabulary, in order of appearance."""
        return self.unknown_tokens(text)

    def check_known(self, text: str, what: str = "text") -> None:
        """Raise :class:`InvalidInputError` naming characters of ``text`` unseen in training."""
        unseen = self.unknown_chars(text)
        if unseen:
            shown = ", ".join(repr(c) for c in unseen[:10]) + (" ..." if len(unseen) > 10 else "")
            raise InvalidInputError(
                f"{what} contains {len(unseen)} character(s) the model never saw in training: "
                f"{shown}; use only characters of its vocab.json ({len(self) - 1} characters)"
            )

    @classmethod
    def load(cls, path: str | os.PathLike) -> CharVocab:
        data = read_json(path)
        if not isinstance(data, dict) or data.get("type") != cls.KIND:
            raise InvalidInputError(f"{Path(path)} is not a character vocabulary written by rnnkit")
        return cls.from_json(data, str(Path(path)))
