"""DeviceLoader: batches cut from whole tensors (on the GPU when asked) with one gather each.

The dataset moves to ``device`` once; every epoch's order is a permutation drawn from
``(seed, epoch)`` on that device, and random batch augmentation is seeded from ``(seed, epoch, batch)``
(numpy's SeedSequence mixes the numbers), so what a batch holds depends on neither the process history
nor where training was resumed. ``state_dict`` holds seed, epoch and position. uint8 images stay uint8
on the device until their batch is cut and are then scaled to float32 in [0, 1]; targets and other
uint8 tensors (labels, masks, ids) keep their values (see ``scaled_tensors``). Knows torch and numpy
only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

import torch

from ember.data.order import BatchShare, Shard, epoch_generator
from ember.errors import DataError

__all__ = ["DeviceLoader", "random_crop", "random_flip", "scaled_tensors"]

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

_IMAGE_DIMS = 3  # (N, H, W) or more: (N, C, H, W), (N, C, D, H, W)


def scaled_tensors(tensors: Sequence[torch.Tensor], scale_uint8: bool | Sequence[bool] = True) -> list[bool]:
    """Which of a loader's ``tensors`` are uint8 images, scaled to float32 in [0, 1] per batch.

    With ``scale_uint8=True`` a tensor is scaled when it is uint8, has at least 3 dimensions
    ((N, H, W), (N, C, H, W), ...) and is an input: with two or more tensors the last one is the
    target and is never scaled (class labels, segmentation masks). 1-d and 2-d uint8 inputs (token
    ids, categorical features) keep their values. ``False`` scales nothing; a sequence of bools, one
    per tensor, names the scaled tensors explicitly (each must be uint8).

    Raises:
        DataError: a sequence of the wrong length, or one that marks a tensor that is not uint8.

    Example:
        >>> images = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
        >>> scaled_tensors([images, torch.zeros(4, dtype=torch.uint8)])
        [True, False]
    """
    if isinstance(scale_uint8, bool):
        last = len(tensors) - 1 if len(tensors) > 1 else None
        return [
            scale_uint8 and i != last and t.dtype == torch.uint8 and t.dim() >= _IMAGE_DIMS
            for i, t in enumerate(tensors)
        ]
    chosen = [bool(s) for s in scale_uint8]
    if len(chosen) != len(tensors):
        raise DataError(
            f"scale_uint8 has {len(chosen)} entries for {len(tensors)} tensors; give one per tensor"
        )
    wrong = [
        f"tensor {i} is {t.dtype}"
        for i, (t, s) in enumerate(zip(tensors, chosen, strict=True))
        if s and t.dtype != torch.uint8
    ]
    if wrong:
        raise DataError(
            f"scale_uint8 marks tensors that are not uint8 ({', '.join(wrong)}); only uint8 is scaled"
        )
    return chosen


def random_flip(dim: int = -1, p: float = 0.5) -> Augment:
    """Flip each image of a batch along ``dim`` (default: horizontally) with probability ``p``."""

    def apply(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        chosen = torch.rand(images.shape[0], device=images.device, generator=generator) < p
        mask = chosen.view(-1, *([1] * (images.dim() - 1)))
        return torch.where(mask, images.flip(dim), images)

    return apply


def random_crop(padding: int = 4) -> Augment:
    """Pad each image by ``padding`` (zeros) and cut a random crop of the original size (per image)."""

    def apply(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, _, height, width = images.shape
        padded = torch.nn.functional.pad(images, (padding,) * 4)
        offsets = torch.randint(0, 2 * padding + 1, (2, n), device=images.device, generator=generator)
        rows = (offsets[0].view(n, 1) + torch.arange(height, device=images.device)).view(n, 1, height, 1)
        cols = (offsets[1].view(n, 1) + torch.arange(width, device=images.device)).view(n, 1, 1, width)
        rows = rows.expand(-1, images.shape[1], -1, padded.shape[3])
        cropped_rows = padded.gather(2, rows)
        return cropped_rows.gather(3, cols.expand(-1, images.shape[1], height, -1))

    return apply


class DeviceLoader:
    """Iterate over batches of equal-length tensors held whole on one device.

    Args:
        tensors: one or more tensors with the same first dimension (features, labels, ...).
        batch_size: samples per batch.
        shuffle: a new permutation every epoch, drawn from ``seed`` and the epoch number.
        drop_last: drop the last incomplete batch.
        device: where the data lives (None: leave each tensor where it is).
        seed: the shuffle and augmentation seed; None draws one from torch's global RNG (so
            ``seed_everything`` controls it).
        augment: functions ``(images, generator) -> images`` applied to the first tensor of every batch
            (e.g. ``[random_flip(), random_crop(4)]``), run on the device for the whole batch at once.
        scale_uint8: turn uint8 images into float32 in [0, 1] after the gather and augmentation.
            True: every uint8 input with at least 3 dimensions ((N, H, W), (N, C, H, W)); the
            target (the last tensor, when there are two or more) and 1-d / 2-d uint8 inputs keep
            their dtype and values. False: nothing. A sequence of bools: exactly the tensors marked
            (one entry per tensor, uint8 only), e.g. ``[True, False]`` for flattened (N, 784) images.

    Example:
        >>> loader = DeviceLoader(torch.arange(5), batch_size=2)
        >>> [b[0].tolist() for b in loader]
        [[0, 1], [2, 3], [4]]
    """

    def __init__(
        self,
        *tensors: torch.Tensor,
        batch_size: int = 32,
        shuffle: bool = False,
        drop_last: bool = False,
        device: str | torch.device | None = None,
        seed: int | None = None,
        augment: Sequence[Augment] | Augment | None = None,
        scale_uint8: bool | Sequence[bool] = True,
    ) -> None:
        _check(tensors, batch_size)
        self.tensors = tuple(t if device is None else t.to(device) for t in tensors)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = int(torch.randint(0, 2**62, ()).item()) if seed is None else int(seed)
        self.augment = [augment] if callable(augment) else list(augment or [])
        self.scale_uint8 = scale_uint8
        scaled = scaled_tensors(self.tensors, scale_uint8)
        self._scaled = scaled if any(scaled) else []
        self.epoch = 0
        self.position = 0  # the next batch of the current epoch
        self.shard = Shard()
        # None: yield batches cut now; else batch b is yielded as ``deferred(loader, epoch, b, index)``
        # for a consumer that cuts it later itself (see ember.graphs)
        self.deferred: Callable[[DeviceLoader, int, int, torch.Tensor], Any] | None = None

    @property
    def device(self) -> torch.device:
        """Where the batches are cut."""
        return self.tensors[0].device

    @property
    def num_samples(self) -> int:
        """Samples per epoch before batching."""
        return len(self.tensors[0])

    def __len__(self) -> int:
        n, size = self.num_samples, self.batch_size * self.shard.world
        return n // size if self.drop_last else math.ceil(n / size)

    def weights(self, b: int) -> BatchShare:
        """This process's share of global batch ``b`` (see ``Shard``)."""
        return self.shard.weights(self.num_samples, b, self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose permutation the next iteration uses (from its first batch)."""
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def _order(self) -> torch.Tensor | None:
        if not self.shuffle:
            return None
        generator = epoch_generator(self.seed, self.epoch, device=self.device)
        return torch.randperm(self.num_samples, generator=generator, device=self.device)

    def batch_generator(self, b: int, epoch: int | None = None) -> torch.Generator | None:
        """The generator of batch ``b``'s augmentation in ``epoch`` (default: the current one; None
        without augment)."""
        if not self.augment:
            return None
        return epoch_generator(self.seed, self.epoch if epoch is None else epoch, b, device=self.device)

    def cut(self, index: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """The samples ``index`` gathered from every tensor, augmented with ``generator`` and scaled."""
        return self._finish([torch.index_select(t, 0, index) for t in self.tensors], generator)

    def _finish(
        self, parts: list[torch.Tensor], generator: torch.Generator | None
    ) -> tuple[torch.Tensor, ...]:
        if self.augment:
            for fn in self.augment:
                parts[0] = fn(parts[0], generator)
        if self._scaled:
            parts = [
                p.float().div_(255) if scale else p for p, scale in zip(parts, self._scaled, strict=True)
            ]
        return tuple(parts)

    def batch(self, b: int, order: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """Batch ``b`` of the current epoch (``order`` is the epoch's permutation, if shuffled)."""
        if self.shard.world > 1:
            order = order if order is not None else torch.arange(self.num_samples, device=self.device)
            return self.cut(self.shard.indices(order, b, self.batch_size)[0], self.batch_generator(b))
        if order is not None:  # index_select is cheaper than t[index]
            return self.cut(order[b * self.batch_size : (b + 1) * self.batch_size], self.batch_generator(b))
        parts = [t[b * self.batch_size : (b + 1) * self.batch_size] for t in self.tensors]
        return self._finish(parts, self.batch_generator(b))

    def __iter__(self) -> Iterator[Any]:
        order = self._order()
        if self.deferred is not None and self.shard.world == 1:
            yield from self._deferred(order, self.deferred)
        elif order is not None and self.shard.world == 1 and not self.augment and not self._scaled:
            yield from self._plain(order)  # the common case, with as little per-batch work as possible
        else:
            for b in range(self.position, len(self)):
                self.position = b + 1
                yield self.batch(b, order)
        self.position = 0
        self.epoch += 1

    def _deferred(self, order: torch.Tensor | None, make: Callable[..., Any]) -> Iterator[Any]:
        order = order if order is not None else torch.arange(self.num_samples, device=self.device)
        chunks = order.split(self.batch_size)
        for b in range(self.position, len(self)):
            self.position = b + 1
            yield make(self, self.epoch, b, chunks[b])

    def _plain(self, order: torch.Tensor) -> Iterator[tuple[torch.Tensor, ...]]:
        """Shuffled batches without shards, augmentation or scaling: one gather per tensor."""
        tensors, select = self.tensors, torch.index_select
        chunks = order.split(self.batch_size)[: len(self)]
        for b in range(self.position, len(chunks)):
            self.position = b + 1
            yield tuple(map(partial(select, dim=0, index=chunks[b]), tensors))  # no Python frame per tensor

    def state_dict(self) -> dict[str, int]:
        """Seed, epoch and the next batch's position."""
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a saved position (the next iteration resumes mid-epoch)."""
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])
        self.position = int(state.get("position", 0))


def _check(tensors: Sequence[torch.Tensor], batch_size: int) -> None:
    if not tensors:
        raise DataError("DeviceLoader needs at least one tensor")
    lengths = [len(t) for t in tensors]
    if len(set(lengths)) != 1:
        raise DataError(f"tensors have different lengths: {lengths}")
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
