"""Character vocabulary with an explicit unknown id.

Id 0 is reserved for ``<unk>``: characters never seen when the vocabulary was built map to it.
Models never *predict* ``<unk>`` when sampling, evaluation excludes ``<unk>`` targets from the
loss and reports how many there were, and :meth:`CharVocab.check_known` lets callers refuse text
with unseen characters (``rnnkit sample --prime`` does, naming them).

Saved as ``vocab.json``::

    {"type": "char", "unknown": "<unk>", "tokens": ["<unk>", "\\n", " ", "!", ...]}

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
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from rnnkit.errors import InvalidInputError
from rnnkit.io import atomic_write_json, read_json

UNKNOWN = "<unk>"


class CharVocab:
    """Characters <-> ids; id 0 is ``<unk>``, characters follow in sorted order.

    Args:
        chars: the known characters (each a single code point), without duplicates.
    """

    unknown_id = 0

    def __init__(self, chars: Sequence[str]) -> None:
        chars = list(chars)
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"vocabulary entries must be single characters, got {c!r}")
        if len(set(chars)) != len(chars):
            raise ValueError("vocabulary has duplicate characters")
        self.tokens: list[str] = [UNKNOWN, *chars]
        self.index: dict[str, int] = {c: i for i, c in enumerate(self.tokens) if i}

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        """Every distinct character of ``text``, sorted by code point."""
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, char: str) -> bool:
        return char in self.index

    def __eq__(self, other) -> bool:
        return isinstance(other, CharVocab) and self.tokens == other.tokens

    def __repr__(self) -> str:
        return f"CharVocab({len(self)} tokens)"

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
        return list(dict.fromkeys(c for c in text if c not in self.index))

    def check_known(self, text: str, what: str = "text") -> None:
        """Raise :class:`InvalidInputError` naming characters of ``text`` unseen in training."""
        unseen = self.unknown_chars(text)
        if unseen:
            shown = ", ".join(repr(c) for c in unseen[:10]) + (" ..." if len(unseen) > 10 else "")
            raise InvalidInputError(
                f"{what} contains {len(unseen)} character(s) the model never saw in training: "
                f"{shown}; use only characters of its vocab.json ({len(self) - 1} characters)"
            )

    # -- files --------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"type": "char", "unknown": UNKNOWN, "tokens": self.tokens}

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> CharVocab:
        data = read_json(path)
        if (
            not isinstance(data, dict)
            or data.get("type") != "char"
            or not isinstance(data.get("tokens"), list)
            or not data["tokens"]
            or data["tokens"][0] != UNKNOWN
        ):
            raise InvalidInputError(f"{Path(path)} is not a character vocabulary written by rnnkit")
        try:
            return cls(data["tokens"][1:])
        except ValueError as exc:
            raise InvalidInputError(f"{Path(path)}: {exc}") from None
