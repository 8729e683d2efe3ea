"""Default training settings of the character language model (imported by the CLI cheaply).

Chosen so that ``rnnkit train lm --time-budget 180`` (2×256 LSTM, 32 streams × 100 steps) does
the most in three minutes on a 2-core CPU: a peak learning rate well above the usual 2e-3, a
linear warm-up, and cosine annealing to zero over the budget. Measured on the tragedies, 700
Adam steps with cosine annealing, validation loss in nats/char: peak lr 2e-3 -> 1.704,
4e-3 (50 warm-up steps) -> 1.604, 6e-3 (50) -> 1.557, 1e-2 (100) -> 1.515.
"""

LM_DEFAULTS = {"lr": 1e-2, "warmup_steps": 100}
