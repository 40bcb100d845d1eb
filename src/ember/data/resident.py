"""Whole datasets on the device: what ``fit(on_device=True)`` trains from.

:func:`resident_loader` turns tensors and arrays, tensor-backed datasets (TensorDataset, datasets
with ``gather_view`` such as TextClassificationDataset), image folders (decoded once into the user's
cache by ``cache_images``) and CachedImages, their Subsets and concatenations, or a DataLoader over
any of these, into a DeviceLoader on the device, after checking that it fits in the device's free
memory. Images stay uint8 there and are scaled per batch (DeviceLoader's rule: uint8 inputs with
at least 3 dimensions; targets keep their values). Knows torch, torchvision and ember.data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, RandomSampler, Subset
from torchvision import datasets
from torchvision import transforms as tv

from ember.data.adapt import DEFAULT_BATCH_SIZE
from ember.data.cachedir import cache_folder
from ember.data.device import Augment, DeviceLoader
from ember.data.images import CachedImages, cache_images
from ember.data.loading import gatherable
from ember.data.tabular import from_arrays
from ember.errors import ConfigError, DataError

__all__ = ["resident_loader"]

_FREE_FRACTION = 0.9  # leave room for the model, its gradients and activations


def resident_loader(
    data: Any,
    device: torch.device,
    batch_size: int | None = None,
    shuffle: bool = True,
    augment: Sequence[Augment] | Augment | None = None,
    what: str = "data",
    cache_dir: str | None = None,
) -> DeviceLoader:
    """A DeviceLoader holding all of ``data`` on ``device`` (see the module docstring).

    A DataLoader or DeviceLoader keeps its batch size, shuffling and ``drop_last``; image folders
    are cached under ``cache_dir`` (default ``~/.cache/ember/images``). Raises DataError for data that
    cannot be held whole (naming it) or does not fit in the free device memory.
    """
    options: dict[str, Any] = {"batch_size": batch_size or DEFAULT_BATCH_SIZE, "shuffle": shuffle}
    if isinstance(data, (DeviceLoader, DataLoader)) and batch_size is not None:
        raise ConfigError(f"{what}: batch_size= applies to arrays and Datasets; a loader brings its own")
    if isinstance(data, DeviceLoader):
        tensors = data.tensors
        options = {"batch_size": data.batch_size, "shuffle": data.shuffle, "seed": data.seed}
        options.update(drop_last=data.drop_last, scale_uint8=data.scale_uint8)
        augment = data.augment if augment is None else augment
    elif isinstance(data, DataLoader):
        if data.batch_size is None:
            raise DataError(f"{what}: a DataLoader with a custom batch_sampler cannot be held on the device")
        tensors = _dataset_tensors(data.dataset, what, cache_dir)
        shuffled = isinstance(data.sampler, RandomSampler)
        options = {"batch_size": data.batch_size, "shuffle": shuffled, "drop_last": data.drop_last}
    elif isinstance(data, Dataset):
        tensors = _dataset_tensors(data, what, cache_dir)
    else:
        pair = isinstance(data, (tuple, list)) and len(data) == 2
        tensors = (from_arrays(data[0], data[1]) if pair else from_arrays(data)).tensors
    _check_fits(tensors, device, what)
    return DeviceLoader(*tensors, device=device, augment=augment, **options)


def _dataset_tensors(dataset: Dataset, what: str, cache_dir: str | None) -> tuple[torch.Tensor, ...]:
    if isinstance(dataset, CachedImages):
        if dataset.transform is not None:
            raise DataError(_transform_message(what, dataset.transform))
        return dataset.images, dataset.labels
    if isinstance(dataset, datasets.DatasetFolder):
        return _folder_tensors(dataset, what, cache_dir)
    if isinstance(dataset, Subset):
        index = torch.as_tensor(dataset.indices, dtype=torch.long)
        return tuple(t[index] for t in _dataset_tensors(dataset.dataset, what, cache_dir))
    if isinstance(dataset, ConcatDataset):
        parts = [_dataset_tensors(d, what, cache_dir) for d in dataset.datasets]
        if len({len(p) for p in parts}) != 1:
            raise DataError(f"{what}: the concatenated datasets give different numbers of tensors")
        return tuple(torch.cat(columns) for columns in zip(*parts, strict=True))
    view = gatherable(dataset)
    if view is None:
        raise DataError(
            f"{what}: fit(on_device=True) holds tensors, arrays, TensorDatasets, datasets with "
            f"gather_view(), image folders and CachedImages (and Subsets / ConcatDatasets of them), "
            f"not a {type(dataset).__name__}; build a DeviceLoader yourself or train without on_device"
        )
    return tuple(view.tensors if view.index is None else (t[view.index] for t in view.tensors))


def _folder_tensors(
    folder: datasets.DatasetFolder, what: str, cache_dir: str | None
) -> tuple[torch.Tensor, torch.Tensor]:
    if not _is_to_tensor(folder.transform):
        raise DataError(_transform_message(what, folder.transform))
    key = hashlib.sha256(str(folder.root).encode()).hexdigest()[:16]
    cached = cache_images(folder, cache_folder("images", cache_dir) / key)
    labels = cached.labels
    if folder.target_transform is not None:
        labels = torch.stack([torch.as_tensor(folder.target_transform(int(y))) for y in labels])
    return cached.images, labels


def _is_to_tensor(transform: Any) -> bool:
    """None, ToTensor, or a Compose of ToTensor only: what decoding to uint8 and scaling reproduces."""
    if transform is None or isinstance(transform, tv.ToTensor):
        return True
    return isinstance(transform, tv.Compose) and all(isinstance(t, tv.ToTensor) for t in transform.transforms)


def _transform_message(what: str, transform: Any) -> str:
    shown = " ".join(repr(transform).split())
    return (
        f"{what}: fit(on_device=True) decodes the images once and cannot run the dataset's transform "
        f"{shown} per sample; remove it and pass on-device augmentation instead, e.g. "
        "augment=[ember.data.random_flip(), ember.data.random_crop(4)] (or train without on_device)"
    )


def _check_fits(tensors: Sequence[torch.Tensor], device: torch.device, what: str) -> None:
    if device.type != "cuda":
        return
    need = sum(t.element_size() * t.numel() for t in tensors)
    free, _ = torch.cuda.mem_get_info(device)
    if need > _FREE_FRACTION * free:
        raise DataError(
            f"{what} needs {need / 2**30:.2f} GiB on {device}, but only {free / 2**30:.2f} GiB are free; "
            "train without on_device=True (ember.data.loader streams batches from host memory)"
        )
