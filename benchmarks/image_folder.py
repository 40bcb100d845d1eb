"""Building an image folder: ember's ``image_folder`` (cold: every header read, in threads; warm:
the cached scan of an unchanged folder) vs torchvision's ``ImageFolder``, which only lists files.

Generates 20,000 JPEGs of varied sizes (96 to 320 px a side, two classes, fixed seed) in a temporary
folder (kept between runs under ``--folder``), then times, interleaved, median of the repeats: the
torchvision listing, ember cold (a fresh cache folder each time) and ember warm (the same cache).
Targets: cold <= 25x the listing, warm <= 3x. Usage:
``python benchmarks/image_folder.py [--files N] [--repeats N] [--folder DIR]``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision import datasets

from _common import median, timed, write_result
from ember.data import image_folder


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
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
