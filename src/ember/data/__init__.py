"""ember.data: datasets from tensors, image folders and text, loaders, and GPU-resident batches.

Everything here builds on PyTorch's own types (Dataset, DataLoader, TensorDataset, torchvision's
ImageFolder and transforms); nothing here knows about training. Names load on first use (PEP 562),
so ``import ember`` does not pay for torchvision or pandas until an image or text helper is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names below, for type checkers and editors
    from ember.data import transforms as transforms
    from ember.data.adapt import as_batches as as_batches
    from ember.data.device import DeviceLoader as DeviceLoader
    from ember.data.device import random_crop as random_crop
    from ember.data.device import random_flip as random_flip
    from ember.data.images import CachedImages as CachedImages
    from ember.data.images import cache_images as cache_images
    from ember.data.images import image_folder as image_folder
    from ember.data.loading import loader as loader
    from ember.data.loading import split as split
    from ember.data.resident import resident_loader as resident_loader
    from ember.data.tabular import from_arrays as from_arrays
    from ember.data.tabular import to_tensor as to_tensor
    from ember.data.text import Vocabulary as Vocabulary
    from ember.data.text import clean as clean
    from ember.data.text import encode as encode
    from ember.data.text_dataset import TextClassificationDataset as TextClassificationDataset

_WHERE = {
    "as_batches": "adapt",
    "DeviceLoader": "device",
    "random_crop": "device",
    "random_flip": "device",
    "CachedImages": "images",
    "cache_images": "images",
    "image_folder": "images",
    "loader": "loading",
    "split": "loading",
    "resident_loader": "resident",
    "from_arrays": "tabular",
    "to_tensor": "tabular",
    "Vocabulary": "text",
    "clean": "text",
    "encode": "text",
    "TextClassificationDataset": "text_dataset",
}

__all__ = sorted([*_WHERE, "transforms"], key=str.lower)


def __getattr__(name: str) -> Any:
    """Load a public name's module on first use (``transforms`` is the submodule itself)."""
    if name == "transforms":
        return importlib.import_module("ember.data.transforms")
    if name not in _WHERE:
        raise AttributeError(f"module 'ember.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ember.data.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
