"""Resumable, seeded batching for any map-style Dataset (the DataLoader path of exact resume).

``SeededBatchSampler`` yields, for batch ``b`` of epoch ``e``, a :class:`BatchRequest` carrying
``(e, b, indices)``, from a permutation drawn from ``(seed, e)``; it can start at any batch without
reading the ones before. ``SeededDataset`` wraps the user's dataset: DataLoader hands it each request
(``__getitems__``), and it fetches the samples with ``torch``, ``random`` and ``numpy`` seeded from
``(seed, e, b)`` inside a saved-and-restored RNG context. So random augmentation in a Dataset depends
on neither the number of workers nor where training was resumed, and fetching in the main process
does not move the global random streams. Knows torch and numpy only.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ember.data.order import BatchShare, Shard, epoch_generator

__all__ = [
    "BatchRequest",
    "EpochBatchSampler",
    "SeededBatchSampler",
    "SeededDataset",
    "seeded_rng",
]


class BatchRequest(NamedTuple):
    """Which samples batch ``batch`` of epoch ``epoch`` holds."""

    epoch: int
    batch: int
    indices: list[int]


@contextlib.contextmanager
def seeded_rng(seed: int, epoch: int, batch: int) -> Iterator[None]:
    """Seed torch (CPU), ``random`` and numpy from ``(seed, epoch, batch)``; restore them afterwards."""
    saved = torch.get_rng_state(), random.getstate(), np.random.get_state()
    state = int(np.random.SeedSequence([abs(seed), epoch, batch]).generate_state(1, np.uint64)[0])
    torch.default_generator.manual_seed(state % (2**63 - 1))  # CPU only: CUDA streams stay untouched
    random.seed(state)
    np.random.seed(state % 2**32)
    try:
        yield
    finally:
        torch.set_rng_state(saved[0])
        random.setstate(saved[1])
        np.random.set_state(saved[2])


class SeededBatchSampler(Sampler[BatchRequest]):
    """Batches of a permutation drawn from ``(seed, epoch)`` (or in order), resumable at any batch.

    Args:
        size: samples in the dataset.
        batch_size, shuffle, drop_last: as for DataLoader.
        seed: None draws one from torch's global RNG (so ``seed_everything`` controls it).
    """

    def __init__(
        self, size: int, batch_size: int, shuffle: bool, drop_last: bool, seed: int | None = None
    ) -> None:
        self.size, self.batch_size, self.shuffle, self.drop_last = size, batch_size, shuffle, drop_last
        self.seed = int(torch.randint(0, 2**62, ()).item()) if seed is None else int(seed)
        self.epoch = 0
        self.position = 0
        self.shard = Shard()

    def __len__(self) -> int:
        size = self.batch_size * self.shard.world
        return self.size // size if self.drop_last else math.ceil(self.size / size)

    def weights(self, b: int) -> BatchShare:
        """This process's share of global batch ``b`` (see ``Shard``)."""
        return self.shard.weights(self.size, b, self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch; a different one starts from its first batch."""
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def order(self) -> torch.Tensor:
        """This epoch's sample order."""
        if not self.shuffle:
            return torch.arange(self.size)
        return torch.randperm(self.size, generator=epoch_generator(self.seed, self.epoch))

    def _slices(self) -> Iterator[tuple[int, int, torch.Tensor]]:
        """``(epoch, batch, indices)`` from the current position; the next iteration starts the
        following epoch from its first batch."""
        order, start, epoch = self.order(), self.position, self.epoch
        self.position, self.epoch = 0, epoch + 1
        for b in range(start, len(self)):
            yield epoch, b, self.shard.indices(order, b, self.batch_size)[0]

    def __iter__(self) -> Iterator[BatchRequest]:
        for epoch, b, indices in self._slices():
            yield BatchRequest(epoch, b, indices.tolist())

    def state_dict(self) -> dict[str, int]:
        """Seed, epoch and position of the next iteration."""
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue at ``state``'s epoch and batch position."""
        self.seed, self.epoch, self.position = int(state["seed"]), int(state["epoch"]), int(state["position"])


class EpochBatchSampler(SeededBatchSampler):
    """The same batches as :class:`SeededBatchSampler`, as index tensors: they go straight to
    ``GatherDataset.__getitems__`` (one gather, no list of Python ints)."""

    def __iter__(self) -> Iterator[torch.Tensor]:  # type: ignore[override]
        for _, _, indices in self._slices():
            yield indices


class SeededDataset(Dataset):
    """The user's dataset, fetched a batch at a time under per-batch seeding."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]

    def set_epoch(self, epoch: int) -> None:
        """Hand the epoch on to the user's dataset when it takes one (an image folder's errors)."""
        setter = getattr(self.dataset, "set_epoch", None)
        if callable(setter):
            setter(epoch)

    def __getitems__(self, request: BatchRequest | list[int]) -> list[Any]:
        if not isinstance(request, BatchRequest):
            return [self.dataset[i] for i in request]
        with seeded_rng(self.seed, request.epoch, request.batch):
            getitems = getattr(self.dataset, "__getitems__", None)
            if callable(getitems):
                return list(getitems(request.indices))
            return [self.dataset[i] for i in request.indices]
