"""seed_everything: one call to seed Python's, numpy's and torch's (CPU and CUDA) random generators."""

from __future__ import annotations

import numbers
import os
import random

import numpy as np
import torch

from ember.errors import ConfigError

__all__ = ["seed_everything"]


def seed_everything(seed: int, deterministic: bool = False) -> int:
    """Seed ``random``, ``numpy``, ``torch`` (all devices) and ``PYTHONHASHSEED`` for new processes.

    This makes a run repeatable on the same machine, software and device for code that draws its
    randomness from these generators (shuffling, dropout, initialisation, augmentation).
    It does not make nondeterministic GPU kernels deterministic: pass ``deterministic=True`` to ask
    torch for deterministic algorithms (slower; ops without one then raise).

    Returns:
        The seed, for logging.

    Example:
        >>> _ = seed_everything(0); a = torch.rand(1)
        >>> _ = seed_everything(0); bool(torch.rand(1) == a)
        True
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ConfigError(f"seed must be an int, got {seed!r}")
    seed = int(seed)  # numpy integers too
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds every CUDA device as well
    os.environ["PYTHONHASHSEED"] = str(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return seed
