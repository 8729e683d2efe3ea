"""Default training settings of the character language model (imported by the CLI cheaply).

Chosen so that ``rnnkit train lm --time-budget 180`` (2×256 LSTM, 32 streams × 100 steps) does
the most in three minutes on a 2-core CPU: a higher peak learning rate than the usual 2e-3,
a short linear warm-up, and cosine annealing to zero over the budget.
"""

LM_DEFAULTS = {"lr": 4e-3, "warmup_steps": 50}
