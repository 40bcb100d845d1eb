"""Short presets of torchvision transforms: the tutorial's augmentation and plain evaluation.

Thin helpers only; the transforms themselves are torchvision's.
"""

from __future__ import annotations

from torchvision import transforms as T

__all__ = ["evaluation", "train_augmentation"]


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
