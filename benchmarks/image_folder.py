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

With ``--device cuda`` (the GPU script) every side's batches end on the GPU, and a third side
reads: ``ember.data.device_decode.decoded_batches``, whose workers only read file bytes while each
batch is decoded (nvJPEG) and cropped, flipped and normalized on the GPU.

Usage: ``python benchmarks/image_folder.py [--files N] [--repeats N] [--epoch-repeats N]
[--workers N] [--device cuda] [--folder DIR] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision import transforms as T

from _common import median, timed, write_result
from ember.data import image_folder, loader
from ember.data.decode import RandomResizedCropDecode
from ember.data.device_decode import decoded_batches
from ember.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Uint8ToFloat

SIZE, BATCH = 64, 64


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


def epoch(batches: Any, files: int, device: torch.device) -> float:
    """Images per second of one pass over ``batches``, each batch on ``device`` (and checked)."""
    seen = 0

    def run() -> None:
        nonlocal seen
        seen = 0
        for images, _ in batches:
            images = images.to(device, non_blocking=True)
            assert images.shape[1:] == (3, SIZE, SIZE) and images.dtype == torch.float32
            seen += len(images)
        if device.type == "cuda":
            torch.cuda.synchronize()

    seconds = timed(run)
    assert seen == files
    return files / seconds


def reading_sides(root: Path, workers: int, cache: Path, device: torch.device) -> dict[str, Any]:
    """The pipelines that read one epoch: the tutorial's, ember's, and on CUDA ember's device decode."""
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
    pin = device.type == "cuda"
    sides = {
        "tutorial": DataLoader(tutorial, batch_size=BATCH, shuffle=True, num_workers=workers, pin_memory=pin),
        "ember": loader(fast, batch_size=BATCH, shuffle=True, num_workers=workers, seed=0),
    }
    if device.type == "cuda":
        sides["ember_device_decode"] = decoded_batches(
            root, SIZE, BATCH, device=device, seed=0, num_workers=workers, cache_dir=cache
        )
    return sides


def measure_epochs(
    root: Path, files: int, repeats: int, cache: Path, workers: int, device: torch.device
) -> dict[str, float]:
    sides = reading_sides(root, workers, cache, device)
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for repeat in range(repeats):
        for name in sides if repeat % 2 == 0 else reversed(list(sides)):
            rates[name].append(epoch(sides[name], files, device))
    tutorial_rate = median(rates["tutorial"])
    print(f"one epoch, {workers} workers, on {device}: tutorial {tutorial_rate:.0f} images/s")
    result = {"workers": workers, "batches_on": str(device), "tutorial_images_per_s": tutorial_rate}
    for name in list(sides)[1:]:
        rate = median(rates[name])
        print(
            f"one epoch, {workers} workers, on {device}: {name} {rate:.0f} images/s = "
            f"{rate / tutorial_rate:.2f}x (target >= 1.5)"
        )
        result[f"{name}_images_per_s"] = rate
        result[f"{name}_speedup"] = rate / tutorial_rate
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epoch-repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="where batches go: cpu, or cuda (adds device decode)")
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "ember-image-bench")
    parser.add_argument("--out", type=Path, default=None, help="folder for the JSON results")
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
    device = torch.device(args.device)
    reading = measure_epochs(root, args.files, args.epoch_repeats, warm_cache, args.workers, device)
    suffix = "_gpu" if device.type == "cuda" else ""
    payload = {"files": args.files, "repeats": args.epoch_repeats, **reading}
    write_result(f"image_folder_epoch{suffix}", payload, args.out)
    write_result(
        f"image_folder_build{suffix}",
        {
            "files": args.files,
            "repeats": args.repeats,
            "torchvision_ms": listing * 1e3,
            "cold_ms": cold * 1e3,
            "warm_ms": warm * 1e3,
            "cold_over_listing": cold / listing,
            "warm_over_listing": warm / listing,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
