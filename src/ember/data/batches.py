"""TensorBatches: batches cut from in-memory tensors with one gather each, reproducibly shuffled.

The order of epoch ``e`` is a permutation drawn from ``(seed, e)``, so it does not depend on how many
epochs ran before in this process; ``state_dict`` holds the epoch and position. Knows torch only.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from ember.errors import DataError

__all__ = ["TensorBatches", "epoch_generator"]


def epoch_generator(seed: int, epoch: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded from ``(seed, epoch)``: the same pair always gives the same stream."""
    generator = torch.Generator(device=device)
    generator.manual_seed((seed * 1_000_003 + epoch) % (2**63 - 1))
    return generator


class TensorBatches:
    """Iterate over tuples of batch slices of equal-length tensors.

    Args:
        tensors: one or more tensors with the same first dimension.
        batch_size: samples per batch.
        shuffle: a new permutation every epoch (from ``seed`` and the epoch number).
        drop_last: drop the last incomplete batch.
        seed: the shuffle seed; None draws one from torch's global RNG (so ``seed_everything``
            controls it).

    Example:
        >>> tb = TensorBatches(torch.arange(5), batch_size=2)
        >>> [b[0].tolist() for b in tb]
        [[0, 1], [2, 3], [4]]
    """

    def __init__(
        self,
        *tensors: torch.Tensor,
        batch_size: int = 32,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int | None = None,
    ) -> None:
        if not tensors:
            raise DataError("TensorBatches needs at least one tensor")
        lengths = {len(t) for t in tensors}
        if len(lengths) != 1:
            raise DataError(f"tensors have different lengths: {[len(t) for t in tensors]}")
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = int(torch.randint(0, 2**62, ()).item()) if seed is None else seed
        self.epoch = 0

    @property
    def num_samples(self) -> int:
        """Samples per epoch before batching."""
        return len(self.tensors[0])

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose permutation the next iteration uses."""
        self.epoch = epoch

    def _order(self) -> torch.Tensor | None:
        if not self.shuffle:
            return None
        generator = epoch_generator(self.seed, self.epoch)
        return torch.randperm(self.num_samples, generator=generator).to(self.tensors[0].device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        order = self._order()
        size = self.batch_size
        for b in range(len(self)):
            if order is None:
                yield tuple(t[b * size : (b + 1) * size] for t in self.tensors)
            else:
                index = order[b * size : (b + 1) * size]
                yield tuple(t[index] for t in self.tensors)

    def state_dict(self) -> dict[str, int]:
        """Seed and epoch."""
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore seed and epoch."""
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])
