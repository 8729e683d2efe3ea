"""Default training settings of the character language model (imported by the CLI cheaply).

Chosen so that ``rnnkit train lm --time-budget 180`` (2×256 LSTM, 32 streams × 75 steps) does
the most in three minutes on a 2-core CPU: a peak learning rate well above the usual 2e-3, a
linear warm-up, and cosine annealing to zero over the budget. Measured on the tragedies, 700
Adam steps with cosine annealing, validation loss in nats/char: peak lr 2e-3 -> 1.704,
4e-3 (50 warm-up steps) -> 1.604, 6e-3 (50) -> 1.557, 1e-2 (100) -> 1.515. Windows of 75
characters: in 180 s on a quiet machine, bptt 100 -> 1,202 steps, 21,633 chars/s, 1.4570;
bptt 75 -> 1,602 steps, 21,759 chars/s, 1.4459; bptt 50 -> 2,038 steps, 18,610 chars/s, 1.4447.
"""

LM_DEFAULTS = {"lr": 1e-2, "warmup_steps": 100}
LM_TIME_BUDGET = 180.0  # seconds, when no limit is given
