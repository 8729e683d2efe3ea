"""``rnnkit evaluate RUN_DIR`` for tagging runs (found by ``rnnkit.cli.evaluate`` by task name).

Scores the run's held-out test sentences (its ``--test`` file or the test part of its saved
split), or ``--data FILE`` in the run's format: token accuracy, accuracy on words unseen in
training, per-tag precision/recall/F1, macro F1, and span F1 for BIO-style tag sets.
"""

from __future__ import annotations

from pathlib import Path


def evaluate(args, run, config) -> dict:
    from rnnkit.data.tagged import read_tagged
    from rnnkit.tasks.tagger import evaluate_tagger, load_tagger, run_test_sentences

    model, vocab, config = load_tagger(run.path)
    if getattr(args, "data", None):
        data = config.get("data", {})
        path = Path(args.data)
        sentences = read_tagged(path, data.get("format", "wordtag"), data.get("column", "upos"))
        vocab.check_tags(sentences, what=f"--data {path}")
        what = f"file {path}"
    else:
        sentences, what = run_test_sentences(run.path, config)
    batch_size = getattr(args, "batch_size", None) or 64
    metrics = evaluate_tagger(model, vocab, sentences, batch_size=batch_size)
    if getattr(args, "json", False):
        return {"data": what, **metrics}
    # Text output: the headline figures, then one line per tag.
    flat = {k: v for k, v in metrics.items() if k not in ("per_tag", "span")}
    if metrics["span"]:
        flat.update({f"span_{k}": v for k, v in metrics["span"].items()})
    for tag, m in metrics["per_tag"].items():
        flat[f"tag {tag}"] = (
            f"P {m['precision']:.4f}  R {m['recall']:.4f}  F1 {m['f1']:.4f}  n {m['support']:,}"
        )
    return {"data": what, **flat}
