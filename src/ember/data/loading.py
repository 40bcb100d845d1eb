"""Splitting datasets and building DataLoaders with good defaults; tensor data batched by one gather.

``loader`` recognises tensor-backed datasets (``TensorDataset``, subsets of one, and datasets with a
``gather(indices)`` method) and fetches each batch with one index operation instead of one
``__getitem__`` per sample. Knows torch only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset, random_split

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

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, ...]:
        rows = torch.as_tensor(indices)
        if self.index is not None:
            rows = self.index[rows]
        return tuple(t[rows] for t in self.tensors)


def _batch_as_is(batch: Any) -> Any:
    return batch


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
    fast = None if "collate_fn" in kwargs else gatherable(dataset)
    if fast is not None:
        dataset, kwargs["collate_fn"] = fast, _batch_as_is
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        drop_last=drop_last,
        persistent_workers=num_workers > 0,
        generator=generator,
        **kwargs,
    )
