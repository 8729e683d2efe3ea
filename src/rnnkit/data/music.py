r"""Symbolic music as piano rolls: packaged corpora, files read with music21, quantisation.

A piece becomes a binary piano roll ``R`` of shape ``(T, 128)``: ``R[t, m] = 1`` when MIDI
pitch ``m`` sounds during frame ``t``, a frame being ``resolution`` quarter notes long (0.25: a
sixteenth). A note from offset ``a`` to ``b`` (in quarter notes, ties merged) covers frames
``round(a / resolution) .. round(b / resolution) - 1`` (at least one frame); grace notes (no
duration) are left out. Parts are merged: the roll is the sounding texture, as in
Boulanger-Lewandowski et al. (2012). Two notes of one pitch played back to back become one
long note, the piano roll's usual ambiguity.

Packaged collections (:data:`COLLECTIONS`) are the files of music21's corpus, found without
importing music21; ``--files`` reads a user's own ``.mid``/``.midi``, ``.musicxml``/``.mxl``/
``.xml``, ``.abc`` and ``.krn`` files (an ``.abc`` file with several ``X:`` tunes is one piece
per tune). Parsing is music21's (``converter.parse`` without its pickle cache, so no pickle
is written or read). Parsing is slow (about 40 s for the 409 chorales), so each quantised
piece is kept in a cache folder as a compressed ``.npz`` of plain arrays (read with
``allow_pickle=False``), keyed by the file's SHA-256, the tune number, the resolution, the
cache format and music21's pin: a changed file is parsed again, an unreadable entry is
ignored. The folder is ``$RNNKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/rnnkit`` or
``~/.cache/rnnkit``, under ``music/``; ``RNNKIT_CACHE_DIR=off`` turns it off. Within a
process the pieces are also memoised.

Writing goes the other way (:func:`roll_to_score`): each maximal run of frames of one pitch is a
note, so ``read_roll(write(R)) == R`` on the grid (tested).

Example::

    >>> roll = np.zeros((4, 128), dtype=bool)
    >>> roll[0:2, 60] = roll[2:4, 64] = True
    >>> [(n.pitch.midi, n.offset, n.quarterLength) for n in roll_to_score(roll).flatten().notes]
    [(60, 0.0, 0.5), (64, 0.5, 0.5)]
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from rnnkit.data.packages import package_dir
from rnnkit.errors import InvalidInputError
from rnnkit.io import cache_root

log = logging.getLogger("rnnkit.data.music")

MUSIC21_PIN = "music21==10.5.1"
PITCHES = 128
# File endings music21 reads and rnnkit accepts.
EXTENSIONS = (".mid", ".midi", ".musicxml", ".mxl", ".xml", ".abc", ".krn")
ON_ERROR = ("refuse", "skip")


@dataclass(frozen=True)
class Collection:
    """A packaged collection: a folder of music21's corpus and the file endings it holds."""

    folder: str
    extensions: tuple[str, ...]
    description: str
    exclude: tuple[str, ...] = ()


COLLECTIONS: dict[str, Collection] = {
    "bach-chorales": Collection(
        "bach", (".mxl", ".xml"), "J. S. Bach's chorales, MusicXML", exclude=("bwv846.mxl",)
    ),
    "palestrina": Collection("palestrina", (".krn",), "Palestrina's mass movements, Humdrum"),
    "essen-folksongs": Collection("essenFolksong", (".abc",), "Essen folk song collection, ABC"),
    "oneills-1850": Collection("oneills1850", (".abc",), "O'Neill's 1850 Irish tunes, ABC"),
    "ryans-mammoth": Collection("ryansMammoth", (".abc",), "Ryan's Mammoth Collection, ABC"),
    "nottingham": Collection("nottingham-dataset", (".abc",), "Nottingham folk tunes, ABC"),
}


@contextlib.contextmanager
def _quiet():
    """music21's warnings (Python warnings, and the notes its own logger prints on stderr: a
    MusicXML quirk, "out of midi channels") stay inside the call that caused them; a problem
    that matters is raised as an error."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


@dataclass(frozen=True)
class PieceRef:
    """One piece: a file and, for an ABC file of several tunes, the tune's ``X:`` number.

    ``id`` names it in ``split.json``: the path relative to the collection (or ``--files``)
    root, ``#X`` appended for a tune.
    """

    path: Path
    id: str
    number: int | None = None


def corpus_root() -> Path:
    """music21's corpus folder (music21 installed, not imported)."""
    return package_dir("music21", pin=MUSIC21_PIN) / "corpus"


def check_dataset(name: str) -> Collection:
    if name not in COLLECTIONS:
        raise InvalidInputError(
            f"unknown dataset {name!r}; known: {', '.join(COLLECTIONS)} (or --files DIR)"
        )
    return COLLECTIONS[name]


def _abc_numbers(path: Path) -> list[int | None]:
    """The ``X:`` reference numbers of an ABC file, in order (``[None]`` without any)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    numbers = list(dict.fromkeys(int(m) for m in re.findall(r"(?m)^X:\s*(\d+)", text)))
    return numbers or [None]


def _expand(files: Iterable[Path], root: Path) -> list[PieceRef]:
    refs = []
    for path in files:
        rel = path.relative_to(root).as_posix() if path != root else path.name
        if path.suffix.lower() == ".abc":
            numbers = _abc_numbers(path)
            if len(numbers) > 1:
                refs += [PieceRef(path, f"{rel}#{n}", n) for n in numbers]
                continue
            refs.append(PieceRef(path, rel, numbers[0]))
        else:
            refs.append(PieceRef(path, rel))
    return refs


def list_pieces(
    dataset: str | None = None, files: str | os.PathLike | None = None
) -> list[PieceRef]:
    """The pieces of a packaged ``dataset`` or of ``files`` (a music file or a folder searched
    recursively), in a fixed order (sorted paths, tunes in file order).

    Raises:
        InvalidInputError: unknown dataset (the known ones are listed), music21 missing, a
            missing path, or a folder without music files.
    """
    if (dataset is None) == (files is None):
        raise InvalidInputError("give the music: --dataset NAME or --files DIR, not both")
    if dataset is not None:
        collection = check_dataset(dataset)
        root = corpus_root() / collection.folder
        found = sorted(
            p
            for p in root.iterdir()
            if p.suffix.lower() in collection.extensions and p.name not in collection.exclude
        )
        return _expand(found, root)
    root = Path(files)
    if not root.exists():
        raise InvalidInputError(f"--files {root}: no such file or folder")
    if root.is_file():
        if root.suffix.lower() not in EXTENSIONS:
            raise InvalidInputError(
                f"--files {root}: not a music file; rnnkit reads {', '.join(EXTENSIONS)}"
            )
        return _expand([root], root)
    found = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS)
    if not found:
        raise InvalidInputError(
            f"--files {root} holds no music files ({', '.join(EXTENSIONS)}); point it at a "
            "folder of MIDI, MusicXML, ABC or Humdrum files"
        )
    return _expand(found, root)


@dataclass
class Piece:
    """A quantised piece: its roll ``(T, 128)`` bool, bar length in quarters, key signature
    (sharps > 0, flats < 0, None when the file has none)."""

    ref: PieceRef
    roll: np.ndarray
    bar_quarters: float
    sharps: int | None


class UnreadableMusic(InvalidInputError):
    """music21 could not parse a file."""


_MEMO: dict[tuple, Piece] = {}


def parse_score(path: str | os.PathLike, number: int | None = None):
    """The music21 score of ``path`` (tune ``number`` of an ABC file).

    Raises:
        UnreadableMusic: music21 cannot parse it (its first message line is given).
    """
    from music21 import converter, stream

    try:
        with _quiet():
            score = converter.parse(str(path), number=number, forceSource=True, storePickle=False)
    except Exception as exc:  # music21 raises many kinds; the file is the user's problem
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UnreadableMusic(f"music21 cannot parse {path}: {first}") from None
    if isinstance(score, stream.Opus):
        scores = list(score.scores)
        if not scores:
            raise UnreadableMusic(f"music21 cannot parse {path}: no score in it")
        score = scores[0]
    return score


def score_to_roll(score, resolution: float) -> tuple[np.ndarray, float, int | None]:
    """``(roll (T, 128) bool, bar length in quarters, sharps)`` of a music21 score."""
    from music21 import key, meter

    notes = []
    for element in score.stripTies().flatten().notes:
        start = float(element.offset)
        length = float(element.quarterLength)
        if length <= 0:
            continue  # grace notes have no duration on the grid
        notes.append((start, start + length, [p.midi for p in element.pitches]))
    spans = [(round(a / resolution), round(b / resolution), midis) for a, b, midis in notes]
    spans = [(s, max(e, s + 1), midis) for s, e, midis in spans]  # a short note keeps a frame
    roll = np.zeros((max((e for _, e, _ in spans), default=0), PITCHES), dtype=bool)
    for s, e, midis in spans:
        for m in midis:
            if 0 <= m < PITCHES:
                roll[s:e, m] = True
    signatures = [
        ts.barDuration.quarterLength
        for ts in score.recurse().getElementsByClass(meter.TimeSignature)
    ]
    bar = float(Counter(signatures).most_common(1)[0][0]) if signatures else 4.0
    signature = score.recurse().getElementsByClass(key.KeySignature).first()
    sharps = None if signature is None else int(signature.sharps)
    return roll, bar, sharps


# Bumped whenever score_to_roll's output for a file could change.
CACHE_FORMAT = 1


def cache_dir() -> Path | None:
    """Where quantised pieces are cached (None: ``RNNKIT_CACHE_DIR=off``)."""
    root = cache_root()
    return None if root is None else root / "music"


def _cache_path(ref: PieceRef, resolution: float) -> Path | None:
    folder = cache_dir()
    if folder is None:
        return None
    digest = hashlib.sha256(ref.path.read_bytes())
    digest.update(f"|{ref.number}|{float(resolution)!r}|{CACHE_FORMAT}|{MUSIC21_PIN}".encode())
    return folder / f"{digest.hexdigest()}.npz"


def _load_cached(path: Path | None, ref: PieceRef) -> Piece | None:
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            roll = z["roll"].astype(bool)
            bar, sharps = float(z["bar"]), int(z["sharps"])
            known = bool(z["has_sharps"])
        if roll.ndim != 2 or roll.shape[1] != PITCHES or not bar > 0:
            return None
        return Piece(ref, roll, bar, sharps if known else None)
    except (OSError, ValueError, KeyError, EOFError):
        return None  # a damaged entry: parse again


def _store(path: Path | None, piece: Piece) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            roll=piece.roll,
            bar=np.float64(piece.bar_quarters),
            sharps=np.int64(piece.sharps or 0),
            has_sharps=np.bool_(piece.sharps is not None),
        )
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(buffer.getvalue())
        os.replace(tmp, path)
    except OSError as exc:  # a read-only or full cache folder costs time, not the run
        log.debug("music cache not written: %s", exc)


def read_piece(ref: PieceRef, resolution: float) -> Piece:
    """The quantised :class:`Piece` of ``ref``: from the process memo, the cache folder
    (:func:`cache_dir`), or music21."""
    stat = ref.path.stat()
    memo = (str(ref.path.resolve()), ref.number, stat.st_size, stat.st_mtime_ns, resolution)
    if memo not in _MEMO:
        cached = _cache_path(ref, resolution)
        piece = _load_cached(cached, ref)
        if piece is None:
            roll, bar, sharps = score_to_roll(parse_score(ref.path, ref.number), resolution)
            piece = Piece(ref, roll, bar, sharps)
            _store(cached, piece)
        _MEMO[memo] = piece
    return _MEMO[memo]


def read_pieces(
    refs: Sequence[PieceRef], resolution: float, *, on_error: str = "refuse"
) -> tuple[list[Piece], list[str]]:
    """The pieces of ``refs`` and the ids skipped (``on_error="skip"``) as unreadable.

    Raises:
        InvalidInputError: with ``on_error="refuse"``, the first unreadable file, named.
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}; got {on_error!r}")
    pieces, skipped = [], []
    for ref in refs:
        try:
            pieces.append(read_piece(ref, resolution))
        except UnreadableMusic as exc:
            if on_error == "refuse":
                raise InvalidInputError(
                    f"{exc}; fix or remove it, or pass --on-error skip"
                ) from None
            log.warning("skipped %s", exc)
            skipped.append(ref.id)
    return pieces, skipped


def key_shift(sharps: int | None) -> int:
    """Semitones that move a key signature of ``sharps`` to none (C major / A minor), in
    ``-5 .. 6``: each sharp is a fifth up (7 semitones).

    >>> key_shift(1), key_shift(-3), key_shift(None)
    (5, -3, 0)
    """
    if not sharps:
        return 0
    shift = (-7 * sharps) % 12
    return shift - 12 if shift > 6 else shift


def shift_roll(roll: np.ndarray, semitones: int) -> np.ndarray:
    """``roll`` moved ``semitones`` up (notes pushed outside 0..127 are dropped)."""
    out = np.zeros_like(roll)
    if semitones >= 0:
        out[:, semitones:] = roll[:, : roll.shape[1] - semitones]
    else:
        out[:, :semitones] = roll[:, -semitones:]
    return out


def pieces_sha256(refs: Sequence[PieceRef]) -> str:
    """One SHA-256 over the files of ``refs`` (each file once, in order)."""
    digest = hashlib.sha256()
    for path in dict.fromkeys(ref.path for ref in refs):
        digest.update(path.name.encode("utf-8") + b"\0" + path.read_bytes())
    return digest.hexdigest()


# -- writing ---------------------------------------------------------------------------------
def roll_notes(roll: np.ndarray) -> list[tuple[int, int, int]]:
    """``(start, end, column)`` of each note of ``roll`` ``(T, P)``: maximal runs of frames of
    one pitch, sorted by start then pitch.

    >>> roll = np.zeros((3, 2), dtype=bool); roll[0:2, 0] = roll[1, 1] = True
    >>> roll_notes(roll)
    [(0, 2, 0), (1, 2, 1)]
    """
    padded = np.zeros((roll.shape[0] + 2, roll.shape[1]), dtype=np.int8)
    padded[1:-1] = roll
    edges = np.diff(padded, axis=0)  # +1 where a note starts, -1 one frame after it ends
    notes = []
    for k in range(roll.shape[1]):
        starts, ends = np.flatnonzero(edges[:, k] == 1), np.flatnonzero(edges[:, k] == -1)
        notes += [(int(s), int(e), k) for s, e in zip(starts, ends)]
    return sorted(notes)


def roll_to_score(
    roll: np.ndarray, low: int = 0, resolution: float = 0.25, *, tempo: float | None = None
):
    """A music21 score of ``roll`` ``(T, P)`` whose column ``k`` is MIDI pitch ``low + k``.

    Each maximal run of frames of one pitch is one note. The notes are dealt into as few
    monophonic parts as the texture needs (a note goes to the first part that is silent at its
    start: optimal for intervals), so every note keeps its own length in MIDI and MusicXML —
    simultaneous notes of one part would be read back as a chord of one length.
    """
    from music21 import note, stream
    from music21 import tempo as tempo_mod

    res = Fraction(resolution).limit_denominator(96)
    parts: list[stream.Part] = []
    ends: list[int] = []
    for s, e, k in roll_notes(roll):
        free = next((i for i, end in enumerate(ends) if end <= s), None)
        if free is None:
            parts.append(stream.Part())
            ends.append(0)
            free = len(parts) - 1
        n = note.Note(midi=int(low + k))
        n.quarterLength = (e - s) * res
        parts[free].insert(s * res, n)
        ends[free] = e
    score = stream.Score()
    for i, part in enumerate(parts or [stream.Part()]):
        if tempo is not None and i == 0:
            part.insert(0, tempo_mod.MetronomeMark(number=tempo))
        score.insert(0, part)
    return score


def note_count(roll: np.ndarray) -> int:
    """Notes in ``roll``: maximal runs of frames per pitch."""
    padded = np.zeros((roll.shape[0] + 1, roll.shape[1]), dtype=np.int8)
    padded[1:] = roll
    return int((np.diff(padded, axis=0) == 1).sum())


def write_score(score, path: str | os.PathLike, fmt: str = "midi") -> None:
    """Write ``score`` as ``fmt`` (``midi`` or ``musicxml``) to ``path`` atomically."""
    import tempfile

    from rnnkit.io import atomic_write_bytes

    if fmt not in ("midi", "musicxml"):
        raise ValueError(f"format must be midi or musicxml; got {fmt!r}")
    path = Path(path)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder) / ("piece.mid" if fmt == "midi" else "piece.musicxml")
        with _quiet():
            score.write(fmt, fp=str(tmp))
        atomic_write_bytes(path, tmp.read_bytes())


def pitch_name(midi: int) -> str:
    """``60`` -> ``"C4"``.

    >>> pitch_name(60), pitch_name(70)
    ('C4', 'B-4')
    """
    names = ("C", "C#", "D", "E-", "E", "F", "F#", "G", "G#", "A", "B-", "B")
    return f"{names[midi % 12]}{midi // 12 - 1}"
