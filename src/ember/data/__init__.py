"""ember.data: datasets from tensors, image folders and text, loaders, and GPU-resident batches.

Everything here builds on PyTorch's own types (Dataset, DataLoader, TensorDataset, torchvision's
ImageFolder and transforms); nothing here knows about training.
"""

from ember.data import transforms
from ember.data.adapt import as_batches
from ember.data.device import DeviceLoader, random_crop, random_flip
from ember.data.images import CachedImages, cache_images, image_folder
from ember.data.loading import loader, split
from ember.data.resident import resident_loader
from ember.data.tabular import from_arrays, to_tensor
from ember.data.text import Vocabulary, clean, encode
from ember.data.text_dataset import TextClassificationDataset

__all__ = [
    "CachedImages",
    "DeviceLoader",
    "TextClassificationDataset",
    "Vocabulary",
    "as_batches",
    "cache_images",
    "clean",
    "encode",
    "from_arrays",
    "image_folder",
    "loader",
    "random_crop",
    "random_flip",
    "resident_loader",
    "split",
    "to_tensor",
    "transforms",
]
