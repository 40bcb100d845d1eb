"""Image batches decoded on the device: loader workers only read file bytes, and each batch is
decoded where the model runs (``torchvision.io.decode_jpeg(list, device="cuda")`` on a GPU, the
CPU decoders elsewhere), then cropped, resized, flipped and normalized there.

:func:`decoded_batches` builds it from an image folder; :class:`DecodedBatches` wraps any ember
loader of encoded images. The random crops and flips of batch ``b`` of epoch ``e`` come from a
generator seeded by ``(seed, e, b)``, and the loader's position is ember's batch sampler's, so a
checkpoint resumes mid-epoch exactly, as with every other ember loader. The same code runs on
the CPU, which is how the tests cover it. Knows torch, torchvision and ember.data.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ember.data.decode import crop_box
from ember.data.order import mixed_seed
from ember.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Uint8ToFloat

__all__ = ["DecodedBatches", "collate_encoded", "decoded_batches", "read_bytes"]


def read_bytes(path: str) -> torch.Tensor:
    """The file's bytes as a uint8 tensor: what a worker does for a batch decoded on the device.
    (Not torchvision's ``read_file``: its tensor lives in a memory map that a worker cannot hand
    to the main process, whose loader then waits forever.)"""
    with open(path, "rb") as file:
        return torch.frombuffer(bytearray(file.read()), dtype=torch.uint8)


def collate_encoded(samples: list[tuple[torch.Tensor, int]]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """``(list of encoded images, labels)``: encoded files differ in length, so they stay a list."""
    return [image for image, _ in samples], torch.tensor([label for _, label in samples])


class DecodedBatches:
    """Batches of ``(float images 3 x size x size, labels)`` on ``device`` from ``batches``, an
    ember loader whose samples are encoded images (``collate_encoded``).

    Args:
        batches: the loader (its batch sampler keeps the position a checkpoint stores).
        size: the side of the square images.
        device: where to decode and augment (default: CUDA when available).
        train: random resized crops and horizontal flips; else the centre square of each image.
        scale, ratio, flip: as for RandomResizedCrop and the flip probability.
    """

    def __init__(
        self,
        batches: Any,
        size: int,
        device: str | torch.device | None = None,
        train: bool = True,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip: float = 0.5,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
    ) -> None:
        self.batches = batches
        self.size = size
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.train = train
        self.scale, self.ratio, self.flip = scale, ratio, flip
        self.to_float = Uint8ToFloat(mean, std)

    def __len__(self) -> int:
        return len(self.batches)

    def position_keeper(self) -> Any:
        """The batch sampler holding seed, epoch and position (what a checkpoint stores)."""
        return self.batches.batch_sampler

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` (0-based) next."""
        self.batches.batch_sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        sampler = self.batches.batch_sampler
        seed, epoch, start = sampler.seed, sampler.epoch, sampler.position
        for b, (encoded, labels) in enumerate(self.batches, start):
            rng = random.Random(mixed_seed(seed, epoch, b))
            images = [self._square(image, rng) for image in _decode(encoded, self.device)]
            yield self.to_float(torch.stack(images)), labels.to(self.device, non_blocking=True)

    def _square(self, image: torch.Tensor, rng: random.Random) -> torch.Tensor:
        """One decoded image (uint8 3 x H x W) -> its crop, resized to ``size`` (and flipped)."""
        from torchvision.transforms.v2.functional import resize

        height, width = image.shape[1:]
        if self.train:
            left, top, w, h = crop_box(width, height, self.scale, self.ratio, rng)
        else:
            side = min(width, height)
            left, top, w, h = (width - side) // 2, (height - side) // 2, side, side
        square = resize(image[:, top : top + h, left : left + w], [self.size, self.size], antialias=True)
        return square.flip(-1) if self.train and rng.random() < self.flip else square


def _decode(encoded: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """uint8 RGB images on ``device``: a batched GPU decode of JPEGs on CUDA, else the CPU decoders."""
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg

    jpegs = all(len(data) > 2 and data[0] == 0xFF and data[1] == 0xD8 for data in encoded)
    if device.type == "cuda" and jpegs:
        return decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
    return [decode_image(data, mode=ImageReadMode.RGB).to(device, non_blocking=True) for data in encoded]


def decoded_batches(
    root: str | Path,
    size: int,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    train: bool = True,
    seed: int | None = None,
    num_workers: int | None = None,
    cache_dir: str | Path | None = None,
) -> DecodedBatches:
    """An image folder read as bytes by the loader's workers and decoded per batch on ``device``:
    ``model.fit(decoded_batches("data/train", 64), ...)``. Shuffled when ``train``."""
    from ember.data.images import image_folder
    from ember.data.loading import loader

    folder = image_folder(root, loader=read_bytes, cache_dir=cache_dir)
    batches = loader(
        folder, batch_size, shuffle=train, seed=seed, num_workers=num_workers, collate_fn=collate_encoded
    )
    return DecodedBatches(batches, size, device, train)
