"""Event tokens of piano rolls: the canonical order, the model's NLL as a distribution over
rolls, greedy frame accuracy and generation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from rnnkit.data.music_events import (
    EventCursor,
    decode_events,
    encode_roll,
    feature_size,
    roll_tokens,
    vocab_size,
)
from rnnkit.tasks.music import (
    EventWindows,
    MusicModel,
    generate,
    greedy_frame_counts,
    piece_batches,
)


def random_roll(T: int, P: int, seed: int, density: float = 0.3) -> np.ndarray:
    return np.random.default_rng(seed).random((T, P)) < density


@pytest.mark.parametrize("seed", range(5))
def test_rolls_and_token_sequences_round_trip(seed):
    roll = random_roll(40, 7, seed)
    events = encode_roll(roll)
    assert np.array_equal(decode_events(events.tokens, 7), roll)
    before = np.concatenate([np.zeros((1, 7), bool), roll[:-1]])
    changes = int((before != roll).sum())
    assert len(events.tokens) == len(roll) + changes  # a step per frame, a token per change
    assert events.frames == len(roll) and events.frame_starts[-1] == len(events.tokens)
    # the true token is always among the allowed ones, and the step always is
    assert events.allowed[np.arange(len(events.tokens)), events.tokens].all()
    assert events.allowed[:, 2 * 7].all()


@pytest.mark.parametrize("before", list(itertools.product([False, True], repeat=3)))
def test_allowed_paths_reach_every_next_frame_exactly_once(before):
    """From any frame, the allowed token paths to the step are in one-to-one correspondence
    with the 2^P next frames, each path the frame's canonical encoding: a softmax over the
    allowed tokens is a distribution over rolls."""
    P, start = 3, np.array(before, bool)

    def cursor_after(tokens):
        cursor = EventCursor(P, start)
        for token in tokens:
            cursor.push(token)
        return cursor

    frames, stack = [], [()]
    while stack:
        prefix = stack.pop()
        for token in np.flatnonzero(cursor_after(prefix).allowed()):
            path = (*prefix, int(token))
            frame = cursor_after(path[:-1]).push(path[-1])
            if frame is None:
                stack.append(path)
                continue
            frames.append(tuple(frame))
            tokens = roll_tokens(np.array([start, frame])).tolist()
            assert tokens[tokens.index(2 * P) + 1 :] == list(path)
    assert len(frames) == 2**P and len(set(frames)) == 2**P


def test_a_token_out_of_order_is_refused():
    cursor = EventCursor(3)
    cursor.push(3 + 2)  # on_2
    with pytest.raises(ValueError, match="canonical order"):
        cursor.push(3 + 1)  # on_1 after on_2
    with pytest.raises(ValueError, match="canonical order"):
        EventCursor(3).push(0)  # off_0 while nothing sounds


def _total_nll(model, roll) -> float:
    batch = next(iter(piece_batches([roll], 1, model.representation)))
    batch = [t.double() if t.is_floating_point() else t for t in batch]
    out = model.step(batch)
    return float(out.loss) * out.count


@pytest.mark.parametrize("representation", ["events", "roll"])
def test_the_models_are_distributions_over_rolls(representation):
    """Σ over every roll of T = 2 frames and P = 2 pitches of exp(-NLL) is 1 in float64: the
    event model's frame NLL is the same quantity as the Bernoulli model's."""
    torch.manual_seed(0)
    model = MusicModel(2, representation=representation, hidden_size=5).double().eval()
    rolls = [np.array(bits, bool).reshape(2, 2) for bits in itertools.product([0, 1], repeat=4)]
    with torch.no_grad():
        total = sum(math.exp(-_total_nll(model, r)) for r in rolls)
    assert total == pytest.approx(1.0, abs=1e-12)


def test_event_loss_is_the_token_nll_by_hand_in_float64():
    torch.manual_seed(1)
    P = 4
    model = MusicModel(P, representation="events", hidden_size=6, cell="gru").double()
    rolls = [random_roll(9, P, 0), random_roll(5, P, 1)]
    sequences = [encode_roll(r) for r in rolls]
    batches = EventWindows(sequences, [(0, 2, 6), (1, 0, 5)], batch_size=2)
    x, y, valid, allowed = next(iter(batches))
    out = model.step((x.double(), y, valid, allowed))
    assert x.shape[-1] == feature_size(P) and allowed.shape[-1] == vocab_size(P)
    expected, frames = 0.0, 0
    for r, start, n in [(0, 2, 6), (1, 0, 5)]:
        q = sequences[r]
        a, e = q.frame_starts[start], q.frame_starts[start + n]
        logits, _ = model(torch.from_numpy(q.features(a, e)).double()[None])
        for i, token in enumerate(q.tokens[a:e]):
            z = logits[0, i].masked_fill(~torch.from_numpy(q.allowed[a + i]), -math.inf)
            expected -= float(torch.log_softmax(z, 0)[token].detach())
        frames += n
    assert out.count == frames == 11
    assert float(out.loss.detach()) * out.count == pytest.approx(expected, rel=1e-10)
    out.loss.backward()  # masked logits still give finite gradients
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def _greedy_by_hand(model, roll) -> np.ndarray:
    """Counts of greedy next-frame predictions, each from a fresh pass over the prefix."""
    P, counts = model.pitches, np.zeros(3)
    q = encode_roll(roll)
    for t in range(len(roll)):
        state = None
        if t:
            prefix = torch.from_numpy(q.features(0, q.frame_starts[t]))[None].double()
            _, state = model(prefix)
        cursor, frame = EventCursor(P, roll[t - 1] if t else None), None
        while frame is None:
            logits, state = model(torch.from_numpy(cursor.features())[None, None].double(), state)
            z = logits[0, -1].masked_fill(~torch.from_numpy(cursor.allowed()), -math.inf)
            frame = cursor.push(int(z.argmax()))
        truth = roll[t]
        counts += [(frame & truth).sum(), (frame & ~truth).sum(), (~frame & truth).sum()]
    return counts


def test_greedy_frame_accuracy_matches_decoding_each_prefix_afresh():
    torch.manual_seed(2)
    model = MusicModel(5, representation="events", hidden_size=8).double().eval()
    rolls = [random_roll(7, 5, 3, 0.4), random_roll(3, 5, 4, 0.4), random_roll(5, 5, 5, 0.4)]
    with torch.no_grad():
        got = greedy_frame_counts(model, rolls)
        expected = sum(_greedy_by_hand(model, r) for r in rolls)
    assert got.tolist() == expected.tolist()


def test_event_generation_is_reproducible_keeps_the_primer_and_carries_the_state():
    torch.manual_seed(3)
    model = MusicModel(6, representation="events", hidden_size=8)
    a = generate(model, bars=2, frames_per_bar=4, seed=5, temperature=0.8)
    assert a.shape == (8, 6) and a.dtype == bool
    assert np.array_equal(a, generate(model, bars=2, frames_per_bar=4, seed=5, temperature=0.8))
    primer = random_roll(3, 6, 7)
    b = generate(model, bars=2, frames_per_bar=4, seed=1, primer=primer)
    assert np.array_equal(b[:3], primer)
    # the tokens drawn one step at a time read the same as one pass over the whole piece
    q = encode_roll(b)
    whole, _ = model(torch.from_numpy(q.features())[None])
    state, steps = None, []
    for i in range(len(q.tokens)):
        out, state = model(torch.from_numpy(q.features(i, i + 1))[None], state)
        steps.append(out)
    assert torch.allclose(torch.cat(steps, dim=1), whole, atol=1e-5)


@pytest.mark.parametrize("representation", ["events", "roll"])
def test_a_piece_streamed_in_chunks_scores_as_one_call(representation):
    """PieceStream.feed over chunks of 5, 1 and 8 frames gives the log-probability of every
    frame, summing to minus the whole piece's NLL; a 128-pitch roll is cropped to the range."""
    from rnnkit.tasks.music import Baselines, MusicEncoders, PieceStream

    torch.manual_seed(0)
    P = 4
    model = MusicModel(P, representation=representation, hidden_size=6).double().eval()
    roll = random_roll(14, P, seed=3)
    encoders = MusicEncoders(60, P, 0.25, 16, False, Baselines.fit([roll]), representation)
    stream = PieceStream(model, encoders)
    chunks = [stream.feed(roll[a:b]) for a, b in [(0, 5), (5, 6), (6, 14)]]
    assert [len(c) for c in chunks] == [5, 1, 8]
    with torch.no_grad():
        whole = _total_nll(model, roll)
    assert -np.concatenate(chunks).sum() == pytest.approx(whole, rel=1e-10)
    stream.reset()
    midi = np.zeros((14, 128), bool)
    midi[:, 60 : 60 + P] = roll
    np.testing.assert_allclose(stream.feed(midi), np.concatenate(chunks), rtol=1e-10)
    midi[0, 10] = True
    with pytest.raises(ValueError, match="outside the run's range"):
        stream.feed(midi)
    with pytest.raises(ValueError, match=r"frames must be \(T, 4\)"):
        stream.feed(np.zeros((3, 7)))
