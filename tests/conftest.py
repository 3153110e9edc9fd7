"""Shared test settings.

Tests use tiny models, for which one intra-op thread is as fast as two; it also keeps the suite
from oversubscribing the 2-core CI machine (OpenMP threads spinning against each other).
"""

import torch

torch.set_num_threads(1)
