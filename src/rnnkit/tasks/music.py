r"""Polyphonic music: a recurrent net over piano-roll frames, one Bernoulli per pitch.

Boulanger-Lewandowski et al. (2012)'s RNN baseline on a binary piano roll ``y_t ∈ {0,1}^P``
(``P`` pitches of the training range, frames of ``resolution`` quarter notes; see
:mod:`rnnkit.data.music`). The net reads the previous frame and predicts every pitch of the
next one independently given its state (batch-first; B pieces, T frames, H hidden units)::

    x_t = y_{t-1}      (x_1 = 0: the piece starts from silence)      (B, T, P)
    h_t = RNN(x_t, h_{t-1})                  any rnnkit cell, stacked   (B, T, H)
    z_t = W h_t + b,   p(y_t,k = 1) = σ(z_t,k)                          (B, T, P)
    NLL = -1/N Σ_t Σ_k [y_t,k log σ(z_t,k) + (1 - y_t,k) log(1 - σ(z_t,k))]   nats per frame

Metrics (the papers'): frame NLL per time step, summed over pitches and averaged over the
``N`` frames of the held-out pieces, and frame accuracy ``TP / (TP + FP + FN)`` (Bay et al.
2009) of the thresholded prediction ``σ(z) > 0.5``, summed over all frames. Two baselines are
always scored on the same frames (:func:`baseline_metrics`): the per-pitch marginal Bernoulli
of the training frames and "repeat the previous frame".

With ``representation="events"`` (the default of ``rnnkit train music``) the same net reads
and predicts the roll as event tokens instead (:mod:`rnnkit.data.music_events`: note-off,
note-on and step in a canonical order, ``V = 2P + 1`` tokens): a softmax over the tokens the
order allows, so the pitches of a frame are drawn one after another, each knowing the others,
where the Bernoulli outputs are independent given the state. Its NLL per frame is the token
NLL summed over a frame's tokens (one token sequence per roll: the same quantity); its frame
accuracy scores the frame that greedy decoding predicts from the state at each frame boundary.
On the Bach chorales it is the better model by far (README: 2.11 against 3.60 nats per
frame in 120 s of training) and writes four-part texture where independent Bernoulli draws
stack and scatter notes.

Generation (:func:`generate`) draws ``y_t ~ Bernoulli(σ(z_t / temperature))`` one frame at a
time with the recurrent state carried, so a piece of ``N`` frames costs ``N`` steps (event
tokens: one step per token, a frame's changes plus one).

Example::

    >>> model = MusicModel(pitches=6, hidden_size=8)
    >>> roll = torch.zeros(2, 5, 6); roll[:, :, 2] = 1
    >>> x = torch.cat([torch.zeros(2, 1, 6), roll[:, :-1]], dim=1)
    >>> out = model.step((x, roll, torch.ones(2, 5, dtype=torch.bool)))
    >>> out.count, out.loss.item() > 0
    (10, True)
    >>> generate(model, bars=1, frames_per_bar=4, seed=0).shape
    (4, 6)
"""

from __future__ import annotations

import io
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.config import Config
from rnnkit.data.batching import IndexBatches
from rnnkit.data.music import (
    COLLECTIONS,
    EXTENSIONS,
    ON_ERROR,
    PITCHES,
    Piece,
    check_dataset,
    key_shift,
    list_pieces,
    note_count,
    pieces_sha256,
    pitch_name,
    read_pieces,
    roll_to_score,
    shift_roll,
    write_score,
)
from rnnkit.data.music_events import (
    EventCursor,
    EventSequence,
    encode_roll,
    feature_size,
    roll_tokens,
    vocab_size,
)
from rnnkit.data.split import split_indices
from rnnkit.errors import InvalidInputError
from rnnkit.io import atomic_write_bytes
from rnnkit.layers import make_layer
from rnnkit.runs import Headline, LoadedRun, Predictor, Prepared, TaskSpec
from rnnkit.tasks.base import (
    CELLS,
    StepOutput,
    Task,
    check_field_types,
    check_layer_options,
    check_positive_ints,
)
from rnnkit.train import TrainConfig

REPRESENTATIONS = ("events", "roll")


class MusicModel(Task):
    """Previous frame in, a Bernoulli per pitch of the next frame out; or, with
    ``representation="events"``, event-token features in, a softmax over the next token out
    (module docstring).

    Args:
        pitches: P, pitches of the roll (the training range).
        representation: ``"roll"`` (Bernoulli per pitch; the default here, as runs saved
            before event tokens existed hold no representation) or ``"events"`` (tokens; the
            default of :class:`MusicData` and ``rnnkit train music``).
        cell, hidden_size, num_layers, dropout, layer_options: the recurrent layers
            (:func:`rnnkit.layers.make_layer`; dropout between layers and before the head).

    Shapes (roll; events: ``F = 4P + 1`` features in, ``V = 2P + 1`` logits out, ``L`` tokens):
        ``forward(x[B, T, P], state, lengths=None) -> (logits[B, T, P], state)``;
        ``step((x, y[B, T, P], mask[B, T]))``: NLL per frame over the unmasked frames;
        events ``step((x[B, L, F], y[B, L], valid[B, L], allowed[B, L, V]))``: token NLL
        summed and divided by the frames (step tokens) of the batch.
    """

    name = "music"

    def __init__(
        self,
        pitches: int,
        *,
        representation: str = "roll",
        cell: str = "lstm",
        hidden_size: int = 128,
        num_layers: int = 1,
        dropout: float = 0.0,
        layer_options: dict | None = None,
    ) -> None:
        super().__init__()
        check_positive_ints(pitches=pitches, hidden_size=hidden_size, num_layers=num_layers)
        if representation not in REPRESENTATIONS:
            raise ValueError(
                f"representation must be one of {', '.join(REPRESENTATIONS)}; "
                f"got {representation!r}"
            )
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}; got {cell!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout!r}")
        self.pitches, self.cell, self.hidden_size = pitches, cell, hidden_size
        self.representation = representation
        self.num_layers, self.dropout_p = num_layers, dropout
        self.layer_options = dict(layer_options or {})
        check_layer_options(self.layer_options)
        events = representation == "events"
        self.input_size = feature_size(pitches) if events else pitches
        self.output_size = vocab_size(pitches) if events else pitches
        self.rnn = make_layer(
            cell,
            self.input_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
            **self.layer_options,
        )
        out_size = self.layer_options.get("proj_size") or hidden_size
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(out_size, self.output_size)

    @property
    def step_token(self) -> int:
        """The events' step token (``2P``)."""
        return 2 * self.pitches

    def forward(self, x: Tensor, state=None, lengths: Tensor | None = None):
        output, state = self.rnn(x, state, lengths=lengths)  # (B, T, H)
        return self.head(self.drop(output)), state  # (B, T, P) or (B, L, V)

    def step(self, batch, state=None) -> StepOutput:
        if self.representation == "events":
            return self._event_step(batch)
        x, y, mask = batch
        logits, _ = self(x)
        nll = F.binary_cross_entropy_with_logits(logits, y, reduction="none").sum(-1)  # (B, T)
        frames = int(mask.sum())
        loss = (nll * mask).sum() / max(frames, 1)
        on, truth = (logits.detach() > 0) & mask[..., None], (y > 0.5) & mask[..., None]
        stats = {
            "tp": float((on & truth).sum()),
            "fp": float((on & ~truth).sum()),
            "fn": float((~on & truth).sum()),
        }
        return StepOutput(loss=loss, count=frames, stats=stats)

    def _event_step(self, batch) -> StepOutput:
        x, y, valid, allowed = batch
        logits, _ = self(x)
        logits = logits.masked_fill(~allowed, -math.inf)  # only the canonical continuations
        nll = F.cross_entropy(logits.transpose(1, 2), y, reduction="none")  # (B, L)
        frames = int(((y == self.step_token) & valid).sum())
        loss = (nll * valid).sum() / max(frames, 1)
        return StepOutput(loss=loss, count=frames)

    def summarize(self, loss_sum: float, count: int, stats: dict[str, float]) -> dict[str, float]:
        metrics = {"loss": loss_sum / count if count else math.nan, "frames": count}
        if self.representation == "roll":  # events: scored by greedy decoding in the report
            tp, fp, fn = (stats.get(k, 0) for k in ("tp", "fp", "fn"))
            metrics["accuracy"] = frame_accuracy(tp, fp, fn)
        return metrics

    def config(self) -> dict:
        return {
            "pitches": self.pitches,
            "representation": self.representation,
            "cell": self.cell,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "dropout": self.dropout_p,
            "layer_options": self.layer_options,
        }


def frame_accuracy(tp: float, fp: float, fn: float) -> float:
    """Bay et al. (2009): ``TP / (TP + FP + FN)`` (1.0 when nothing sounds and nothing is
    predicted).

    >>> frame_accuracy(3, 1, 2)
    0.5
    """
    total = tp + fp + fn
    return tp / total if total else 1.0


# -- baselines ------------------------------------------------------------------------------
@dataclass
class Baselines:
    """Fitted on the training frames (add-one smoothed, so no probability is 0 or 1).

    Attributes:
        marginal: ``(P,)`` ``p_k = (frames with pitch k + 1) / (frames + 2)``.
        stay_on / turn_on: repeat-the-previous-frame as a Bernoulli:
            ``p(y_t,k = 1 | y_{t-1,k} = 1)`` and ``p(y_t,k = 1 | y_{t-1,k} = 0)``, shared by
            all pitches (the first frame of a piece follows silence).
    """

    marginal: np.ndarray
    stay_on: float
    turn_on: float

    @classmethod
    def fit(cls, rolls: list[np.ndarray]) -> Baselines:
        frames = sum(len(r) for r in rolls)
        on = sum(r.sum(axis=0) for r in rolls)
        marginal = (np.asarray(on, dtype=np.float64) + 1) / (frames + 2)
        prev = [np.concatenate([np.zeros((1, r.shape[1]), bool), r[:-1]]) for r in rolls]
        on_on = sum(int((p & r).sum()) for p, r in zip(prev, rolls))
        was_on = sum(int(p.sum()) for p in prev)
        off_on = sum(int((~p & r).sum()) for p, r in zip(prev, rolls))
        was_off = sum(int((~p).sum()) for p in prev)
        return cls(marginal, (on_on + 1) / (was_on + 2), (off_on + 1) / (was_off + 2))

    def to_json(self) -> dict:
        return {
            "marginal": self.marginal.tolist(),
            "stay_on": self.stay_on,
            "turn_on": self.turn_on,
        }

    @classmethod
    def from_json(cls, obj: dict) -> Baselines:
        return cls(np.asarray(obj["marginal"], dtype=np.float64), obj["stay_on"], obj["turn_on"])


def bernoulli_nll(p: np.ndarray, y: np.ndarray) -> float:
    """``-Σ [y log p + (1 - y) log(1 - p)]`` over all entries (float64)."""
    p = np.asarray(p, dtype=np.float64)
    return float(-(np.where(y, np.log(p), np.log1p(-p))).sum())


def baseline_metrics(rolls: list[np.ndarray], baselines: Baselines) -> dict:
    """Frame NLL and accuracy of both baselines over the frames of ``rolls``.

    ``marginal`` predicts the pitches whose ``p_k > 0.5`` in every frame; ``repeat`` predicts
    the previous frame (silence before the first).
    """
    frames = sum(len(r) for r in rolls)
    m_nll = sum(bernoulli_nll(np.broadcast_to(baselines.marginal, r.shape), r) for r in rolls)
    guess = baselines.marginal > 0.5
    m = np.zeros(3)
    r_nll, rep = 0.0, np.zeros(3)
    for roll in rolls:
        m += _counts(np.broadcast_to(guess, roll.shape), roll)
        prev = np.concatenate([np.zeros((1, roll.shape[1]), bool), roll[:-1]])
        r_nll += bernoulli_nll(np.where(prev, baselines.stay_on, baselines.turn_on), roll)
        rep += _counts(prev, roll)
    return {
        "marginal": {"nll": m_nll / frames, "accuracy": frame_accuracy(*m)},
        "repeat": {"nll": r_nll / frames, "accuracy": frame_accuracy(*rep)},
    }


def _counts(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return np.array([(pred & truth).sum(), (pred & ~truth).sum(), (~pred & truth).sum()], float)


# -- data ---------------------------------------------------------------------------------
@dataclass
class MusicData(Config):
    """Where the music is, how it becomes frames, the split and the batches."""

    dataset: str | None = field(
        default=None,
        metadata={
            "help": f"a packaged collection: {', '.join(COLLECTIONS)} (default bach-chorales)",
            "metavar": "NAME",
        },
    )
    files: str | None = field(
        default=None,
        metadata={
            "help": f"your own music: a file or a folder of {' '.join(EXTENSIONS)} files",
            "metavar": "DIR",
        },
    )
    max_pieces: int | None = field(
        default=None, metadata={"help": "read only the first N pieces", "metavar": "N"}
    )
    resolution: float = field(
        default=0.25, metadata={"help": "frame length in quarter notes (0.25: a sixteenth)"}
    )
    representation: str = field(
        default="events",
        metadata={
            "help": "events: note-off/note-on/step tokens, a softmax over the next one "
            "(default); roll: a Bernoulli per pitch of the next frame",
            "choices": REPRESENTATIONS,
        },
    )
    common_key: bool = field(
        default=False,
        metadata={"help": "transpose every piece to the key signature of C major / A minor"},
    )
    augment: int = field(
        default=0,
        metadata={"help": "also train on every training piece moved by ±1..K semitones"},
    )
    on_error: str = field(
        default="refuse",
        metadata={"help": "a file music21 cannot parse: refuse, or skip it", "choices": ON_ERROR},
    )
    val_fraction: float = field(default=0.1, metadata={"help": "validation share of the pieces"})
    test_fraction: float = field(default=0.1, metadata={"help": "test share of the pieces"})
    window: int = field(default=64, metadata={"help": "training window in frames"})
    batch_size: int = field(default=16, metadata={"help": "windows per batch"})

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.dataset is not None and self.files is not None:
            raise ValueError("give either --dataset or --files, not both")
        if self.dataset is None and self.files is None:
            self.dataset = "bach-chorales"
        if self.dataset is not None:
            check_dataset(self.dataset)
        check_positive_ints(window=self.window, batch_size=self.batch_size)
        if self.max_pieces is not None:
            check_positive_ints(max_pieces=self.max_pieces)
        if not (math.isfinite(self.resolution) and 0 < self.resolution <= 4):
            raise ValueError(f"resolution must be in (0, 4] quarter notes; got {self.resolution}")
        if isinstance(self.augment, bool) or not 0 <= self.augment <= 12:
            raise ValueError(f"augment must be 0..12 semitones; got {self.augment!r}")
        if self.representation not in REPRESENTATIONS:
            raise ValueError(
                f"representation must be one of {', '.join(REPRESENTATIONS)}; "
                f"got {self.representation!r}"
            )
        if self.on_error not in ON_ERROR:
            raise ValueError(
                f"on_error must be one of {', '.join(ON_ERROR)}; got {self.on_error!r}"
            )
        for name in ("val_fraction", "test_fraction"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1); got {getattr(self, name)}")
        if self.test_fraction <= 0:
            raise ValueError("test_fraction must be > 0: the held-out pieces are scored there")

    @property
    def source(self) -> str:
        return self.dataset if self.dataset is not None else str(Path(self.files).resolve())


@dataclass
class MusicConfig(Config):
    """:class:`MusicModel` arguments other than ``pitches`` (from the data)."""

    cell: str = field(default="lstm", metadata={"help": "recurrent cell"})
    hidden_size: int = field(default=128, metadata={"help": "hidden units H per layer"})
    num_layers: int = field(default=1, metadata={"help": "stacked recurrent layers"})
    dropout: float = field(
        default=0.0, metadata={"help": "dropout between layers and before the output"}
    )
    layer_options: dict = field(default_factory=dict, metadata={"flag": False})

    def __post_init__(self) -> None:
        check_field_types(self)
        check_positive_ints(hidden_size=self.hidden_size, num_layers=self.num_layers)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout!r}")


@dataclass
class MusicEncoders:
    """What a run fitted on its training pieces (``music.json``): the pitch range
    ``low .. low + pitches - 1``, frame length, bar length in frames, key handling, the
    baselines and the representation (runs from before event tokens: ``roll``)."""

    low: int
    pitches: int
    resolution: float
    frames_per_bar: int
    common_key: bool
    baselines: Baselines
    representation: str = "roll"

    def to_json(self) -> dict:
        return {
            "representation": self.representation,
            "low": self.low,
            "pitches": self.pitches,
            "resolution": self.resolution,
            "frames_per_bar": self.frames_per_bar,
            "common_key": self.common_key,
            "baselines": self.baselines.to_json(),
        }

    @classmethod
    def from_json(cls, obj: dict) -> MusicEncoders:
        enc = cls(
            low=obj["low"],
            pitches=obj["pitches"],
            resolution=obj["resolution"],
            frames_per_bar=obj["frames_per_bar"],
            common_key=obj["common_key"],
            baselines=Baselines.from_json(obj["baselines"]),
            representation=obj.get("representation", "roll"),
        )
        if enc.representation not in REPRESENTATIONS:
            raise ValueError(f"representation must be one of {', '.join(REPRESENTATIONS)}")
        for name in ("low", "pitches", "frames_per_bar"):
            value = getattr(enc, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if enc.low + enc.pitches > PITCHES or len(enc.baselines.marginal) != enc.pitches:
            raise ValueError("the pitch range and the marginal baseline do not fit")
        return enc

    def crop(self, roll: np.ndarray) -> tuple[np.ndarray, int]:
        """``roll`` (T, 128) cut to the range, and the number of note frames outside it."""
        kept = roll[:, self.low : self.low + self.pitches]
        return kept, int(roll.sum() - kept.sum())

    def pitch_range(self) -> str:
        return f"{pitch_name(self.low)}-{pitch_name(self.low + self.pitches - 1)}"


class FrameWindows(IndexBatches):
    """Batches of ``(x, y, mask)``: windows ``(roll, start, length)`` of piece rolls, ``x`` the
    frames one earlier than ``y`` (silence before a piece's first frame), padded to the
    longest window of the batch with ``mask`` False."""

    generator = "torch"

    def __init__(self, rolls, windows, batch_size, *, shuffle=False, seed=0) -> None:
        super().__init__(len(windows), batch_size, shuffle=shuffle, seed=seed)
        self.rolls, self.windows = rolls, windows

    def make_batch(self, indices):
        chosen = [self.windows[i] for i in indices]
        T = max(length for _, _, length in chosen)
        P = self.rolls[0].shape[1]
        x = np.zeros((len(chosen), T, P), np.float32)
        y = np.zeros((len(chosen), T, P), np.float32)
        mask = np.zeros((len(chosen), T), bool)
        for b, (r, start, length) in enumerate(chosen):
            roll = self.rolls[r]
            y[b, :length] = roll[start : start + length]
            lo = max(start - 1, 0)
            x[b, lo - start + 1 : length] = roll[lo : start + length - 1]
            mask[b, :length] = True
        return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(mask)


class EventWindows(IndexBatches):
    """Batches of ``(x, y, valid, allowed)``: windows ``(piece, start, frames)`` of event
    sequences cut at frame boundaries (each from a zero state, like :class:`FrameWindows`),
    padded to the longest with ``valid`` False and every token allowed."""

    generator = "torch"

    def __init__(self, sequences: list[EventSequence], windows, batch_size, *, shuffle=False,
                 seed=0) -> None:  # fmt: skip
        super().__init__(len(windows), batch_size, shuffle=shuffle, seed=seed)
        self.sequences, self.windows = sequences, windows

    def make_batch(self, indices):
        spans = []
        for i in indices:
            r, start, length = self.windows[i]
            starts = self.sequences[r].frame_starts
            spans.append((self.sequences[r], int(starts[start]), int(starts[start + length])))
        L = max(b - a for _, a, b in spans)
        P = spans[0][0].before.shape[1]
        x = np.zeros((len(spans), L, feature_size(P)), np.float32)
        y = np.zeros((len(spans), L), np.int64)
        valid = np.zeros((len(spans), L), bool)
        allowed = np.ones((len(spans), L, vocab_size(P)), bool)
        for b, (seq, a, e) in enumerate(spans):
            n = e - a
            x[b, :n], y[b, :n], valid[b, :n] = seq.features(a, e), seq.tokens[a:e], True
            allowed[b, :n] = seq.allowed[a:e]
        return tuple(torch.from_numpy(v) for v in (x, y, valid, allowed))


def batches_for(representation: str, rolls, windows, batch_size, *, shuffle=False, seed=0):
    """:class:`FrameWindows` or :class:`EventWindows` (encoding the rolls) over ``windows``."""
    if representation == "events":
        sequences = [encode_roll(r) for r in rolls]
        return EventWindows(sequences, windows, batch_size, shuffle=shuffle, seed=seed)
    return FrameWindows(rolls, windows, batch_size, shuffle=shuffle, seed=seed)


def training_windows(rolls, window: int) -> list[tuple[int, int, int]]:
    """Consecutive windows of ``window`` frames over each roll (the last one shorter)."""
    return [(r, s, min(window, len(roll) - s)) for r, roll in enumerate(rolls)
            for s in range(0, len(roll), window)]  # fmt: skip


def piece_batches(rolls, batch_size: int, representation: str = "roll"):
    """Whole pieces, each from its first frame (evaluation)."""
    windows = [(r, 0, len(roll)) for r, roll in enumerate(rolls)]
    return batches_for(representation, rolls, windows, batch_size)


@dataclass
class MusicPrepared(Prepared):
    """Prepared music: batches, encoders, and the cropped held-out rolls with their ids."""

    parts: dict | None = None  # part -> list of (T, P) rolls
    out_of_range: dict | None = None  # part -> note frames outside the pitch range


def _normalise(piece: Piece, common_key: bool) -> np.ndarray:
    return shift_roll(piece.roll, key_shift(piece.sharps)) if common_key else piece.roll


def read_music(data: MusicData):
    """``(refs, pieces, skipped)`` of ``data`` (the first ``max_pieces`` refs)."""
    refs = list_pieces(data.dataset, data.files)
    if data.max_pieces is not None:
        refs = refs[: data.max_pieces]
    pieces, skipped = read_pieces(refs, data.resolution, on_error=data.on_error)
    if not pieces:
        raise InvalidInputError(f"no piece of {data.source} could be read ({len(skipped)} skipped)")
    return refs, pieces, skipped


def prepare_music(
    data: MusicData, seed: int, *, encoders: MusicEncoders | None = None, split=None
) -> MusicPrepared:
    """Read and quantise the pieces, split them by piece (seeded; or the run's ``split``),
    fit the pitch range, bar length and baselines on the training pieces, batch every part."""
    refs, pieces, skipped = read_music(data)
    empty = [p.ref.id for p in pieces if not p.roll.any()]
    if len(empty) == len(pieces):
        raise InvalidInputError(
            f"no notes in the {len(pieces)} piece(s) of {data.source} after quantisation to "
            f"--resolution {data.resolution:g}; check the files or use a finer resolution"
        )
    pieces = [p for p in pieces if p.roll.any()]
    if max(len(p.roll) for p in pieces) < data.window:
        raise InvalidInputError(
            f"every piece of {data.source} is shorter than one window of --window "
            f"{data.window} frames (longest: {max(len(p.roll) for p in pieces)}); use a smaller "
            "--window or a finer --resolution"
        )
    by_id = {p.ref.id: p for p in pieces}
    if split is None:
        parts = split_indices(
            len(pieces), data.val_fraction, data.test_fraction, seed=seed, what="pieces"
        )
        split = {name: [pieces[i].ref.id for i in idx] for name, idx in parts.items()}
    else:
        missing = [i for ids in split.values() for i in ids if i not in by_id]
        if missing:
            raise InvalidInputError(
                f"{len(missing)} piece(s) of the run's split are not in {data.source} "
                f"(first: {missing[0]}); the run's split no longer applies"
            )
    rolls = {
        name: [_normalise(by_id[i], data.common_key) for i in ids] for name, ids in split.items()
    }
    if encoders is None:
        train_rolls = rolls["train"]
        on = np.flatnonzero(np.any([r.any(axis=0) for r in train_rolls], axis=0))
        low = max(int(on[0]) - data.augment, 0)
        high = min(int(on[-1]) + data.augment, PITCHES - 1)
        bar = Counter(by_id[i].bar_quarters for i in split["train"]).most_common(1)[0][0]
        cropped = [r[:, low : high + 1] for r in train_rolls]
        encoders = MusicEncoders(
            low=low,
            pitches=high - low + 1,
            resolution=data.resolution,
            frames_per_bar=max(1, round(bar / data.resolution)),
            common_key=data.common_key,
            baselines=Baselines.fit(cropped),
            representation=data.representation,
        )
    cropped, outside = {}, {}
    for name, part in rolls.items():
        kept = [encoders.crop(r) for r in part]
        cropped[name], outside[name] = [k for k, _ in kept], sum(n for _, n in kept)
    train_rolls = list(cropped["train"])
    for shift in range(1, data.augment + 1):  # transposed copies that stay in the range
        for roll in rolls["train"]:
            for s in (shift, -shift):
                moved, lost = encoders.crop(shift_roll(roll, s))
                if lost == 0:
                    train_rolls.append(moved)
    rep = encoders.representation
    windows = training_windows(train_rolls, data.window)
    train = batches_for(rep, train_rolls, windows, data.batch_size, shuffle=True, seed=seed)
    val = piece_batches(cropped["val"], data.batch_size, rep) if cropped["val"] else None
    record = {
        "source": data.source,
        "sha256": pieces_sha256(refs),
        "pieces": len(pieces),
        "frames": int(sum(len(p.roll) for p in pieces)),
        "skipped": skipped,
        "empty": empty,
        "pitch_range": encoders.pitch_range(),
    }
    if data.files is not None:
        record["files"] = data.source
    return MusicPrepared(
        train=train,
        val=val,
        encoders=encoders,
        split=split,
        record=record,
        parts=cropped,
        out_of_range=outside,
    )


# -- evaluation and report ------------------------------------------------------------------
def music_report(model: MusicModel, rolls: list[np.ndarray], encoders: MusicEncoders, *,
                 batch_size: int = 16) -> dict:  # fmt: skip
    """Frame NLL (nats per frame) and accuracy of ``model`` and both baselines on whole
    pieces ``rolls`` (cropped to the run's range)."""
    rolls = [r for r in rolls if len(r)]
    if not rolls:
        raise InvalidInputError("no frames to score")
    metrics = model.evaluate(piece_batches(rolls, batch_size, model.representation))
    if "accuracy" not in metrics:
        counts = sum(greedy_frame_counts(model, rolls[i : i + batch_size])
                     for i in range(0, len(rolls), batch_size))  # fmt: skip
        metrics["accuracy"] = frame_accuracy(*counts)
    return {
        "pieces": len(rolls),
        "frames": int(sum(len(r) for r in rolls)),
        "model": {"nll": metrics["loss"], "accuracy": metrics["accuracy"]},
        "baselines": baseline_metrics(rolls, encoders.baselines),
    }


def _masked(logits: Tensor, cursors: list[EventCursor]) -> Tensor:
    """``logits`` (B, V) on the CPU in float64 with what each cursor forbids at -inf."""
    allowed = torch.from_numpy(np.stack([c.allowed() for c in cursors]))
    return logits.detach().double().cpu().masked_fill(~allowed, -math.inf)


def _features(cursors: list[EventCursor], like: Tensor) -> Tensor:
    """The cursors' next inputs as ``(B, 1, F)`` on ``like``'s device and dtype."""
    return torch.from_numpy(np.stack([c.features() for c in cursors])[:, None]).to(like)


@torch.no_grad()
def greedy_frame_counts(model: MusicModel, rolls: list[np.ndarray]) -> np.ndarray:
    """``[TP, FP, FN]`` of an events model's next-frame predictions over ``rolls``.

    At every frame boundary of every piece (the state having read the true frames before it)
    the frame is decoded greedily — the most probable allowed token until the step — and
    compared with the true frame; then the true frame's tokens are read (``lengths`` keeps
    the pieces of a batch at their own frame). One batch of pieces, ``T`` frames: ``T`` reads
    and a decode of at most ``P + 1`` steps per frame.
    """
    was_training = model.training
    model.eval()
    P = model.pitches
    weight = next(model.parameters())
    sequences = [encode_roll(r) for r in rolls]
    counts, state = np.zeros(3), None
    for t in range(max(len(r) for r in rolls)):
        before = [r[t - 1] if 0 < t <= len(r) else None for r in rolls]
        cursors = [EventCursor(P, b) for b in before]
        guess, decoded = [None] * len(rolls), state
        while any(g is None for g in guess):
            logits, decoded = model(_features(cursors, weight), decoded)
            tokens = _masked(logits[:, -1], cursors).argmax(-1).tolist()
            for b, token in enumerate(tokens):
                if guess[b] is None:
                    guess[b] = cursors[b].push(token)
        for b, roll in enumerate(rolls):
            if t < len(roll):
                counts += _counts(guess[b][None], roll[t][None])
        spans = [(int(q.frame_starts[t]), int(q.frame_starts[t + 1])) if t < q.frames else None
                 for q in sequences]  # fmt: skip
        lengths = [span[1] - span[0] if span else 1 for span in spans]  # 1: a finished piece
        x = np.zeros((len(rolls), max(lengths), feature_size(P)), np.float32)
        for b, (q, span) in enumerate(zip(sequences, spans)):
            if span:
                x[b, : span[1] - span[0]] = q.features(*span)
        _, state = model(torch.from_numpy(x).to(weight), state, lengths=torch.tensor(lengths))
    model.train(was_training)
    return counts


def format_music_report(report: dict) -> str:
    """A small table: model and baselines, frame NLL and accuracy."""
    lines = [
        f"{report['data']}: {report['pieces']} pieces, {report['frames']:,} frames",
        f"{'':10}{'NLL/frame':>12}{'accuracy':>10}",
    ]
    rows = {"model": report["model"], **report["baselines"]}
    for name, m in rows.items():
        lines.append(f"{name:10}{m['nll']:>12.3f}{m['accuracy']:>10.3f}")
    if report.get("out_of_range"):
        lines.append(f"{report['out_of_range']} note frames outside the pitch range not scored")
    return "\n".join(lines)


class PieceStream:
    """Chunk-by-chunk scoring of a piece with the recurrent state carried: :meth:`feed` gives
    each frame's log-probability (nats) given every frame before it, so the values over
    consecutive chunks equal one call on the whole piece (and their negative mean is the frame
    NLL of the held-out report).

    Frames are ``(T, P)`` in the run's pitch range or full ``(T, 128)`` MIDI rolls (cropped to
    the range; a note outside it is an error). Roll models score each frame as P Bernoullis
    given the previous frame; event models as the product of its tokens' probabilities, each
    over the tokens allowed there (:class:`~rnnkit.data.music_events.EventCursor`).
    """

    def __init__(self, model: MusicModel, encoders: MusicEncoders) -> None:
        self.model, self.encoders = model, encoders
        self.reset()

    def reset(self) -> None:
        """Back to the start of a piece (zero state, silence before it)."""
        self.state = None
        self.cursor = EventCursor(self.model.pitches)

    def _frames(self, frames) -> np.ndarray:
        roll = np.asarray(frames)
        P = self.model.pitches
        if roll.ndim != 2 or roll.shape[1] not in (P, PITCHES) or not len(roll):
            raise ValueError(
                f"frames must be (T, {P}) in the run's range {self.encoders.pitch_range()} or "
                f"(T, {PITCHES}) MIDI pitches, T >= 1; got shape {roll.shape}"
            )
        roll = roll.astype(bool)
        if roll.shape[1] != P:
            roll, outside = self.encoders.crop(roll)
            if outside:
                raise ValueError(
                    f"{outside} note frame(s) lie outside the run's range "
                    f"{self.encoders.pitch_range()}"
                )
        return roll

    @torch.no_grad()
    def feed(self, frames) -> np.ndarray:
        """``(T,)`` float64 log-probabilities of the T frames, each given all before it."""
        roll = self._frames(frames)
        model = self.model.eval()
        like = next(model.parameters())
        if model.representation == "roll":
            before = np.concatenate([self.cursor.before[None], roll[:-1]])
            x = torch.from_numpy(before[None].astype(np.float32)).to(like)
            logits, self.state = model(x, self.state)
            y = torch.from_numpy(roll[None].astype(np.float64)).to(logits.device)
            nll = F.binary_cross_entropy_with_logits(logits.double(), y, reduction="none")
            self.cursor = EventCursor(model.pitches, roll[-1])  # the previous frame
            return -nll[0].sum(-1).double().cpu().numpy()
        tokens = roll_tokens(np.concatenate([self.cursor.before[None], roll]))
        tokens = tokens[np.flatnonzero(tokens == model.step_token)[0] + 1 :]  # frame 0 is known
        inputs, allowed = [], []
        for token in tokens:
            inputs.append(self.cursor.features())
            allowed.append(self.cursor.allowed())
            self.cursor.push(token)
        x = torch.from_numpy(np.stack(inputs)[None]).to(like)
        logits, self.state = model(x, self.state)
        mask = torch.from_numpy(np.stack(allowed)).to(logits.device)
        logp = torch.log_softmax(logits[0].double().masked_fill(~mask, -math.inf), dim=-1)
        picked = logp.gather(1, torch.from_numpy(tokens).to(logits.device)[:, None])[:, 0]
        ends = np.flatnonzero(tokens == model.step_token)
        per_frame = np.add.reduceat(picked.cpu().numpy(), np.concatenate([[0], ends[:-1] + 1]))
        return per_frame


class MusicPredictor(Predictor):
    """A music run: :meth:`generate` a piece, :meth:`stream` to score one chunk by chunk."""

    def stream(self) -> PieceStream:
        return PieceStream(self.model, self.encoders)

    def generate(self, out: str | os.PathLike, **options) -> dict:
        """Write a generated piece to ``out`` and its piano roll (``png``, default ``out`` with
        ``.png``) and return the summary; ``options`` as :func:`generate_piece` (``bars``,
        ``temperature``, ``seed``, ``primer``, ``primer_bars``, ``fmt``, ``tempo``)."""
        options.setdefault("png", Path(out).with_suffix(".png"))
        return generate_piece(self.loaded, out, **options)


class MusicSpec(TaskSpec):
    """Music in the run lifecycle (:mod:`rnnkit.runs`): pieces split into train/validation/
    test (``split.json``), pitch range, bar length and baselines fitted on the training pieces
    (``music.json``); the held-out report scores the model and both baselines on the test
    pieces."""

    name = "music"
    task_class = MusicModel
    data_config = MusicData
    model_config = MusicConfig
    encoders_file = "music.json"
    predictor = MusicPredictor
    throughput_unit = "frames"

    def default_train(self) -> TrainConfig:
        return TrainConfig(epochs=30, lr=2e-3, eval_every=100)

    def saved_data(self, record: dict) -> MusicData:
        record = {"representation": "roll", **record}  # runs from before event tokens
        data = MusicData.from_dict(record, strict=False)
        return data.replace(files=record["files"]) if record.get("files") else data

    def prepare(self, data: MusicData, seed: int, *, encoders=None, split=None) -> MusicPrepared:
        return prepare_music(data, seed, encoders=encoders, split=split)

    def build(self, model: MusicConfig, prepared: MusicPrepared) -> MusicModel:
        enc = prepared.encoders
        return MusicModel(enc.pitches, representation=enc.representation, **model.to_dict())

    def encoders_to_json(self, encoders: MusicEncoders) -> dict:
        return encoders.to_json()

    def encoders_from_json(self, obj: dict) -> MusicEncoders:
        return MusicEncoders.from_json(obj)

    def export_model(self, loaded: LoadedRun):
        """Streaming: ``frames`` (B, T, P) and the state in, ``logits`` (B, T, P) of the next
        frames and the next state out; an events model takes ``features`` (B, L, 4P + 1) and
        gives ``logits`` (B, L, 2P + 1) of the next tokens. Checked by the frame NLL (each
        window from a zero state)."""
        from rnnkit.export import StreamingModel, TaskExport

        model: MusicModel = loaded.task
        stream = StreamingModel(model)
        events = model.representation == "events"
        name = "features" if events else "frames"
        x = torch.zeros(2, 3, model.input_size)
        graph = stream.graph(
            name, x, {0: "batch", 1: "time"}, "logits", ["batch", "time", model.output_size]
        )

        def score(out, batch):
            if events:
                _, y, valid, allowed = batch
                z = out[0].masked_fill(~allowed, -math.inf).transpose(1, 2)
                nll = F.cross_entropy(z, y, reduction="none")
                return float((nll * valid).sum()), int(((y == model.step_token) & valid).sum())
            _, y, mask = batch
            nll = F.binary_cross_entropy_with_logits(out[0], y, reduction="none").sum(-1)
            return float((nll * mask).sum()), int(mask.sum())

        described = {
            "frames": "piano-roll frames, 1 where a pitch of encoders' range sounds",
            "logits": "per pitch of the next frame; sigmoid for the probability it sounds",
        }
        if events:
            described = {
                "features": "per token: one-hot of the previous event token (V = 2P + 1: "
                "off 0..P-1, on P..2P-1, step 2P), the previous frame (P), the frame so far (P)",
                "logits": "per event token of the next one; softmax over the tokens the "
                "canonical order allows (rnnkit.data.music_events)",
            }
        return TaskExport(
            [graph],
            sidecar={**stream.sidecar(), "representation": model.representation, **described},
            feed=lambda batch: stream.inputs(name, batch[0]),
            score=score,
            metric="frame_nll",
        )

    def report(
        self,
        loaded: LoadedRun,
        prepared: MusicPrepared | None = None,
        *,
        data_file: str | os.PathLike | None = None,
        batch_size: int | None = None,
        **_,
    ) -> dict:
        """:func:`music_report` on the test pieces, or on every piece of ``data_file`` (a
        music file or folder, read with the run's resolution and key handling)."""
        enc: MusicEncoders = loaded.encoders
        saved = self.saved_data(loaded.config.get("data", {}))
        batch_size = batch_size or saved.batch_size
        if data_file is not None:
            other = saved.replace(dataset=None, files=str(data_file), max_pieces=None)
            _, pieces, _ = read_music(other)
            kept = [enc.crop(_normalise(p, enc.common_key)) for p in pieces]
            rolls, outside, what = [k for k, _ in kept], sum(n for _, n in kept), str(data_file)
        elif prepared is not None:
            rolls, outside = prepared.parts["test"], prepared.out_of_range["test"]
            what = f"test pieces of {prepared.record.get('source')}"
        else:
            return {}
        report = music_report(loaded.task, rolls, enc, batch_size=batch_size)
        return {"data": what, **report, "out_of_range": outside}

    def headline(self, report: dict) -> Headline | None:
        if "model" not in report:
            return None
        base = report.get("baselines", {})
        name = min(base, key=lambda k: base[k]["nll"], default="repeat")
        value = base[name]["nll"] if name in base else None
        return Headline("nll", report["model"]["nll"], False, name, value)

    def format_report(self, report: dict) -> str:
        return format_music_report(report)

    def format_metrics(self, metrics: dict) -> str:
        if "val_loss" not in metrics:
            return ""
        text = f"validation: NLL {metrics['val_loss']:.3f} nats/frame"
        if "val_accuracy" in metrics:
            text += f", accuracy {metrics['val_accuracy']:.3f}"
        return text

    def format_evaluation(self, report: dict) -> dict:
        flat = {k: report[k] for k in ("data", "pieces", "frames", "out_of_range")}
        for name, m in {"model": report["model"], **report["baselines"]}.items():
            flat[f"{name}_nll"] = m["nll"]
            flat[f"{name}_accuracy"] = m["accuracy"]
        return flat


SPEC = MusicSpec()


# -- generation -------------------------------------------------------------------------------
@torch.no_grad()
def generate(
    model: MusicModel,
    *,
    bars: int,
    frames_per_bar: int,
    temperature: float = 1.0,
    seed: int | None = None,
    primer: np.ndarray | None = None,
) -> np.ndarray:
    """A piece of ``bars * frames_per_bar`` frames ``(T, P)`` bool, continuing ``primer``.

    The primer's frames (``(T_p, P)``, the model's pitch range) are read through the model and
    kept as the start of the piece; then each frame is drawn
    ``y_t ~ Bernoulli(σ(z_t / temperature))`` and fed back, one step per frame with the state
    carried. Without a primer the piece starts from silence.

    Raises:
        ValueError: bars < 1, temperature <= 0, a primer of another width.
        InvalidInputError: a primer longer than the piece.
    """
    if isinstance(bars, bool) or not isinstance(bars, int) or bars < 1:
        raise ValueError(f"bars must be a positive integer, got {bars!r}")
    if (
        not (isinstance(temperature, int | float) and math.isfinite(temperature))
        or temperature <= 0
    ):
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    P, total = model.pitches, bars * frames_per_bar
    primer = np.zeros((0, P), bool) if primer is None else np.asarray(primer, bool)
    if primer.ndim != 2 or primer.shape[1] != P:
        raise ValueError(f"primer must have shape (T, {P}); got {primer.shape}")
    if len(primer) > total:
        raise InvalidInputError(
            f"the primer has {len(primer)} frames ({len(primer) / frames_per_bar:.1f} bars), "
            f"longer than --bars {bars} ({total} frames); give more --bars or a shorter primer"
        )
    # Uniform draws from a CPU generator, compared with σ(z / T): the same piece for a seed
    # on every device.
    generator = torch.Generator().manual_seed(seed if seed is not None else torch.seed())
    if model.representation == "events":
        return _generate_events(model, total, primer, temperature, generator)
    was_training = model.training
    model.eval()
    weight = next(model.parameters())
    frames = torch.zeros(total, P, dtype=weight.dtype, device=weight.device)
    frames[: len(primer)] = torch.from_numpy(primer.astype(np.float32)).to(frames)
    # Silence, then the primer: the last output predicts the first frame to draw.
    inputs = torch.cat([torch.zeros_like(frames[:1]), frames[: len(primer)]])
    logits, state = model(inputs[None])
    for t in range(len(primer), total):
        p = torch.sigmoid(logits[0, -1].double() / temperature).cpu()
        frames[t] = (torch.rand(P, generator=generator, dtype=torch.float64) < p).to(frames)
        if t + 1 < total:
            logits, state = model(frames[t].view(1, 1, P), state)  # one step, state carried
    model.train(was_training)
    return frames.cpu().numpy().astype(bool)


def _generate_events(model: MusicModel, total: int, primer: np.ndarray, temperature: float,
                     generator: torch.Generator) -> np.ndarray:  # fmt: skip
    """:func:`generate` for an events model: the primer's tokens are read, then each token is
    drawn from ``softmax(z / temperature)`` over the allowed ones (a uniform draw from the CPU
    ``generator`` against the float64 CDF: the same piece for a seed on every device) and fed
    back, until ``total`` frames are complete."""
    was_training = model.training
    model.eval()
    weight = next(model.parameters())
    frames, state = list(primer), None
    if len(primer):
        _, state = model(torch.from_numpy(encode_roll(primer).features())[None].to(weight))
    cursor = EventCursor(model.pitches, primer[-1] if len(primer) else None)
    while len(frames) < total:
        logits, state = model(_features([cursor], weight), state)
        z = _masked(logits[:, -1] / temperature, [cursor])[0]
        cdf = torch.softmax(z, dim=0).cumsum(0)
        u = torch.rand((), generator=generator, dtype=torch.float64) * cdf[-1]
        token = min(int(torch.searchsorted(cdf, u, right=True)), len(cdf) - 1)
        frame = cursor.push(token)
        if frame is not None:
            frames.append(frame)
    model.train(was_training)
    return np.array(frames, bool).reshape(total, model.pitches)


def primer_from_test_piece(
    loaded: LoadedRun, bars: int, seed: int | None
) -> tuple[np.ndarray, str]:
    """The first ``bars`` bars of one of the run's test pieces (chosen with ``seed``), in the
    run's pitch range, and the piece's id."""
    import random

    enc: MusicEncoders = loaded.encoders
    split = loaded.run.split_path
    if not split.is_file():
        raise InvalidInputError(f"{loaded.run.path} has no split.json; give --primer FILE")
    from rnnkit.io import read_json

    ids = read_json(split).get("test") or []
    if not ids:
        raise InvalidInputError(f"{loaded.run.path} has no test pieces; give --primer FILE")
    chosen = random.Random(seed or 0).choice(ids)
    data = SPEC.saved_data(loaded.config.get("data", {}))
    refs = [r for r in list_pieces(data.dataset, data.files) if r.id == chosen]
    if not refs:
        raise InvalidInputError(f"test piece {chosen} is no longer in {data.source}")
    pieces, _ = read_pieces(refs, enc.resolution)
    roll, _ = enc.crop(_normalise(pieces[0], enc.common_key))
    return roll[: bars * enc.frames_per_bar], chosen


def primer_from_file(loaded: LoadedRun, path: str | os.PathLike) -> np.ndarray:
    """The music file ``path`` as a primer in the run's pitch range (resolution and key
    handling of the run); notes outside the range are dropped."""
    from rnnkit.data.music import PieceRef

    enc: MusicEncoders = loaded.encoders
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"--primer {path}: no such file")
    if path.suffix.lower() not in EXTENSIONS:
        raise InvalidInputError(f"--primer {path}: not a music file ({', '.join(EXTENSIONS)})")
    pieces, _ = read_pieces([PieceRef(path, path.name)], enc.resolution)
    roll, _ = enc.crop(_normalise(pieces[0], enc.common_key))
    return roll


def generate_piece(
    loaded: LoadedRun,
    out: str | os.PathLike,
    *,
    bars: int = 16,
    temperature: float = 1.0,
    seed: int | None = None,
    primer: str | os.PathLike | None = None,
    primer_bars: int | None = None,
    fmt: str = "midi",
    png: str | os.PathLike | None = None,
    tempo: float = 100.0,
) -> dict:
    """Generate a piece with a trained music run and write it (MIDI or MusicXML) to ``out``
    and its piano roll to ``png`` (both atomically); return the summary.

    ``primer``: a music file to continue; ``primer_bars``: start from the first bars of a test
    piece; neither: start from silence.

    Returns:
        ``{"out", "png", "bars", "frames", "notes", "pitch_low", "pitch_high", "quarters",
        "seconds", "primer", "primer_frames"}`` (pitches as names, duration at ``tempo``).
    """
    enc: MusicEncoders = loaded.encoders
    if primer is not None and primer_bars is not None:
        raise InvalidInputError("give --primer FILE or --primer-bars N, not both")
    source, prime = None, None
    if primer is not None:
        prime, source = primer_from_file(loaded, primer), str(primer)
    elif primer_bars is not None:
        if isinstance(primer_bars, bool) or not isinstance(primer_bars, int) or primer_bars < 1:
            raise InvalidInputError(f"--primer-bars must be >= 1, got {primer_bars!r}")
        if primer_bars > bars:
            raise InvalidInputError(f"--primer-bars {primer_bars} is more than --bars {bars}")
        prime, source = primer_from_test_piece(loaded, primer_bars, seed)
    roll = generate(
        loaded.task,
        bars=bars,
        frames_per_bar=enc.frames_per_bar,
        temperature=temperature,
        seed=seed,
        primer=prime,
    )
    write_score(roll_to_score(roll, enc.low, enc.resolution, tempo=tempo), out, fmt)
    if png is not None:
        plot_roll(png, roll, enc, primer_frames=0 if prime is None else len(prime))
    on = np.flatnonzero(roll.any(axis=0))
    quarters = len(roll) * enc.resolution
    return {
        "out": str(out),
        "png": None if png is None else str(png),
        "bars": bars,
        "frames": len(roll),
        "notes": note_count(roll),
        "pitch_low": pitch_name(enc.low + int(on[0])) if len(on) else None,
        "pitch_high": pitch_name(enc.low + int(on[-1])) if len(on) else None,
        "quarters": quarters,
        "seconds": quarters * 60.0 / tempo,
        "primer": source,
        "primer_frames": 0 if prime is None else len(prime),
    }


def plot_roll(path, roll: np.ndarray, enc: MusicEncoders, *, primer_frames: int = 0) -> None:
    """PNG of a piano roll ``(T, P)``: time in bars across, pitch up; the primer shaded."""

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    T, P = roll.shape
    fig, ax = plt.subplots(figsize=(min(16, 4 + T / 24), 3.5 + P / 24))
    bar = enc.frames_per_bar
    ax.imshow(roll.T, aspect="auto", origin="lower", cmap="Greys", interpolation="nearest",
              extent=(0, T / bar, enc.low - 0.5, enc.low + P - 0.5))  # fmt: skip
    if primer_frames:
        ax.axvspan(0, primer_frames / bar, color="tab:blue", alpha=0.12, label="primer")
        ax.legend(loc="upper right", fontsize=8)
    ticks = [m for m in range(enc.low, enc.low + P) if m % 12 == 0]
    ax.set_yticks(ticks, [pitch_name(m) for m in ticks])
    ax.set_xlabel("bar")
    ax.set_ylabel("pitch")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
