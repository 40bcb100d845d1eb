"""Splitting datasets and building DataLoaders with good defaults; tensor data batched by one gather.

``loader`` recognises tensor-backed datasets (``TensorDataset``, subsets of one, and datasets with a
``gather_view()`` method) and fetches each batch with one index operation instead of one
``__getitem__`` per sample, its indices drawn by an :class:`EpochBatchSampler` (a permutation from
``(seed, epoch)``). Knows torch and ember.data.device.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset, TensorDataset, random_split

from ember.data.device import epoch_generator
from ember.errors import DataError

__all__ = ["loader", "split"]


def split(dataset: Dataset, sizes: Sequence[float] | Sequence[int], seed: int = 0) -> list[Subset]:
    """Split ``dataset`` at random into parts given as fractions (summing to 1) or counts.

    Fractions are rounded so the sizes add up exactly; the same seed always gives the same parts.

    Example:
        >>> parts = split(TensorDataset(torch.arange(10)), [0.8, 0.2], seed=0)
        >>> [len(p) for p in parts]
        [8, 2]
    """
    n = len(dataset)  # type: ignore[arg-type]
    if not sizes or any(s < 0 for s in sizes):
        raise DataError(f"split sizes must be non-negative, got {list(sizes)}")
    if all(isinstance(s, int) for s in sizes):
        if sum(sizes) != n:
            raise DataError(f"split counts {list(sizes)} add up to {sum(sizes)}, the dataset has {n}")
    elif not math.isclose(sum(sizes), 1.0, abs_tol=1e-6):
        raise DataError(f"split fractions {list(sizes)} add up to {sum(sizes)}, not 1")
    return random_split(dataset, list(sizes), generator=torch.Generator().manual_seed(seed))


class GatherDataset(Dataset):
    """Samples of equal-length tensors, fetched a whole batch at a time by ``__getitems__``."""

    def __init__(self, tensors: Sequence[torch.Tensor], index: torch.Tensor | None = None) -> None:
        self.tensors = tuple(tensors)
        self.index = index

    def __len__(self) -> int:
        return len(self.index) if self.index is not None else len(self.tensors[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        j = int(self.index[i]) if self.index is not None else i
        return tuple(t[j] for t in self.tensors)

    def __getitems__(self, indices: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, ...]:
        rows = indices if isinstance(indices, torch.Tensor) else torch.as_tensor(indices, dtype=torch.long)
        if self.index is not None:
            rows = self.index[rows]
        return tuple(torch.index_select(t, 0, rows) for t in self.tensors)


def _batch_as_is(batch: Any) -> Any:
    return batch


class EpochBatchSampler(Sampler[torch.Tensor]):
    """Yields index tensors, one per batch, from a permutation drawn from ``(seed, epoch)``.

    A tensor of indices goes straight to ``GatherDataset.__getitems__``: no list of Python ints per
    batch. ``set_epoch`` picks the epoch (``Model.fit`` calls it), so the order does not depend on how
    many epochs ran before in this process.
    """

    def __init__(self, size: int, batch_size: int, shuffle: bool, drop_last: bool, seed: int | None) -> None:
        self.size, self.batch_size, self.shuffle, self.drop_last = size, batch_size, shuffle, drop_last
        self.seed = int(torch.randint(0, 2**62, ()).item()) if seed is None else int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose permutation the next iteration uses."""
        self.epoch = epoch

    def __len__(self) -> int:
        n = self.size // self.batch_size
        return n if self.drop_last or self.size % self.batch_size == 0 else n + 1

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self.shuffle:
            order = torch.randperm(self.size, generator=epoch_generator(self.seed, self.epoch))
        else:
            order = torch.arange(self.size)
        for b in range(len(self)):
            yield order[b * self.batch_size : (b + 1) * self.batch_size]
        if self.shuffle:
            self.epoch += 1


class GatherLoader(DataLoader):
    """A DataLoader over a GatherDataset; in one process it skips the per-batch iterator machinery
    (fetcher, profiler ranges) and yields ``dataset.__getitems__(indices)`` directly."""

    def __iter__(self) -> Iterator[Any]:
        if self.num_workers > 0:
            yield from super().__iter__()
            return
        gather = self.dataset.__getitems__  # type: ignore[attr-defined]
        for indices in self.batch_sampler:  # type: ignore[union-attr]
            batch = gather(indices)
            yield tuple(t.pin_memory() for t in batch) if self.pin_memory else batch


def gatherable(dataset: Dataset) -> GatherDataset | None:
    """A batch-gathering view of a tensor-backed dataset, or None for other datasets."""
    if isinstance(dataset, TensorDataset):
        return GatherDataset(dataset.tensors)
    if isinstance(dataset, GatherDataset):
        return dataset
    if isinstance(dataset, Subset):
        inner = gatherable(dataset.dataset)
        if inner is not None:
            index = torch.as_tensor(dataset.indices, dtype=torch.long)
            return GatherDataset(inner.tensors, index if inner.index is None else inner.index[index])
    gather = getattr(dataset, "gather_view", None)
    return gather() if callable(gather) else None


def loader(
    dataset: Dataset,
    batch_size: int = 32,
    shuffle: bool = False,
    num_workers: int = 0,
    pin_memory: bool | None = None,
    drop_last: bool = False,
    seed: int | None = None,
    **kwargs: Any,
) -> DataLoader:
    """A DataLoader with sensible defaults.

    Args:
        dataset: any map-style Dataset; tensor-backed ones are fetched one gather per batch.
        batch_size, shuffle, num_workers, drop_last: as for DataLoader.
        pin_memory: None -> True when CUDA is available.
        seed: seed of the shuffle (None: torch's global RNG).
        kwargs: passed to DataLoader (``collate_fn`` turns the gather fast path off).

    Example:
        >>> dl = loader(TensorDataset(torch.arange(6.0), torch.arange(6)), batch_size=4)
        >>> [len(b[0]) for b in dl]
        [4, 2]
    """
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise DataError("cannot make a loader for an empty dataset")
    common = {
        "num_workers": num_workers,
        "pin_memory": torch.cuda.is_available() if pin_memory is None else pin_memory,
        "persistent_workers": num_workers > 0,
        **kwargs,
    }
    fast = None if "collate_fn" in kwargs or "sampler" in kwargs else gatherable(dataset)
    if fast is not None:
        sampler = EpochBatchSampler(len(fast), batch_size, shuffle, drop_last, seed)
        return GatherLoader(fast, batch_sampler=sampler, collate_fn=_batch_as_is, **common)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, generator=generator, **common
    )
