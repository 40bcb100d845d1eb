"""Adapt whatever ``fit``/``evaluate``/``predict`` receive into one iterable of batches.

DataLoaders are rebuilt on ember's resumable sampler when their sampler is a standard one (other
iterables are used as they are); Datasets get ``ember.data.loader``, and so do other map-style
objects whose items are mappings or tuples (a Hugging Face ``datasets.Dataset``) and lists of
samples (``(x, y)`` tuples, or dicts holding a number); tensors, arrays and pandas objects become a
:class:`~ember.data.device.DeviceLoader` (left on their device). Errors name what was passed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ember.arguments import check_count
from ember.data.device import DeviceLoader
from ember.data.loading import loader, rebuild
from ember.data.order import Shard
from ember.data.sampler import SeededBatchSampler
from ember.data.tabular import from_arrays
from ember.errors import ConfigError, DataError

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "as_batches",
    "batch_weights",
    "data_state",
    "fit_batches",
    "load_data_state",
    "rewind",
    "set_epoch",
]

DEFAULT_BATCH_SIZE = 32


def as_batches(
    data: Any,
    batch_size: int | None = None,
    shuffle: bool = False,
    what: str = "data",
    shard: Shard | None = None,
) -> Iterable[Any]:
    """An iterable of batches for ``data``.

    Args:
        data: a DataLoader (or any iterable of batches), a Dataset, an object with ``__getitem__``
            and ``__len__`` whose items are mappings or tuples (a Hugging Face ``datasets.Dataset``;
            batched like a Dataset), a list of samples (``(x, y)`` tuples whose target is a number
            or a 0-dim tensor, or mappings holding one, e.g. ``{"ids": ..., "label": 1}``; batched
            like a Dataset; other lists of tuples or dicts are lists of batches), a tensor / array /
            DataFrame, or a tuple ``(x, y)`` of those.
        batch_size: for Datasets and arrays (default 32); an error with a DataLoader, which has its own.
        shuffle: shuffle Datasets and arrays every epoch.
        what: how errors name the data ("training data", ...).
        shard: this process's part of every batch when several processes train together.
    """
    batches = _as_batches(data, batch_size, shuffle, what)
    if shard is not None and shard.world > 1:
        keeper = _position_keeper(batches)
        if keeper is None:
            raise ConfigError(
                f"{what} cannot be split across {shard.world} processes: give fit a Dataset, tensors, a "
                "DeviceLoader or a DataLoader with a standard sampler (not a custom sampler or an "
                "IterableDataset)"
            )
        keeper.shard = shard
        if shard.agree is not None:  # every process must cut the same permutation
            keeper.seed = shard.agree(keeper.seed)
    return batches


def fit_batches(
    train_data: Any,
    validation_data: Any,
    batch_size: int | None,
    shuffle: bool,
    device: torch.device,
    shard: Shard,
    on_device: bool = False,
    augment: Any = None,
) -> tuple[Iterable[Any], Iterable[Any] | None]:
    """The training and validation batches of a fit call (``as_batches``), both held whole on
    ``device`` first with ``on_device``; ``augment`` (DeviceLoader augmentations) needs
    ``on_device``."""
    if on_device:
        from ember.data.resident import resident_loader  # torchvision: loaded only when used

        train_data = resident_loader(train_data, device, batch_size, shuffle, augment, "training data")
        if validation_data is not None:
            validation_data = resident_loader(
                validation_data, device, batch_size, False, None, "validation data"
            )
        batch_size = None
    elif augment is not None:
        raise ConfigError("augment= runs on device-resident batches: pass on_device=True as well")
    train = as_batches(train_data, batch_size, shuffle, "training data", shard)
    if validation_data is None:
        return train, None
    return train, as_batches(validation_data, batch_size, False, "validation data", shard)


def _as_batches(data: Any, batch_size: int | None, shuffle: bool, what: str) -> Iterable[Any]:
    check_count("batch_size", batch_size, 1, allow_none=True)
    if isinstance(data, list) and not data:
        raise DataError(f"{what} is an empty list")
    map_style = _is_map_style(data)  # reads one item: decide once
    if isinstance(data, DataLoader) or (not map_style and _is_batch_iterable(data)):
        if batch_size is not None:
            raise ConfigError(
                f"{what}: batch_size= applies to arrays and Datasets; a DataLoader brings its own batch size"
            )
        return (rebuild(data) or data) if isinstance(data, DataLoader) else data
    size = DEFAULT_BATCH_SIZE if batch_size is None else int(batch_size)  # numpy ints too
    if isinstance(data, Dataset) or map_style or _is_sample_list(data):
        if len(data) == 0:
            raise DataError(f"{what} is an empty Dataset")
        return loader(data, batch_size=size, shuffle=shuffle)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        dataset = from_arrays(data[0], data[1])
    elif data is None:
        raise DataError(f"{what} is None")
    else:
        dataset = from_arrays(data)
    if len(dataset) == 0:
        raise DataError(f"{what} has 0 samples")
    return DeviceLoader(*dataset.tensors, batch_size=size, shuffle=shuffle)


def _is_scalar(value: Any) -> bool:
    """A number or a 0-dim tensor: one sample's target (a batch's target has a batch dimension)."""
    return isinstance(value, (int, float)) or (isinstance(value, torch.Tensor) and value.dim() == 0)


def _is_sample_list(data: Any) -> bool:
    """A list of samples, as a DataLoader would take it: its first item is an ``(x, y)`` sequence
    whose last element is a scalar, or a mapping with a scalar value (``{"ids": ..., "label": 1}``)."""
    if not (isinstance(data, list) and data and isinstance(data[0], (tuple, list, Mapping)) and data[0]):
        return False
    if isinstance(data[0], Mapping):
        return any(_is_scalar(value) for value in data[0].values())
    return _is_scalar(data[0][-1])


def _is_map_style(data: Any) -> bool:
    """An indexable, sized object that is not a torch Dataset, a list or array-like, whose first item
    is a mapping or a tuple (a sample): a Hugging Face ``datasets.Dataset``, with or without
    ``set_format("torch")``."""
    if isinstance(data, (Dataset, DataLoader, torch.Tensor, list, tuple, Mapping, str, bytes)):
        return False
    if hasattr(data, "__array__") or hasattr(data, "to_numpy"):
        return False
    if not (hasattr(type(data), "__getitem__") and hasattr(type(data), "__len__")):
        return False
    try:
        return len(data) > 0 and isinstance(data[0], (Mapping, tuple))
    except (IndexError, KeyError, TypeError):  # not indexed by position
        return False


def _is_batch_iterable(data: Any) -> bool:
    """Iterables of batches that are not array-like (DeviceLoader, generators, custom loaders)."""
    if isinstance(data, list):  # a list of batches, not a list of numbers or of samples
        return isinstance(data[0], (tuple, list, Mapping)) and not _is_sample_list(data)
    if isinstance(data, (torch.Tensor, tuple, dict, str, bytes, Dataset)):
        return False
    if hasattr(data, "__array__") or hasattr(data, "to_numpy"):
        return False
    return isinstance(data, Iterable)


def _position_keeper(batches: Iterable[Any]) -> Any:
    """The object holding seed, epoch and position of ``batches`` (a DeviceLoader, ember's batch
    sampler of a DataLoader), or None for data ember cannot position exactly."""
    if isinstance(batches, DataLoader):
        return batches.batch_sampler if isinstance(batches.batch_sampler, SeededBatchSampler) else None
    keeper = getattr(batches, "position_keeper", None)  # a wrapper of an ember loader
    if callable(keeper):
        return keeper()
    return batches if isinstance(batches, DeviceLoader) else None


def data_state(batches: Iterable[Any], epoch: int, position: int) -> dict[str, int] | None:
    """Where ``batches`` stands after ``position`` batches of ``epoch`` (0-based), for a checkpoint."""
    keeper = _position_keeper(batches)
    if keeper is None:
        return None
    return {**keeper.state_dict(), "epoch": epoch, "position": position}


def load_data_state(
    batches: Iterable[Any], state: dict[str, int] | None, what: str = "training data"
) -> None:
    """Make the next iteration of ``batches`` continue where ``state`` says (no sample re-read)."""
    keeper = _position_keeper(batches)
    if keeper is not None and state is not None:
        keeper.load_state_dict(state)
    elif state is not None and state.get("position", 0) > 0:
        raise ConfigError(
            f"cannot resume {what} in the middle of an epoch: it uses a custom sampler or an "
            "IterableDataset, so ember cannot start it at batch {state['position']}; resume from an "
            "epoch-end checkpoint, or give fit a Dataset or a DataLoader with a standard sampler"
        )


def rewind(batches: Iterable[Any], epoch: int) -> None:
    """Make ``batches`` start at batch 0 of ``epoch`` (0-based) next time, after an epoch that was
    cut short (the loop stopped mid-epoch), so a later evaluate or fit sees whole passes."""
    load_data_state(batches, data_state(batches, epoch, 0))


def batch_weights(batches: Iterable[Any]) -> Any:
    """``b -> (real samples, loss scale)`` of this process's batches when they are sharded, else None."""
    keeper = _position_keeper(batches)
    return keeper.weights if keeper is not None and keeper.shard.world > 1 else None


def set_epoch(batches: Iterable[Any], epoch: int) -> None:
    """Tell ``batches`` (or its sampler) which epoch starts, where it supports ``set_epoch``; a
    DataLoader's dataset too (an image folder names the epoch in its read errors)."""
    targets = [batches.batch_sampler, batches.sampler] if isinstance(batches, DataLoader) else [batches]
    for target in targets:
        setter = getattr(target, "set_epoch", None)
        if callable(setter):
            setter(epoch)
            break
    dataset_setter = getattr(getattr(batches, "dataset", None), "set_epoch", None)
    if isinstance(batches, DataLoader) and callable(dataset_setter):
        dataset_setter(epoch)
