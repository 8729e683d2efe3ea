"""Source/target pairs for seq2seq: TSV reading, character vocabularies, padded batches.

A pairs file is UTF-8 text, one pair per line, the source and the target separated by exactly
one tab::

    7 de março de 2023<TAB>2023-03-07

Blank lines are skipped; any other line without exactly one tab, or with an empty source or
target, is an error naming the line. Sequences are characters. Each side has its own
:class:`PairCharVocab` whose first four ids are the specials ``<pad>``, ``<unk>``, ``<S>`` (start of
output, fed to the decoder first) and ``<E>`` (end of output, the decoder's last target).

Example::

    >>> pairs = parse_pairs(["3 mars 2020\\t2020-03-03", "May 4, 1999\\t1999-05-04"])
    >>> vocab = PairVocab.build(pairs)
    >>> batch = collate(pairs, vocab)
    >>> batch.source.shape, batch.target_in.shape   # (B, S), (B, T+1)
    (torch.Size([2, 11]), torch.Size([2, 11]))
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from rnnkit.data.batching import IndexBatches
from rnnkit.data.vocab import END, PAD, START, UNKNOWN, TokenVocab
from rnnkit.errors import InvalidInputError
from rnnkit.io import atomic_write_json, read_json

SPECIALS = (PAD, UNKNOWN, START, END)

Pair = tuple[str, str]


# -- reading ---------------------------------------------------------------------------------
def parse_pairs(lines: Iterable[str], source: str = "<lines>") -> list[Pair]:
    """Pairs from TSV lines (line ends stripped); errors name ``source`` and the line number.

    Raises:
        InvalidInputError: a line without exactly one tab, an empty source or target, no pairs.
    """
    pairs = []
    for number, line in enumerate(lines, start=1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        tabs = line.count("\t")
        if tabs != 1:
            raise InvalidInputError(
                f"{source} line {number}: expected exactly one tab between source and target, "
                f"found {tabs}; write each pair as SOURCE<TAB>TARGET"
            )
        src, tgt = line.split("\t")
        for side, text in (("source", src), ("target", tgt)):
            if not text.strip():
                raise InvalidInputError(
                    f"{source} line {number}: empty {side}; every pair needs a non-empty "
                    "source and target"
                )
        pairs.append((src, tgt))
    if not pairs:
        raise InvalidInputError(f"{source} has no pairs; write one SOURCE<TAB>TARGET per line")
    return pairs


def read_pairs(path: str | os.PathLike) -> list[Pair]:
    """All pairs of a UTF-8 TSV file (see the module docstring for the format)."""
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"pairs file {path} does not exist")
    if not path.is_file():
        raise InvalidInputError(f"pairs file {path} is not a file")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is not text
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise InvalidInputError(
            f"{path} line {line}: not UTF-8 text; save the file as UTF-8"
        ) from None
    return parse_pairs(text.split("\n"), source=str(path))


class PairCharVocab(TokenVocab):
    """The characters of one side of a pair <-> ids; ids 0-3 are ``<pad>``, ``<unk>``, ``<S>``,
    ``<E>``, then the characters in code-point order.

    ``<S>`` is fed to the decoder first, ``<E>`` is its last target; :meth:`decode` stops there.

    Args:
        chars: the known characters, without duplicates.
        specials: must be ``("<pad>", "<unk>", "<S>", "<E>")`` (or None); others are refused.

    >>> v = PairCharVocab.build(["ba", "c"])
    >>> v.tokens[4:], v.encode("abz"), v.decode([4, 5, 3, 6])
    (['a', 'b', 'c'], [4, 5, 1], 'ab')
    """

    SPECIALS = SPECIALS
    KIND = "char"
    pad_id, unk_id, start_id, end_id = 0, 1, 2, 3

    def __init__(self, chars: Iterable[str], specials: Sequence[str] | None = None) -> None:
        if specials is not None and tuple(specials) != self.SPECIALS:
            raise ValueError(f"a vocabulary of pairs has the specials {list(self.SPECIALS)}")
        super().__init__(chars)

    @classmethod
    def build(cls, texts: Iterable[str]) -> PairCharVocab:
        """Every character of ``texts``, sorted by code point."""
        return cls(sorted({c for text in texts for c in text}))

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids`` up to the first ``<E>``: no specials but ``<unk>`` (U+FFFD)."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.end_id:
                break
            if i == self.unk_id:
                out.append("\ufffd")
            elif i >= len(SPECIALS):
                out.append(self.tokens[i])
        return "".join(out)


class PairVocab:
    """The source and target vocabularies of a seq2seq model, saved together as ``vocab.json``."""

    def __init__(self, source: PairCharVocab, target: PairCharVocab) -> None:
        self.source = source
        self.target = target

    @classmethod
    def build(cls, pairs: Sequence[Pair]) -> PairVocab:
        return cls(
            PairCharVocab.build(s for s, _ in pairs), PairCharVocab.build(t for _, t in pairs)
        )

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, PairVocab)
            and self.source == other.source
            and self.target == other.target
        )

    def check_source(self, text: str, what: str = "--text") -> None:
        """Raise :class:`InvalidInputError` if ``text`` is empty or has characters never seen."""
        if not text.strip():
            raise InvalidInputError(f"{what} is empty; give the text to translate")
        unseen = self.source.unknown_tokens(text)
        if unseen:
            shown = ", ".join(repr(c) for c in unseen[:10]) + (" ..." if len(unseen) > 10 else "")
            raise InvalidInputError(
                f"{what} contains {len(unseen)} character(s) the model never saw in training: "
                f"{shown}; use only characters of the run's vocab.json"
            )

    def to_json(self) -> dict:
        return {
            "type": "seq2seq-char",
            "source": self.source.to_json(),
            "target": self.target.to_json(),
        }

    @classmethod
    def from_json(cls, data, where: str = "vocab.json") -> PairVocab:
        """Read :meth:`to_json`'s form, or the earlier one with a bare token list per side.

        >>> old = {"type": "seq2seq-char", "source": ["<pad>", "<unk>", "<S>", "<E>", "a"],
        ...        "target": ["<pad>", "<unk>", "<S>", "<E>", "1"]}
        >>> PairVocab.from_json(old).target.encode("12")
        [4, 1]
        """
        if not isinstance(data, dict) or data.get("type") != "seq2seq-char":
            raise InvalidInputError(f"{where} is not a seq2seq vocabulary written by rnnkit")
        try:
            sides = [data["source"], data["target"]]
        except KeyError as exc:
            raise InvalidInputError(f"{where} is malformed ({exc}); train again") from None
        return cls(*(PairCharVocab.from_json(side, where) for side in sides))

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> PairVocab:
        return cls.from_json(read_json(path), str(path))


# -- batches ---------------------------------------------------------------------------------
@dataclass
class PairBatch:
    """A padded batch, batch-first; S source length, T+1 target length with ``<S>``/``<E>``.

    - ``source`` (B, S) ids, ``<pad>`` past ``source_lengths`` (B,);
    - ``target_in`` (B, T+1): ``<S> y_1 … y_T`` (decoder inputs under teacher forcing);
    - ``target_out`` (B, T+1): ``y_1 … y_T <E>`` (what the decoder must predict), ``<pad>``
      past ``target_lengths`` (B,), which count the ``<E>``;
    - ``pairs``: the original strings.
    """

    source: Tensor
    source_lengths: Tensor
    target_in: Tensor
    target_out: Tensor
    target_lengths: Tensor
    pairs: list[Pair]

    def __len__(self) -> int:
        return self.source.shape[0]

    def to(self, device) -> PairBatch:
        return PairBatch(
            self.source.to(device),
            self.source_lengths,
            self.target_in.to(device),
            self.target_out.to(device),
            self.target_lengths,
            self.pairs,
        )


def _pad(rows: list[list[int]], value: int) -> Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.int64)
    return out


def collate(pairs: Sequence[Pair], vocab: PairVocab) -> PairBatch:
    """Encode and pad ``pairs`` into a :class:`PairBatch`."""
    if not pairs:
        raise ValueError("cannot collate an empty list of pairs")
    src = [vocab.source.encode(s) for s, _ in pairs]
    tgt = [vocab.target.encode(t) for _, t in pairs]
    start, end, pad = vocab.target.start_id, vocab.target.end_id, vocab.target.pad_id
    return PairBatch(
        source=_pad(src, vocab.source.pad_id),
        source_lengths=torch.tensor([len(s) for s in src], dtype=torch.int64),
        target_in=_pad([[start, *t] for t in tgt], pad),
        target_out=_pad([[*t, end] for t in tgt], pad),
        target_lengths=torch.tensor([len(t) + 1 for t in tgt], dtype=torch.int64),
        pairs=list(pairs),
    )


class PairBatches(IndexBatches):
    """A batch source for :class:`rnnkit.train.Trainer`: shuffled :class:`PairBatch` es per epoch.

    Epoch ``e`` shuffles with ``random.Random`` seeded from ``(seed, e)``, so a resumed run sees
    the same order; ``epoch(e, start)`` starts at batch ``start``. Batches of similar source
    length are not grouped: with short sequences the padding costs little and plain shuffling
    keeps the gradient unbiased.
    """

    generator = "python"

    def __init__(
        self,
        pairs: Sequence[Pair],
        vocab: PairVocab,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        self.pairs = list(pairs)
        self.vocab = vocab
        super().__init__(len(self.pairs), batch_size, shuffle=shuffle, seed=seed)

    def make_batch(self, indices: list[int]) -> PairBatch:
        return collate([self.pairs[j] for j in indices], self.vocab)
