"""One seed for every source of randomness."""

from __future__ import annotations

import os
import random
import sys

import numpy as np


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, numpy and (if imported) torch; return a numpy Generator for local use.

    torch is only seeded when already imported, so classical runs do not pay its import.
    """
    random.seed(seed)
    np.random.seed(seed)  # legacy global state some libraries still read
    os.environ["PYTHONHASHSEED"] = str(seed)
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
    return np.random.default_rng(seed)
