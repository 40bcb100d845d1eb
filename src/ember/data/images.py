"""Image folders on torchvision's ImageFolder, with bad files found up front, and a decoded cache.

``image_folder`` checks the files when it is built (``ember.data.scan``: every header by default,
cached, so a second build costs a listing; a zero-byte, non-image or mislabelled file raises
DataError naming it, or is skipped and counted); an image whose pixel data fails later, when read,
raises DataError naming the file, the epoch and the worker instead of a bare PIL error.
``cache_images`` decodes a folder once into a uint8 N x C x H x W ``.npy`` (memory-mapped on load).
Knows torch, torchvision, PIL and numpy; nothing about training.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.datasets.folder import IMG_EXTENSIONS

from ember.data.scan import failures_file, read_failures, record_failure, scan_images
from ember.errors import DataError

__all__ = ["CachedImages", "ImageFolder", "cache_images", "image_folder"]


class ImageFolder(datasets.ImageFolder):
    """torchvision's ImageFolder over the files a scan accepted.

    An image that fails to decode when read raises DataError naming the file, the epoch (when the
    loader told it, through ``set_epoch``) and the worker; with ``on_bad_file="skip"`` it is
    replaced by another image of its class, the same one whatever the worker count or a resume
    (chosen from the index alone), with a warning once per epoch. ``skipped`` lists ``(path,
    reason)`` of the files left out at build and of those that failed when read (in any worker:
    failures are appended to ``failures``, a file beside the scan cache, which the next build of
    the folder also reads, so they are left out from the start).
    """

    def __init__(
        self,
        root: str,
        samples: list[tuple[str, str]],
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
        on_bad_file: str = "error",
        failures: Path | None = None,
        loader: Callable[[str], Any] | None = None,
    ) -> None:
        self._scanned = samples  # (path, class name), as make_dataset returns them
        self._epoch = torch.full((), -1, dtype=torch.int64).share_memory_()  # persistent workers see it
        self.on_bad_file = on_bad_file
        self.failures = failures
        self.skipped_at_build: list[tuple[str, str]] = []
        self._warned: set[tuple[int | None, str]] = set()
        self._by_class: dict[int, list[int]] | None = None
        super().__init__(root, transform, target_transform, **({} if loader is None else {"loader": loader}))

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """``(path, reason)`` of every file left out: at build, then when read (any process)."""
        at_build = self.skipped_at_build
        known = {path for path, _ in at_build}
        return at_build + [(path, why) for path, why in read_failures(self.failures) if path not in known]

    def make_dataset(  # type: ignore[override]
        self, directory: str, class_to_idx: dict[str, int], *args: Any, **kwargs: Any
    ) -> list[tuple[str, int]]:
        """The scanned files (no second walk of the folder)."""
        return [(path, class_to_idx[name]) for path, name in self._scanned]

    @property
    def epoch(self) -> int | None:
        """The epoch being read (0-based; None until a loader says), named in read errors."""
        value = int(self._epoch)
        return None if value < 0 else value

    @epoch.setter
    def epoch(self, epoch: int | None) -> None:
        self._epoch.fill_(-1 if epoch is None else epoch)

    def set_epoch(self, epoch: int) -> None:
        """Say which epoch is read. The value lives in shared memory, so workers that outlive an
        epoch (``persistent_workers=True``) name the right one too."""
        self._epoch.fill_(epoch)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        sample = self._load(index)  # only reading the file is guarded: a transform's error is the user's
        target = self.targets[index]  # a replacement is of the same class
        if self.transform is not None:
            sample = self.transform(sample)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return sample, target

    def _load(self, index: int) -> Any:
        """The decoded image of ``index``, or of its replacement (``on_bad_file="skip"``)."""
        current, attempt = index, 0
        while True:
            path = self.samples[current][0]
            try:
                return self.loader(path)
            except (OSError, SyntaxError, ValueError) as exc:  # PIL's decode errors
                if self.on_bad_file == "error":
                    raise DataError(f"cannot read image {path} ({_where(self.epoch)}): {exc}") from exc
                self._skip(path, exc)
                attempt += 1
                current = self._replacement(index, attempt)

    def _replacement(self, index: int, attempt: int) -> int:
        """Another index of ``index``'s class, from ``(index, attempt)`` alone: the same choice in
        any worker and after a resume."""
        if self._by_class is None:
            self._by_class = {}
            for i, target in enumerate(self.targets):
                self._by_class.setdefault(target, []).append(i)
        same = self._by_class[self.targets[index]]
        if len(same) == 1:
            raise DataError(f"{self.samples[index][0]} cannot be read and is the only image of its class")
        if attempt >= len(same):  # every image of the class was tried
            raise DataError(f"no image of class {self.classes[self.targets[index]]!r} could be read")
        step = 1 + (index * 2654435761 + attempt * 40503) % (len(same) - 1)  # never 0: not itself
        return same[(same.index(index) + step) % len(same)]

    def _skip(self, path: str, exc: BaseException) -> None:
        """Record a file that failed when read (once per epoch in this process: a warning)."""
        reason = f"{type(exc).__name__}: {exc}"
        if (self.epoch, path) in self._warned:
            return
        self._warned.add((self.epoch, path))
        record_failure(self.failures, path, reason)
        warnings.warn(
            f"cannot read image {path} ({_where(self.epoch)}): {reason}; replaced by another image of "
            "its class (on_bad_file='skip')",
            stacklevel=3,
        )


def _where(epoch: int | None) -> str:
    """``epoch 3, worker 1`` (``main process`` outside DataLoader workers)."""
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    worker = "main process" if info is None else f"worker {info.id}"
    return worker if epoch is None else f"epoch {epoch + 1}, {worker}"


def image_folder(
    root: str | Path,
    transform: Callable[[Any], Any] | None = None,
    target_transform: Callable[[int], Any] | None = None,
    on_bad_file: str = "error",
    verify: str = "header",
    cache_dir: str | Path | None = None,
    loader: Callable[[str], Any] | None = None,
) -> ImageFolder:
    """An ImageFolder over ``root/<class>/<image>`` whose files were checked (see ``verify``).

    Args:
        root: the folder with one subfolder per class (sorted names give the class indices).
        transform, target_transform: as for torchvision's ImageFolder.
        on_bad_file: "error" raises DataError naming the first file the check rejects; "skip"
            leaves such files out, lists them in ``dataset.skipped`` and warns with their count.
        verify: "header" (default): read every file's header (empty files,
            non-images, a format that contradicts the extension); damaged pixel data is then found
            when the image is read. "full": decode everything once, in processes. "none": list only.
            The result is cached per file (``cache_dir``, default ``~/.cache/ember/scans``), so a
            second build of an unchanged folder costs a listing and a stat per file.
        loader: ``path -> image`` (default: PIL, as torchvision's); ``ember.data.decode``'s
            ``RandomResizedCropDecode(size)`` decodes JPEGs at a reduced scale for training crops.

    Example:
        >>> ds = image_folder("../shared/data/cifar2/train")  # doctest: +SKIP
        >>> ds.class_to_idx
        {'0_airplane': 0, '1_automobile': 1}
    """
    if on_bad_file not in ("error", "skip"):
        raise DataError(f"on_bad_file must be 'error' or 'skip', got {on_bad_file!r}")
    root = Path(root)
    classes = _check_layout(root)
    samples, skipped = scan_images(root, classes, IMG_EXTENSIONS, verify, cache_dir)
    failures = failures_file(root, cache_dir)
    if skipped and on_bad_file == "error":
        path, problem = skipped[0]
        raise DataError(f"unreadable image {path}: {problem} (use on_bad_file='skip' to leave it out)")
    missing = sorted(set(classes) - {name for _, name in samples})
    if missing:
        raise DataError(f"class folder(s) {missing} under {root} contain no readable image files")
    dataset = ImageFolder(str(root), samples, transform, target_transform, on_bad_file, failures, loader)
    dataset.skipped_at_build = skipped
    if skipped:
        first = skipped[0][0]
        warnings.warn(f"{root}: skipped {len(skipped)} unreadable image(s), first {first}", stacklevel=2)
    return dataset


def _check_layout(root: Path) -> list[str]:
    """The class folder names of ``root`` (sorted), or a DataError explaining the layout problem."""
    if not root.exists():
        raise DataError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"image folder {root} is not a directory")
    classes = [entry for entry in root.iterdir() if entry.is_dir()]
    if not classes:
        raise DataError(f"image folder {root} has no class subfolders (expected root/<class>/<image>)")
    return sorted(c.name for c in classes)


class CachedImages(Dataset):
    """Decoded images (uint8 N x C x H x W, memory-mapped) and their labels.

    ``dataset[i]`` gives ``(float32 C x H x W in [0, 1], label)``, like ``ToTensor`` would, after an
    optional ``transform`` on that tensor. ``images`` / ``labels`` are the whole arrays as tensors, for
    ``DeviceLoader(cache.images, cache.labels, device="cuda", augment=...)``.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        classes: list[str],
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.array = images
        self.labels = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))
        self.classes = classes
        self.transform = transform

    @property
    def images(self) -> torch.Tensor:
        """All images as one uint8 tensor (read from the memory map)."""
        return torch.from_numpy(np.array(self.array))  # a writable copy in memory

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(np.array(self.array[i])).float().div_(255)
        return (self.transform(image) if self.transform else image), self.labels[i]


def _fingerprint(dataset: datasets.ImageFolder) -> str:
    digest = hashlib.sha256()
    for path, label in dataset.samples:
        stat = os.stat(path)
        digest.update(f"{path}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cache_images(
    dataset: datasets.ImageFolder,
    path: str | Path,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> CachedImages:
    """Decode every image of ``dataset`` once into ``path`` (``.npy``, uint8 N x C x H x W).

    A later call with the same files (paths, sizes, modification times) maps the existing cache
    instead of decoding again; when the files changed, the cache is rebuilt. The cache is written to a
    temporary file and renamed, so an interrupted build never leaves a half cache behind.
    """
    path = Path(path).with_suffix(".npy")
    meta_path = path.with_suffix(".json")
    key = _fingerprint(dataset)
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("key") == key:
            return CachedImages(
                np.load(path, mmap_mode="r"), np.asarray(meta["labels"]), meta["classes"], transform
            )
    images = _decode_all(dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        np.save(handle, images)
    os.replace(tmp, path)
    labels = [label for _, label in dataset.samples]
    meta_path.write_text(json.dumps({"key": key, "classes": dataset.classes, "labels": labels}))
    return CachedImages(np.load(path, mmap_mode="r"), np.asarray(labels), dataset.classes, transform)


def _decode_all(dataset: datasets.ImageFolder) -> np.ndarray:
    first_shape = None
    arrays = []
    for file, _ in dataset.samples:
        with Image.open(file) as image:
            array = np.asarray(image.convert("RGB"))
        if first_shape is None:
            first_shape = array.shape
        elif array.shape != first_shape:
            raise DataError(
                f"{file} is {array.shape[1]}x{array.shape[0]}, the first image "
                f"{first_shape[1]}x{first_shape[0]}: cache_images needs one size (resize first)"
            )
        arrays.append(array)
    return np.ascontiguousarray(np.stack(arrays).transpose(0, 3, 1, 2))
