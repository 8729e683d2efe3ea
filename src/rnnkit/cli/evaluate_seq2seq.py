"""``rnnkit evaluate RUN_DIR`` for seq2seq runs (found by ``rnnkit.cli.evaluate`` by task name).

Scores the run's held-out test pairs (its ``--test`` file or the test part of its saved split),
or ``--data FILE`` (SOURCE<TAB>TARGET lines): teacher-forced loss, then exact match, character
accuracy and character BLEU-4 of greedy decoding, or of beam search with ``--beam K``.
"""

from __future__ import annotations

from pathlib import Path

from rnnkit.cli.main import UsageError


def evaluate(args, run, config) -> dict:
    from rnnkit.data.pairs import read_pairs
    from rnnkit.tasks.seq2seq import evaluate_pairs, load_seq2seq, run_test_pairs

    model, vocab, config = load_seq2seq(run.path)
    beam = getattr(args, "beam", None) or 1
    if beam < 1:
        raise UsageError(f"--beam must be >= 1, got {beam}")
    if getattr(args, "data", None):
        path = Path(args.data)
        pairs, what = read_pairs(path), f"file {path}"
    else:
        pairs, what = run_test_pairs(run.path, config)
    batch_size = getattr(args, "batch_size", None) or 256
    metrics = evaluate_pairs(model, vocab, pairs, beam=beam, batch_size=batch_size)
    metrics.pop("predictions")
    return {"data": what, **metrics}
