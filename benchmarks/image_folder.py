"""Image folders at scale: building one, and one epoch of training-style reading.

Generates 20,000 JPEGs of varied sizes (96 to 320 px a side, two classes, fixed seed) in a temporary
folder (kept between runs under ``--folder``).

Build: ember's ``image_folder`` cold (every header read, in threads, a fresh cache folder each
time) and warm (the cached scan of the unchanged folder) vs torchvision's ``ImageFolder``, which
only lists files; interleaved, medians. Targets: cold <= 25x the listing, warm <= 3x.

Epoch: RandomResizedCrop 64, horizontal flip, float and normalize, batch 64, shuffled, 2 workers:
the tutorial's pipeline (torchvision ImageFolder, PIL transforms, DataLoader) vs ember's
(``image_folder(loader=RandomResizedCropDecode(64), transform=Uint8ToFloat())`` and
``ember.data.loader``: the crop drawn before decoding, the JPEG decoded at a reduced DCT scale,
float and normalize last); images per second, interleaved, medians. Target >= 1.5x.

Usage: ``python benchmarks/image_folder.py [--files N] [--repeats N] [--folder DIR]``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision import transforms as T

from _common import median, timed, write_result
from ember.data import image_folder, loader
from ember.data.decode import RandomResizedCropDecode
from ember.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Uint8ToFloat

SIZE, BATCH, WORKERS = 64, 64, 2


def make_folder(root: Path, files: int) -> Path:
    """``files`` JPEGs of random sizes and smooth random content, half per class (made once)."""
    done = root / ".complete"
    if done.exists() and int(done.read_text()) == files:
        return root
    rng = np.random.default_rng(0)
    for index in range(files):
        folder = root / ("cats" if index % 2 else "dogs")
        folder.mkdir(parents=True, exist_ok=True)
        width, height = (int(v) for v in rng.integers(96, 321, size=2))
        small = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((width, height), Image.BILINEAR)
        image.save(folder / f"{index:06d}.jpg", quality=90)
    done.write_text(str(files))
    return root


def epoch(batches: DataLoader, files: int) -> float:
    """Images per second of one pass over ``batches`` (every batch checked for its shape)."""
    seen = 0

    def run() -> None:
        nonlocal seen
        seen = 0
        for images, _ in batches:
            assert images.shape[1:] == (3, SIZE, SIZE) and images.dtype == torch.float32
            seen += len(images)

    seconds = timed(run)
    assert seen == files
    return files / seconds


def measure_epochs(root: Path, files: int, repeats: int, cache: Path) -> dict[str, float]:
    tutorial = datasets.ImageFolder(
        str(root),
        T.Compose(
            [
                T.RandomResizedCrop(SIZE),
                T.RandomHorizontalFlip(),
                T.ToTensor(),
                T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        ),
    )
    fast = image_folder(root, loader=RandomResizedCropDecode(SIZE), transform=Uint8ToFloat(), cache_dir=cache)
    sides = {
        "tutorial": DataLoader(tutorial, batch_size=BATCH, shuffle=True, num_workers=WORKERS),
        "ember": loader(fast, batch_size=BATCH, shuffle=True, num_workers=WORKERS, seed=0),
    }
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for repeat in range(repeats):
        for name in sides if repeat % 2 == 0 else reversed(list(sides)):
            rates[name].append(epoch(sides[name], files))
    tutorial_rate, ember_rate = median(rates["tutorial"]), median(rates["ember"])
    print(f"one epoch, {WORKERS} workers: tutorial {tutorial_rate:.0f} images/s")
    speedup = ember_rate / tutorial_rate
    print(f"one epoch, {WORKERS} workers: ember {ember_rate:.0f} images/s = {speedup:.2f}x (target >= 1.5)")
    return {
        "tutorial_images_per_s": tutorial_rate,
        "ember_images_per_s": ember_rate,
        "speedup": ember_rate / tutorial_rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epoch-repeats", type=int, default=3)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "ember-image-bench")
    args = parser.parse_args()
    root = make_folder(args.folder / f"jpeg{args.files}", args.files)
    warm_cache = Path(tempfile.mkdtemp(prefix="ember-scan-warm-"))
    assert len(image_folder(root, cache_dir=warm_cache)) == args.files  # fills the warm cache
    times: dict[str, list[float]] = {"torchvision": [], "cold": [], "warm": []}
    for _ in range(args.repeats):
        times["torchvision"].append(timed(lambda: datasets.ImageFolder(str(root))))
        times["cold"].append(
            timed(lambda: image_folder(root, cache_dir=tempfile.mkdtemp(prefix="ember-scan-")))
        )
        times["warm"].append(timed(lambda: image_folder(root, cache_dir=warm_cache)))
    listing, cold, warm = (median(times[key]) for key in ("torchvision", "cold", "warm"))
    print(f"{args.files} JPEGs, median of {args.repeats} interleaved repeats")
    print(f"torchvision ImageFolder (listing only): {listing * 1e3:8.1f} ms")
    for name, seconds, target in (("cold (headers)", cold, 25), ("warm (cached scan)", warm, 3)):
        ratio = seconds / listing
        print(f"ember image_folder, {name:18}: {seconds * 1e3:8.1f} ms = {ratio:5.1f}x (target <= {target})")
    reading = measure_epochs(root, args.files, args.epoch_repeats, warm_cache)
    write_result("image_folder_epoch", {"files": args.files, "repeats": args.epoch_repeats, **reading})
    write_result(
        "image_folder_build",
        {
            "files": args.files,
            "repeats": args.repeats,
            "torchvision_ms": listing * 1e3,
            "cold_ms": cold * 1e3,
            "warm_ms": warm * 1e3,
            "cold_over_listing": cold / listing,
            "warm_over_listing": warm / listing,
        },
    )


if __name__ == "__main__":
    main()
