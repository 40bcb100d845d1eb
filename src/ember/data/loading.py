"""Splitting datasets and building DataLoaders with good defaults; tensor data batched by one gather.

``loader`` recognises tensor-backed datasets (``TensorDataset``, subsets of one, and datasets with a
``gather_view()`` method) and fetches each batch with one index operation instead of one
``__getitem__`` per sample, its indices drawn by an :class:`EpochBatchSampler` (a permutation from
``(seed, epoch)``). Any other map-style object (an object with ``__getitem__`` and ``__len__``,
such as a Hugging Face ``datasets.Dataset``) goes through ember's seeded batch sampler, and its
samples are collated by :func:`collate_samples` (dict samples become dicts of tensors). Knows torch,
ember.data.sampler and ember.errors.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import (
    DataLoader,
    Dataset,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    Subset,
    TensorDataset,
    default_collate,
    random_split,
)

from ember.data.sampler import EpochBatchSampler, SeededBatchSampler, SeededDataset
from ember.errors import DataError

__all__ = [
    "GatherDataset",
    "GatherLoader",
    "collate_samples",
    "default_workers",
    "gatherable",
    "loader",
    "rebuild",
    "split",
]


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


def collate_samples(samples: list[Any]) -> Any:
    """``default_collate``, except for samples that are mappings: each key's values are collated on
    their own, numbers and lists of numbers (what a Hugging Face dataset without
    ``set_format("torch")`` gives) with ``torch.as_tensor`` (int64 / float32, lists stacked, not
    transposed as ``default_collate`` would); other values (tensors, arrays, strings) as
    ``default_collate`` does.

    Raises:
        DataError: lists of numbers of different lengths under one key (they need padding).

    Example:
        >>> batch = collate_samples([{"ids": [1, 2], "label": 0}, {"ids": [3, 4], "label": 1}])
        >>> batch["ids"].tolist(), batch["label"].tolist()
        ([[1, 2], [3, 4]], [0, 1])
    """
    if not samples or not isinstance(samples[0], Mapping):
        return default_collate(samples)
    return {key: _collate_column(key, [sample[key] for sample in samples]) for key in samples[0]}


def _collate_column(key: str, column: list[Any]) -> Any:
    """One key's values of a batch of mapping samples, collated."""
    if not _is_numbers(column[0]):
        return default_collate(column)
    try:
        return torch.as_tensor(column)
    except (ValueError, TypeError, RuntimeError) as exc:
        lengths = sorted({len(v) for v in column if isinstance(v, (list, tuple))})
        raise DataError(
            f"the samples' {key!r} values cannot be stacked into one tensor (lengths "
            f"{lengths[0]} to {lengths[-1]}): pad them to one length (e.g. tokenizer(..., "
            "padding='max_length', truncation=True)), or give fit a DataLoader whose collate_fn pads "
            "(e.g. transformers.DataCollatorWithPadding)"
            if len(lengths) > 1
            else f"the samples' {key!r} values cannot be made one tensor: {exc}"
        ) from exc


def _is_numbers(value: Any) -> bool:
    """A Python number, or a (nested) list or tuple whose first leaf is one."""
    while isinstance(value, (list, tuple)) and value:
        value = value[0]
    return isinstance(value, (int, float))


def _batch_as_is(batch: Any) -> Any:
    return batch


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
    num_workers: int | None = None,
    pin_memory: bool | None = None,
    drop_last: bool = False,
    seed: int | None = None,
    **kwargs: Any,
) -> DataLoader:
    """A DataLoader with sensible defaults.

    Args:
        dataset: any map-style Dataset, or an object with ``__getitem__`` and ``__len__`` (a
            Hugging Face ``datasets.Dataset``); tensor-backed ones are fetched one gather per batch.
        batch_size, shuffle, drop_last: as for DataLoader.
        num_workers: worker processes; None -> :func:`default_workers` (image folders get
            workers, other datasets none).
        pin_memory: None -> True when CUDA is available.
        seed: seed of the shuffle (None: torch's global RNG).
        kwargs: passed to DataLoader; ``collate_fn`` defaults to :func:`collate_samples` (giving
            one turns the gather fast path off).

    Example:
        >>> dl = loader(TensorDataset(torch.arange(6.0), torch.arange(6)), batch_size=4)
        >>> [len(b[0]) for b in dl]
        [4, 2]
    """
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise DataError("cannot make a loader for an empty dataset")
    num_workers = default_workers(dataset) if num_workers is None else num_workers
    common = {
        "num_workers": num_workers,
        "pin_memory": torch.cuda.is_available() if pin_memory is None else pin_memory,
        "persistent_workers": num_workers > 0,
        **kwargs,
    }
    if common.get("collate_fn") is None:
        common["collate_fn"] = collate_samples
    if "sampler" in kwargs or "batch_sampler" in kwargs:  # the caller's own sampling: used as it is
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, **common)
    fast = gatherable(dataset) if common["collate_fn"] is collate_samples else None
    if fast is not None:
        sampler = EpochBatchSampler(len(fast), batch_size, shuffle, drop_last, seed)
        common["collate_fn"] = _batch_as_is
        return GatherLoader(fast, batch_sampler=sampler, generator=_generator(sampler.seed), **common)
    batches = SeededBatchSampler(len(dataset), batch_size, shuffle, drop_last, seed)  # type: ignore[arg-type]
    return DataLoader(
        SeededDataset(dataset, batches.seed),
        batch_sampler=batches,
        generator=_generator(batches.seed),
        **common,
    )


def default_workers(dataset: Any) -> int:
    """The worker count ``loader`` picks: ``min(8, CPUs - 1)`` (at least 1) for a dataset that
    decodes a file per sample (torchvision's DatasetFolder family, ember's image folders, their
    Subsets), where decoding in the main process would starve the training step; 0 for everything
    else (tensor data is one gather per batch, and a custom dataset may not survive pickling)."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    folder = getattr(sys.modules.get("torchvision.datasets.folder"), "DatasetFolder", None)
    if folder is None or not isinstance(dataset, folder):  # no torchvision loaded: not a folder
        return 0
    return max(1, min(8, (os.cpu_count() or 1) - 1))


def _generator(seed: int) -> torch.Generator:
    """DataLoader draws its workers' base seed from this, not from the global RNG."""
    return torch.Generator().manual_seed(seed % (2**63 - 1))


def rebuild(dl: DataLoader, seed: int | None = None) -> DataLoader | None:
    """The same loader (dataset, batch size, collate, workers, pin memory) on ember's resumable,
    seeded sampler; None when that cannot be done faithfully (an IterableDataset or a custom sampler).
    The default collate becomes :func:`collate_samples`: the same batches, except that dict samples
    holding lists of numbers (a Hugging Face dataset without ``set_format("torch")``) are stacked
    into tensors instead of transposed into lists of tensors."""
    if isinstance(dl.batch_sampler, SeededBatchSampler):
        return dl
    if isinstance(dl.dataset, IterableDataset) or dl.batch_size is None:
        return None
    sampler = dl.sampler
    if isinstance(sampler, RandomSampler) and not sampler.replacement and sampler._num_samples is None:
        shuffle = True
    elif isinstance(sampler, SequentialSampler):
        shuffle = False
    else:
        return None
    if seed is None:  # a generator the user seeded keeps deciding the order
        generator = getattr(sampler, "generator", None) or dl.generator
        seed = generator.initial_seed() if generator is not None else None
    options: dict[str, Any] = {"worker_init_fn": dl.worker_init_fn, "timeout": dl.timeout}
    if dl.collate_fn is not default_collate:
        options["collate_fn"] = dl.collate_fn
    if dl.num_workers > 0:
        options.update(prefetch_factor=dl.prefetch_factor, multiprocessing_context=dl.multiprocessing_context)
    return loader(
        dl.dataset, dl.batch_size, shuffle, dl.num_workers, dl.pin_memory, dl.drop_last, seed, **options
    )
