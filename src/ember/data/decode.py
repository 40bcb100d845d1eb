"""Image loaders that decode only what training uses: ``loader=`` of ``ember.data.image_folder``.

:class:`RandomResizedCropDecode` draws the random resized crop from the image's size (its header)
before decoding, so a JPEG is decoded at the smallest DCT scale that still covers the crop with at
least ``size`` pixels a side (libjpeg's scaled decode through PIL's ``draft``: 1/2, 1/4 or 1/8 of
each side, 4 to 64 times fewer pixels), then cropped and resized in one call, and flipped. Its
randomness is torch's, so ember's per-batch seeding makes it repeat exactly on resume.
:class:`ResizeDecode` is the evaluation counterpart (shorter side to ``size``, centre crop).
Both return uint8 ``3 x size x size`` tensors: conversion to float and normalization come last
(``Uint8ToFloat``). Knows PIL, numpy and torch.
"""

from __future__ import annotations

import io
import math
import random
from typing import Any

import numpy as np
import torch
from torchvision.transforms.v2.functional import resize

from ember.data.image_header import Header, read_header

__all__ = ["RandomResizedCropDecode", "ResizeDecode", "crop_box"]

_HEADER_BYTES = 1 << 16


def crop_box(
    width: int,
    height: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    rng: random.Random | None = None,
) -> tuple[int, int, int, int]:
    """``(left, top, crop width, crop height)`` of a random resized crop of a ``width x height``
    image, drawn as torchvision's RandomResizedCrop draws it (10 tries, then the centre), from
    ``rng`` (default: Python's ``random``, which ember's per-batch seeding seeds)."""
    draw: Any = random if rng is None else rng  # the module's functions are its generator's methods
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * draw.uniform(scale[0], scale[1])
        aspect = math.exp(draw.uniform(log_ratio[0], log_ratio[1]))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return draw.randint(0, width - w), draw.randint(0, height - h), w, h
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        w, h = round(height * max(ratio)), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


class RandomResizedCropDecode:
    """``path -> uint8 3 x size x size``: a random resized crop (and a horizontal flip with
    probability ``flip``), decoded at a reduced scale when the crop allows.

    Example:
        >>> folder = image_folder("data/train", loader=RandomResizedCropDecode(64))  # doctest: +SKIP
    """

    def __init__(
        self,
        size: int,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip: float = 0.5,
    ) -> None:
        self.size = size
        self.scale = scale
        self.ratio = ratio
        self.flip = flip

    def __call__(self, path: str) -> torch.Tensor:
        with open(path, "rb") as file:
            data = file.read()
        header = read_header(io.BytesIO(data))
        if header is None or header.width is None or header.height is None:
            image = _decode(data)  # a format whose header does not give the size cheaply
            header = Header("?", image.shape[2], image.shape[1])
        left, top, w, h = crop_box(header.width, header.height, self.scale, self.ratio)
        reduce = _reduction(min(w, h), self.size)
        if reduce > 1 and header.format == "JPEG":  # decode at 1/reduce of each side
            crop = _scaled_crop(data, (left, top, w, h), reduce, self.size)
        else:
            image = _decode(data)
            crop = resize(image[:, top : top + h, left : left + w], [self.size, self.size], antialias=True)
        if self.flip and random.random() < self.flip:
            crop = crop.flip(-1)
        return crop


class ResizeDecode:
    """``path -> uint8 3 x size x size``: the shorter side resized to ``size`` and the centre
    cropped (decoded at a reduced scale when the image is at least twice as large)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, path: str) -> torch.Tensor:
        from PIL import Image

        with Image.open(path) as image:
            width, height = image.size
            short = min(width, height)
            reduce = _reduction(short, self.size)
            if reduce > 1 and image.format == "JPEG":
                image.draft("RGB", (math.ceil(width / reduce), math.ceil(height / reduce)))
            image = image.convert("RGB")
            sx, sy = image.size[0] / width, image.size[1] / height
            left, top = (width - short) / 2, (height - short) / 2
            box = (left * sx, top * sy, (left + short) * sx, (top + short) * sy)
            crop = image.resize((self.size, self.size), Image.BILINEAR, box=box)
        return _tensor(crop)


def _reduction(crop_side: int, size: int) -> int:
    """The JPEG scale divisor (8 or 4) that keeps ``crop_side`` at least ``size``, or 1. A scaled
    decode goes through PIL, whose per-image cost beats torchvision's full-size decode only from a
    reduction of 4 on (measured on 96-320 px JPEGs: at 1/2 PIL is slower)."""
    for divisor in (8, 4):
        if crop_side / divisor >= size:
            return divisor
    return 1


def _decode(data: bytes) -> torch.Tensor:
    """uint8 ``3 x H x W`` of encoded ``data``: torchvision's decoders (libjpeg-turbo, libpng,
    libwebp) for JPEG, PNG and WEBP, PIL for the other formats; a damaged file is an OSError, as
    PIL reports it, so ``image_folder``'s ``on_bad_file`` applies."""
    from torchvision.io import ImageReadMode, decode_image

    header = read_header(io.BytesIO(data[:_HEADER_BYTES]))
    if header is None or header.format not in ("JPEG", "PNG", "WEBP"):
        return _tensor(_pil_rgb(data))
    try:
        image = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    except RuntimeError as exc:
        raise OSError(f"cannot decode the {header.format} data: {exc}") from exc
    if image.dtype != torch.uint8:  # a 16-bit PNG
        image = (image.float() * (255 / 65535)).round().to(torch.uint8)
    return image


def _pil_rgb(data: bytes) -> Any:
    """A PIL RGB image (its first frame) of encoded ``data``."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def _scaled_crop(data: bytes, box: tuple[int, int, int, int], reduce: int, size: int) -> torch.Tensor:
    """The ``box`` (left, top, width, height in full-size pixels) of a JPEG decoded at 1/``reduce``
    of each side (libjpeg's scaled decode, through PIL's draft), resized to ``size``."""
    from PIL import Image

    left, top, w, h = box
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        image.draft("RGB", (math.ceil(width / reduce), math.ceil(height / reduce)))
        image = image.convert("RGB")
        sx, sy = image.size[0] / width, image.size[1] / height
        crop = image.resize(
            (size, size), Image.BILINEAR, box=(left * sx, top * sy, (left + w) * sx, (top + h) * sy)
        )
    return _tensor(crop)


def _tensor(image: object) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)  # a writable copy; HWC -> CHW view
