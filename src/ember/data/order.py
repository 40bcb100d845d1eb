"""Orders and shards of an epoch: the permutation of ``(seed, epoch)`` and each process's part of
every global batch. Shared by DeviceLoader and the DataLoader samplers. Knows torch and numpy only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch

__all__ = ["BatchShare", "Shard", "epoch_generator", "mixed_seed"]


def mixed_seed(seed: int, epoch: int, batch: int | None = None) -> int:
    """The seed of ``(seed, epoch)`` or ``(seed, epoch, batch)``, mixed by numpy's SeedSequence: the
    same numbers always give the same seed, nearby numbers unrelated ones."""
    entropy = [abs(int(seed)), int(epoch)] + ([] if batch is None else [int(batch)])
    state = np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]
    return int(state) % (2**63 - 1)


def epoch_generator(
    seed: int, epoch: int, batch: int | None = None, device: torch.device | str = "cpu"
) -> torch.Generator:
    """A generator seeded with :func:`mixed_seed`."""
    generator = torch.Generator(device=device)
    generator.manual_seed(mixed_seed(seed, epoch, batch))
    return generator


class BatchShare(NamedTuple):
    """This process's share of a global batch: ``real`` samples of the ``total`` in the global
    batch, and the ``loss_scale`` (``real * world / total``) that makes DDP's average of the
    processes' mean losses the exact mean over the global batch."""

    real: int
    loss_scale: float
    total: int


class Shard:
    """This process's part of every global batch: with ``world`` processes and ``batch_size`` samples
    per process, global batch ``b`` holds ``batch_size * world`` consecutive samples of the epoch's
    order, split into ``world`` contiguous parts as evenly as possible (rank order). A process whose
    part of a short last batch is empty gets one padding sample that counts for nothing.

    Example:
        >>> Shard(0, 2).part(5)  # 5 samples in this global batch: rank 0 takes [0, 3)
        (0, 3)
    """

    def __init__(self, rank: int = 0, world: int = 1, agree: Callable[[Any], Any] | None = None) -> None:
        self.rank, self.world = rank, world
        self.agree = agree  # process 0's value of an object, on every process (the shuffle seed)

    def part(self, n: int) -> tuple[int, int]:
        """``[start, stop)`` of this process's samples among the ``n`` of a global batch."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (1 if self.rank < extra else 0)

    def indices(self, order: torch.Tensor, b: int, batch_size: int) -> tuple[torch.Tensor, int]:
        """This process's indices of global batch ``b`` and how many of them are real samples."""
        size = batch_size * self.world
        chunk = order[b * size : (b + 1) * size]
        start, stop = self.part(len(chunk))
        return (chunk[start:stop], stop - start) if stop > start else (chunk[:1], 0)

    def weights(self, total: int, b: int, batch_size: int) -> BatchShare:
        """This process's :class:`BatchShare` of global batch ``b`` (``total`` samples per epoch)."""
        size = batch_size * self.world
        n = min(size, total - b * size)
        start, stop = self.part(n)
        return BatchShare(stop - start, (stop - start) * self.world / n, n)
