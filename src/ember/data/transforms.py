"""Short presets of torchvision transforms: the tutorial's augmentation and plain evaluation.

Thin helpers only; the transforms themselves are torchvision's.
"""

from __future__ import annotations

import torch
from torchvision import transforms as T

from ember.errors import DataError

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Uint8ToFloat", "evaluation", "train_augmentation"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def train_augmentation(
    hflip: bool = True, vflip: bool = True, rotation: float = 45.0, size: int | None = None
) -> T.Compose:
    """The tutorial's training transform: random horizontal and vertical flips, a random rotation
    within ``rotation`` degrees, then ``ToTensor`` (optionally resized to ``size`` first).

    Example:
        >>> [type(t).__name__ for t in train_augmentation().transforms]
        ['RandomHorizontalFlip', 'RandomVerticalFlip', 'RandomRotation', 'ToTensor']
    """
    steps: list = [T.Resize(size)] if size else []
    steps += [T.RandomHorizontalFlip()] if hflip else []
    steps += [T.RandomVerticalFlip()] if vflip else []
    steps += [T.RandomRotation(rotation)] if rotation else []
    return T.Compose([*steps, T.ToTensor()])


def evaluation(size: int | None = None) -> T.Compose:
    """The evaluation transform: ``ToTensor`` (optionally resized to ``size`` first)."""
    return T.Compose([*([T.Resize(size)] if size else []), T.ToTensor()])


class Uint8ToFloat:
    """The last step after a uint8 pipeline (``ember.data.decode``): float32 in [0, 1], normalized
    by ``mean`` and ``std``, as one fused ``x * (1 / (255 std)) - mean / std`` (torchvision's
    ``to_dtype`` then ``normalize`` within 1e-6, at under half the per-image cost at 64 x 64).

    Example:
        >>> white = torch.full((3, 2, 2), 255, dtype=torch.uint8)
        >>> round(Uint8ToFloat()(white)[0, 0, 0].item(), 4)  # (1 - 0.485) / 0.229
        2.2489
    """

    def __init__(
        self, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD
    ) -> None:
        self.mean = list(mean)
        self.std = list(std)
        mean_t = torch.tensor(self.mean, dtype=torch.float64).view(-1, 1, 1)
        std_t = torch.tensor(self.std, dtype=torch.float64).view(-1, 1, 1)
        cpu = torch.device("cpu")
        self._factors = {cpu: ((1 / (255 * std_t)).float(), (-mean_t / std_t).float())}

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """``image``: uint8, channels first (``C x H x W`` or a batch ``N x C x H x W``)."""
        channels = len(self.mean)
        if image.dtype != torch.uint8 or image.dim() < 3 or image.shape[-3] != channels:
            raise DataError(
                f"Uint8ToFloat takes uint8 images of {channels} channels, channels first "
                f"(C x H x W or N x C x H x W); got {image.dtype} of shape {tuple(image.shape)}"
            )
        factors = self._factors.get(image.device)
        if factors is None:  # batches decoded on the device: copied there once, not per batch
            factors = tuple(t.to(image.device) for t in self._factors[torch.device("cpu")])
            self._factors[image.device] = factors
        scale, shift = factors
        return torch.addcmul(shift, image.float(), scale)

    def __getstate__(self) -> dict:
        """Pickled (into loader workers) with the CPU factors only."""
        state = dict(self.__dict__)
        state["_factors"] = {torch.device("cpu"): self._factors[torch.device("cpu")]}
        return state
