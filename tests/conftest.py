"""Suite-wide settings."""

import torch

# The test models are tiny: one thread avoids threading overhead and oversubscription when the
# machine is shared. Benchmarks, not tests, measure speed.
torch.set_num_threads(1)
