"""One epoch of a 20000 x 32 float TensorDataset at batch 64, shuffled, on CPU: a plain DataLoader
(one ``__getitem__`` per sample plus collate) vs ``ember.data.loader`` (one gather per batch) vs
``ember.data.DeviceLoader`` (one gather per batch, no DataLoader machinery). Interleaved repeats;
prints the median time of each and the speed-up over the plain DataLoader (target: >= 20x for
DeviceLoader). Usage: ``python benchmarks/loader.py [--repeats N]``.
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.data import DataLoader, TensorDataset

from _common import median, timed, write_result
from ember.data import DeviceLoader, loader

N, FEATURES, BATCH = 20000, 32, 64


def epoch(batches) -> int:
    total = 0
    for _, y in batches:
        total += len(y)
    assert total == N
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    torch.set_num_threads(1)
    x, y = torch.randn(N, FEATURES), torch.randint(0, 10, (N,))
    dataset = TensorDataset(x, y)
    variants = {
        "DataLoader": lambda: DataLoader(dataset, batch_size=BATCH, shuffle=True),
        "ember.data.loader": lambda: loader(dataset, batch_size=BATCH, shuffle=True, pin_memory=False),
        "DeviceLoader": lambda: DeviceLoader(x, y, batch_size=BATCH, shuffle=True, seed=0),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(max(3, args.repeats)):
        for name, make in variants.items():
            batches = make()
            times[name].append(timed(lambda batches=batches: epoch(batches)))
    base = median(times["DataLoader"])
    result = {}
    for name, values in times.items():
        speedup = base / median(values)
        result[name] = {"ms": median(values) * 1e3, "speedup": speedup}
        print(f"{name:18s} {median(values) * 1e3:8.1f} ms/epoch   {speedup:6.1f}x")
    print(f"DeviceLoader speed-up over DataLoader: {result['DeviceLoader']['speedup']:.1f}x (target >= 20x)")
    write_result("loader", {"variants": result, "repeats": len(times["DataLoader"])})


if __name__ == "__main__":
    main()
