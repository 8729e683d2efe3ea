"""Polyphonic music: corpora, quantisation, the split, metrics and baselines, generation, errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from rnnkit import runs
from rnnkit.cli.main import main
from rnnkit.data import music as m
from rnnkit.tasks.music import (
    Baselines,
    MusicData,
    MusicModel,
    baseline_metrics,
    generate,
    prepare_music,
)
from rnnkit.train import TrainConfig

TINY = {"max_pieces": 5, "val_fraction": 0.2, "test_fraction": 0.2, "window": 16}


@pytest.fixture(scope="module")
def first_pieces():
    """The first two pieces of every packaged collection (parsing is slow: once per module)."""
    return {name: m.read_pieces(m.list_pieces(name)[:2], 0.25)[0] for name in m.COLLECTIONS}


@pytest.fixture(scope="module")
def music_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("music") / "run"
    runs.train_run(
        "music",
        path,
        data=MusicData(**TINY, batch_size=4),
        model={"hidden_size": 16},
        train=TrainConfig(steps=30, eval_every=15, lr=1e-2),
    )
    return path


def test_every_packaged_collection_reads_its_first_pieces(first_pieces):
    for name, pieces in first_pieces.items():
        assert len(pieces) == 2, name
        for piece in pieces:
            assert piece.roll.dtype == bool and piece.roll.shape[1] == 128
            assert piece.roll.sum() > 10 and piece.bar_quarters > 0, (name, piece.ref.id)


def test_abc_files_of_several_tunes_are_one_piece_per_tune():
    refs = m.list_pieces("oneills-1850")
    assert refs[0].id == "0001-0050.abc#1" and refs[0].number == 1
    assert len({r.id for r in refs}) == len(refs)


def test_quantisation_round_trip_through_midi_and_musicxml(tmp_path):
    rng = np.random.default_rng(0)
    roll = np.zeros((48, 128), dtype=bool)
    roll[:, 40:80] = rng.random((48, 40)) < 0.08
    roll[10:30, 60] = True  # a long note beside short ones
    for fmt, name in (("midi", "a.mid"), ("musicxml", "a.musicxml")):
        m.write_score(m.roll_to_score(roll, tempo=90), tmp_path / name, fmt)
        back, _, _ = m.score_to_roll(m.parse_score(tmp_path / name), 0.25)
        assert back.shape == roll.shape and np.array_equal(back, roll), fmt
    assert m.note_count(roll) == len(m.roll_notes(roll))


def test_quantisation_puts_notes_on_the_grid():
    from music21 import note, stream

    part = stream.Part()
    part.insert(0.0, note.Note("C4", quarterLength=1.0))
    part.insert(1.1, note.Note("E4", quarterLength=0.1))  # shorter than a frame: one frame
    roll, bar, sharps = m.score_to_roll(stream.Score([part]), 0.5)
    assert roll.shape == (3, 128) and bar == 4.0 and sharps is None
    assert roll[:2, 60].all() and not roll[2, 60] and roll[2, 64] and roll.sum() == 3


def test_key_shift_moves_the_key_signature_to_c():
    assert [m.key_shift(s) for s in (0, 1, 2, -1, -2, 6)] == [0, 5, -2, -5, 2, 6]
    roll = np.zeros((1, 128), dtype=bool)
    roll[0, 127] = roll[0, 60] = True
    assert np.flatnonzero(m.shift_roll(roll, 2)[0]).tolist() == [62]


def test_split_is_by_piece_and_never_shares_one():
    data = MusicData(max_pieces=6, val_fraction=0.2, test_fraction=0.2, window=16)
    prepared = prepare_music(data, seed=3)
    parts = {k: set(v) for k, v in prepared.split.items()}
    assert all(parts.values())
    assert not (parts["train"] & parts["val"] or parts["train"] & parts["test"]
                or parts["val"] & parts["test"])  # fmt: skip
    ids = [r.id for r in m.list_pieces("bach-chorales")[:6]]
    assert sorted(parts["train"] | parts["val"] | parts["test"]) == sorted(ids)
    again = prepare_music(data, seed=3, encoders=prepared.encoders, split=prepared.split)
    assert again.split == prepared.split and prepare_music(data, seed=4).split != prepared.split


def test_marginal_and_repeat_baselines_by_hand():
    roll = np.array([[1, 0], [1, 1], [0, 1], [0, 0]], dtype=bool)  # 4 frames, 2 pitches
    b = Baselines.fit([roll])
    assert b.marginal.tolist() == [3 / 6, 3 / 6]  # (2 on + 1) / (4 frames + 2)
    # previous frames: silence, [1,0], [1,1], [0,1]: on->on 2 of 4, off->on 2 of 4
    assert b.stay_on == (2 + 1) / (4 + 2) and b.turn_on == (2 + 1) / (4 + 2)
    test = np.array([[1, 0], [0, 0]], dtype=bool)
    got = baseline_metrics([test], b)
    nll = -(math.log(0.5) + 3 * math.log(0.5)) / 2  # every p is 0.5: 4 terms over 2 frames
    assert got["marginal"]["nll"] == pytest.approx(nll, rel=1e-12)
    skewed = Baselines(np.array([0.9, 0.2]), 0.7, 0.1)
    got = baseline_metrics([test], skewed)
    by_hand = -(math.log(0.9) + math.log(0.8) + math.log(0.1) + math.log(0.8)) / 2
    assert got["marginal"]["nll"] == pytest.approx(by_hand, rel=1e-12)
    # marginal predicts pitch 0 always: TP 1, FP 1, FN 0
    assert got["marginal"]["accuracy"] == pytest.approx(0.5)
    # repeat: frame 0 after silence (p 0.1, 0.1), frame 1 after [1,0] (p 0.7, 0.1)
    rep = -(math.log(0.1) + math.log(0.9) + math.log(0.3) + math.log(0.9)) / 2
    assert got["repeat"]["nll"] == pytest.approx(rep, rel=1e-12)
    assert got["repeat"]["accuracy"] == 0.0  # predicts [0,0] then [1,0]: FN 1, FP 1


def test_model_loss_is_the_frame_nll_in_float64():
    torch.manual_seed(0)
    model = MusicModel(pitches=5, hidden_size=6, cell="gru").double()
    y = (torch.rand(3, 7, 5) < 0.3).double()
    x = torch.cat([torch.zeros(3, 1, 5, dtype=torch.float64), y[:, :-1]], dim=1)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[2, 4:] = False
    out = model.step((x, y, mask))
    logits, _ = model(x)
    p = torch.sigmoid(logits)
    nll = -(y * p.log() + (1 - y) * (1 - p).log()).sum(-1)  # (B, T)
    assert out.count == 18
    assert out.loss.item() == pytest.approx(float(nll[mask].sum().detach() / 18), rel=1e-10)
    on, truth = (p > 0.5) & mask[..., None], (y > 0.5) & mask[..., None]
    assert out.stats["tp"] == float((on & truth).sum())
    assert out.stats["fn"] == float((~on & truth).sum())


def test_generation_carries_the_state_one_step_per_frame():
    torch.manual_seed(0)
    model = MusicModel(pitches=4, hidden_size=8)
    a = generate(model, bars=2, frames_per_bar=4, seed=5, temperature=0.7)
    assert a.shape == (8, 4) and np.array_equal(a, generate(model, bars=2, frames_per_bar=4,
                                                             seed=5, temperature=0.7))  # fmt: skip
    primer = a[:3]
    b = generate(model, bars=2, frames_per_bar=4, seed=1, primer=primer)
    assert np.array_equal(b[:3], primer)
    # the state carried step by step equals one pass over the whole piece
    x = torch.cat([torch.zeros(1, 4), torch.from_numpy(b[:-1]).float()])[None]
    whole, _ = model(x)
    state, steps = None, []
    for t in range(8):
        out, state = model(x[:, t : t + 1], state)
        steps.append(out)
    assert torch.allclose(torch.cat(steps, dim=1), whole, atol=1e-6)


def test_run_reports_model_and_both_baselines(music_run, capsys):
    report = json.loads((music_run / "test_metrics.json").read_text())
    assert report["pieces"] == 1 and report["frames"] > 0
    assert set(report["baselines"]) == {"marginal", "repeat"}
    assert 0 <= report["model"]["accuracy"] <= 1 and report["model"]["nll"] > 0
    assert main(["evaluate", str(music_run), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["model"]["nll"] == pytest.approx(report["model"]["nll"], rel=1e-6)
    assert again["baselines"] == report["baselines"]


def test_generate_is_reproducible_and_writes_midi_music21_reads(music_run, tmp_path, capsys):
    base = ["generate", str(music_run), "--bars", "2", "--seed", "7", "--threads", "1"]
    assert main([*base, "--out", str(tmp_path / "a.mid")]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"wrote {tmp_path / 'a.mid'}: 2 bars,") and "notes" in line
    assert main([*base, "--out", str(tmp_path / "b.mid")]) == 0
    assert (tmp_path / "a.mid").read_bytes() == (tmp_path / "b.mid").read_bytes()
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    score = m.parse_score(tmp_path / "a.mid")
    assert len(score.flatten().notes) > 0
    enc = runs.load_run(music_run).encoders
    roll, _, _ = m.score_to_roll(score, 0.25)
    on = np.flatnonzero(roll.any(axis=0))
    assert enc.low <= on[0] and on[-1] < enc.low + enc.pitches
    capsys.readouterr()
    argv = [*base, "--primer-bars", "1", "--format", "musicxml", "--json"]
    assert main([*argv, "--out", str(tmp_path / "c.musicxml")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["primer_frames"] == enc.frames_per_bar and summary["frames"] == 2 * 16
    assert main([*base, "--primer", str(tmp_path / "a.mid"), "--out", str(tmp_path / "d.mid")]) == 0


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_generate_never_overwrites_without_force(music_run, tmp_path, capsys):
    out = tmp_path / "a.mid"
    out.write_bytes(b"mine")
    argv = ["generate", str(music_run), "--bars", "1", "--seed", "1", "--out", str(out)]
    assert main(argv) == 2
    assert "exists; pass --force" in _error_line(capsys) and out.read_bytes() == b"mine"
    assert main([*argv, "--force"]) == 0 and out.read_bytes() != b"mine"


def test_primer_longer_than_bars_is_one_error(music_run, tmp_path, capsys):
    long = np.zeros((40, 128), dtype=bool)
    long[:, 60] = True
    m.write_score(m.roll_to_score(long), tmp_path / "long.mid")
    argv = ["generate", str(music_run), "--bars", "2", "--primer", str(tmp_path / "long.mid")]
    assert main([*argv, "--out", str(tmp_path / "x.mid")]) == 2
    assert "primer has 40 frames" in _error_line(capsys)
    assert not (tmp_path / "x.mid").exists()


def _train(argv, tmp_path):
    base = ["train", "music", "--steps", "2", "--eval-every", "2", "--hidden-size", "4"]
    return main([*base, "--no-progress", "--out", str(tmp_path / "run"), *argv])


def test_unknown_dataset_lists_the_known_ones(tmp_path, capsys):
    assert _train(["--dataset", "mozart"], tmp_path) == 2
    line = _error_line(capsys)
    assert "unknown dataset 'mozart'" in line and "bach-chorales" in line and "nottingham" in line


def test_unparseable_file_is_named_refused_or_skipped(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "broken.mid").write_bytes(b"not a midi file")
    roll = np.zeros((40, 128), dtype=bool)
    roll[::2, 60] = roll[1::2, 64] = True
    for name in ("a.mid", "b.mid", "c.mid"):
        m.write_score(m.roll_to_score(roll), folder / name)
    argv = ["--files", str(folder), "--window", "8", "--val-fraction", "0", "--test-fraction",
            "0.3"]  # fmt: skip
    assert _train(argv, tmp_path) == 2
    line = _error_line(capsys)
    assert "broken.mid" in line and "--on-error skip" in line
    assert not (tmp_path / "run").exists()
    assert _train([*argv, "--on-error", "skip"], tmp_path) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"]["skipped"] == ["broken.mid"] and config["data"]["pieces"] == 3


def test_no_notes_after_quantisation_is_one_error(tmp_path, capsys):
    (tmp_path / "rests.abc").write_text("X:1\nT:rests\nM:4/4\nL:1/4\nK:C\nz4|z4|\n")
    assert _train(["--files", str(tmp_path / "rests.abc")], tmp_path) == 2
    assert "no notes in the 1 piece(s)" in _error_line(capsys)


def test_pieces_shorter_than_one_window_is_one_error(tmp_path, capsys):
    assert _train(["--max-pieces", "3", "--window", "5000"], tmp_path) == 2
    line = _error_line(capsys)
    assert "shorter than one window of --window 5000" in line


def test_parsed_pieces_are_cached_on_disk_and_parsed_again_when_the_file_changes(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("RNNKIT_CACHE_DIR", str(tmp_path / "cache"))
    roll = np.zeros((8, 128), dtype=bool)
    roll[0:4, 60] = roll[4:8, 64] = True
    path = tmp_path / "a.mid"
    m.write_score(m.roll_to_score(roll), path, "midi")
    ref = m.PieceRef(path, "a.mid")
    first = m.read_piece(ref, 0.25)
    (entry,) = (tmp_path / "cache" / "music").glob("*.npz")
    with np.load(entry, allow_pickle=False) as z:  # plain arrays, no pickle
        assert np.array_equal(z["roll"], first.roll)

    def no_parsing(*args, **kwargs):
        raise AssertionError("parsed again")

    m._MEMO.clear()
    monkeypatch.setattr(m, "parse_score", no_parsing)
    again = m.read_piece(ref, 0.25)  # from the cache folder
    assert np.array_equal(again.roll, first.roll) and again.bar_quarters == first.bar_quarters
    assert again.sharps == first.sharps
    m._MEMO.clear()
    roll[0:4, 60] = False
    m.write_score(m.roll_to_score(roll), path, "midi")  # another file: parsed again
    with pytest.raises(AssertionError, match="parsed again"):
        m.read_piece(ref, 0.25)
    monkeypatch.undo()
    monkeypatch.setenv("RNNKIT_CACHE_DIR", str(tmp_path / "cache"))
    m._MEMO.clear()
    assert m.read_piece(ref, 0.25).roll[4:8, 64].all()  # parsed, and cached
    m._MEMO.clear()
    entries = list((tmp_path / "cache" / "music").glob("*.npz"))
    assert len(entries) == 2
    for entry in entries:
        entry.write_bytes(b"not an npz")  # a damaged entry is parsed again, not an error
    assert m.read_piece(ref, 0.25).roll[4:8, 64].all()
    m._MEMO.clear()
    monkeypatch.setenv("RNNKIT_CACHE_DIR", "off")
    assert m.cache_dir() is None
