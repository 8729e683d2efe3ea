r"""Event tokens of a piano roll: note-off, note-on and step, in one canonical order.

A roll ``R`` of shape ``(T, P)`` (bool) becomes, frame by frame, the changes from the frame
before it (silence before the first)::

    off_k   for every k with R[t-1, k] and not R[t, k], ascending k      token k
    on_k    for every k with R[t, k] and not R[t-1, k], ascending k      token P + k
    step    frame t is complete                                          token 2P

so the vocabulary has ``V = 2P + 1`` tokens and a frame costs one token plus one per change.
The order is canonical, so rolls and token sequences correspond one to one (a pitch that
stops and restarts at a frame boundary is one long note, as in the roll). A model that gives
probability only to the tokens :meth:`EventCursor.allowed` permits — after the step, offs of
sounding pitches and ons of silent ones; after an off, offs above it and any on; after an on,
ons above it; the step always — is a distribution over rolls of a given length, and its negative
log-likelihood per frame is the roll's, comparable with a per-pitch Bernoulli model's.

Each token is predicted from what came before it: the one-hot of the previous token (the step
before the first), the previous frame ``R[t-1]`` and the frame as built so far (``R[t-1]``
with the frame's changes before this token applied), ``F = V + 2P`` features
(:func:`feature_size`).

Example::

    >>> roll = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=bool)
    >>> events = encode_roll(roll)
    >>> events.tokens.tolist()        # on_0 step | on_1 step | off_0 step   (P = 3, step = 6)
    [3, 6, 4, 6, 0, 6]
    >>> bool((decode_events(events.tokens, 3) == roll).all())
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def vocab_size(pitches: int) -> int:
    """``V = 2P + 1``: an off and an on per pitch, and the step."""
    return 2 * pitches + 1


def feature_size(pitches: int) -> int:
    """``F = V + 2P``: previous token one-hot, previous frame, frame so far."""
    return vocab_size(pitches) + 2 * pitches


class EventCursor:
    """Where a token sequence stands: the previous frame, the frame being built, and which
    tokens may come next. :meth:`push` a token; it returns the finished frame at a step.

    >>> c = EventCursor(2)
    >>> c.allowed().tolist()                  # nothing sounds: ons and the step
    [False, False, True, True, True]
    >>> c.push(2), c.push(4)                  # on_0, then the step closes frame 0
    (None, array([ True, False]))
    >>> c.allowed().tolist()                  # off_0, on_1, step
    [True, False, False, True, True]
    """

    def __init__(self, pitches: int, frame: np.ndarray | None = None) -> None:
        self.pitches = pitches
        self.before = np.zeros(pitches, bool) if frame is None else np.array(frame, bool)
        self.current = self.before.copy()
        self.prev_token = 2 * pitches  # the step before the first frame
        self._ons = False  # past the offs of this frame
        self._last = -1  # pitch of the last change in this phase

    @property
    def step_token(self) -> int:
        return 2 * self.pitches

    def allowed(self) -> np.ndarray:
        """``(V,)`` bool: the tokens that keep the sequence canonical."""
        P = self.pitches
        above = np.arange(P) > self._last
        mask = np.zeros(vocab_size(P), bool)
        mask[2 * P] = True
        if self._ons:
            mask[P : 2 * P] = ~self.before & above
        else:
            mask[:P] = self.before & above
            mask[P : 2 * P] = ~self.before
        return mask

    def features(self) -> np.ndarray:
        """``(F,)`` float32: the model's input for the next token."""
        x = np.zeros(feature_size(self.pitches), np.float32)
        V = vocab_size(self.pitches)
        x[self.prev_token] = 1.0
        x[V : V + self.pitches] = self.before
        x[V + self.pitches :] = self.current
        return x

    def push(self, token: int) -> np.ndarray | None:
        """Apply ``token`` (one :meth:`allowed` permits); the completed frame after a step."""
        token, P = int(token), self.pitches
        if not self.allowed()[token]:
            raise ValueError(f"token {token} breaks the canonical order here")
        self.prev_token = token
        if token == 2 * P:
            frame = self.current.copy()
            self.before, self.current = frame, frame.copy()
            self._ons, self._last = False, -1
            return frame
        if token < P:
            self.current[token], self._last = False, token
        else:
            self._ons = True
            self.current[token - P], self._last = True, token - P
        return None


@dataclass
class EventSequence:
    """A roll as tokens, with what a model reads before each (``L`` tokens, ``T`` frames).

    Attributes:
        tokens: ``(L,)`` int64, the targets.
        prev: ``(L,)`` int64, the token before each (the step before the first).
        before: ``(L, P)`` bool, the previous frame.
        current: ``(L, P)`` bool, the frame built so far.
        allowed: ``(L, V)`` bool, the canonical choices at each token (the target among them).
        frame_starts: ``(T + 1,)`` int64, index of each frame's first token (and ``L``).
    """

    tokens: np.ndarray
    prev: np.ndarray
    before: np.ndarray
    current: np.ndarray
    allowed: np.ndarray
    frame_starts: np.ndarray

    @property
    def frames(self) -> int:
        return len(self.frame_starts) - 1

    def features(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """``(L', F)`` float32 inputs of tokens ``start:stop``."""
        stop = len(self.tokens) if stop is None else stop
        P = self.before.shape[1]
        V = vocab_size(P)
        x = np.zeros((stop - start, feature_size(P)), np.float32)
        x[np.arange(stop - start), self.prev[start:stop]] = 1.0
        x[:, V : V + P] = self.before[start:stop]
        x[:, V + P :] = self.current[start:stop]
        return x


def roll_tokens(roll: np.ndarray) -> np.ndarray:
    """The canonical token sequence of ``roll`` ``(T, P)``."""
    roll = np.asarray(roll, bool)
    T, P = roll.shape
    before = np.concatenate([np.zeros((1, P), bool), roll[:-1]])
    out = []
    for prev, frame in zip(before, roll):
        out.extend(np.flatnonzero(prev & ~frame))
        out.extend(P + np.flatnonzero(frame & ~prev))
        out.append(2 * P)
    return np.asarray(out, np.int64)


def encode_roll(roll: np.ndarray) -> EventSequence:
    """:class:`EventSequence` of ``roll`` ``(T, P)``, each token checked by the cursor."""
    roll = np.asarray(roll, bool)
    P = roll.shape[1]
    tokens = roll_tokens(roll)
    L, V = len(tokens), vocab_size(P)
    prev = np.empty(L, np.int64)
    before, current = np.empty((L, P), bool), np.empty((L, P), bool)
    allowed = np.empty((L, V), bool)
    starts = [0]
    cursor = EventCursor(P)
    for i, token in enumerate(tokens):
        prev[i], before[i], current[i] = cursor.prev_token, cursor.before, cursor.current
        allowed[i] = cursor.allowed()
        if cursor.push(token) is not None:
            starts.append(i + 1)
    return EventSequence(tokens, prev, before, current, allowed, np.asarray(starts, np.int64))


def decode_events(tokens: Sequence[int] | np.ndarray, pitches: int) -> np.ndarray:
    """The roll ``(T, P)`` of a canonical token sequence (tokens after the last step are
    an unfinished frame and dropped)."""
    cursor, frames = EventCursor(pitches), []
    for token in tokens:
        frame = cursor.push(token)
        if frame is not None:
            frames.append(frame)
    return np.array(frames, bool).reshape(len(frames), pitches)
