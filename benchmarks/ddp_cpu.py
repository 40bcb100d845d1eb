"""Distributed training on CPU (gloo): ember's DDP path vs a hand-written DDP loop, and 1 vs 2 processes.

The MLP benchmark of overhead.py (32 -> 64 -> 10, 20000 samples, Adam, 3 epochs, one thread per
process). In two processes started by ``ember.launch``, each process runs, interleaved, (a) a careful
hand-written DDP loop (its shard of every global batch by one gather, sums on the device, one
all_reduce per epoch) and (b) ``Model.fit`` with accuracy, 64 samples per process. Prints the median
``fit/raw`` ratio of the distributed path (target <= 1.10) and the throughput of ember with 2
processes vs 1 (same per-process batch). Usage: ``python benchmarks/ddp_cpu.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

import ember
import overhead
from _common import median, timed, write_result

N, BATCH, EPOCHS = overhead.N, overhead.BATCH, overhead.EPOCHS


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(N, overhead.FEATURES, generator=generator), torch.randint(
        0, 10, (N,), generator=generator
    )


def raw_ddp(x: torch.Tensor, y: torch.Tensor) -> None:
    """A careful hand-written DDP loop: same shards, same exact epoch numbers."""
    rank, world = dist.get_rank(), dist.get_world_size()
    net = nn.parallel.DistributedDataParallel(overhead.make_net())
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(1)
    size = BATCH * world
    for _ in range(EPOCHS):
        order = torch.randperm(N, generator=generator)
        sums = torch.zeros(3, dtype=torch.float64)
        for start in range(0, N, size):
            chunk = order[start : start + size]
            part = len(chunk) // world
            index = chunk[rank * part : (rank + 1) * part] if rank < world - 1 else chunk[rank * part :]
            xb, yb = torch.index_select(x, 0, index), torch.index_select(y, 0, index)
            out = net(xb)
            loss = loss_fn(out, yb)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            sums[0] += loss.detach() * len(yb)
            sums[1] += (out.argmax(1) == yb).sum()
            sums[2] += len(yb)
        dist.all_reduce(sums)
        sums.tolist()


def ember_fit(x: torch.Tensor, y: torch.Tensor) -> None:
    net = overhead.make_net()
    model = ember.Model(net).compile(
        loss=nn.CrossEntropyLoss(),
        optimizer=torch.optim.Adam(net.parameters(), lr=1e-3),
        metrics=["accuracy"],
        device="cpu",
    )
    model.fit((x, y), epochs=EPOCHS, batch_size=BATCH, verbose=0)


def job(out: str, repeats: int) -> None:
    torch.set_num_threads(1)
    x, y = _data()
    ember_fit(x, y)  # warm-up (also initialises the process group)
    raw_ddp(x, y)
    times: dict[str, list[float]] = {"raw": [], "fit": []}
    for _ in range(repeats):
        for name, fn in (("raw", raw_ddp), ("fit", ember_fit)):
            dist.barrier()
            times[name].append(timed(lambda fn=fn: fn(x, y)))
    if dist.get_rank() == 0:
        Path(out).write_text(json.dumps(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(1)
    x, y = _data()
    single = [timed(lambda: ember_fit(x, y)) for _ in range(max(3, args.repeats))]
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "times.json")
        ember.launch(job, 2, out, max(5, args.repeats))
        times = json.loads(Path(out).read_text())
    raw, fit, one = median(times["raw"]), median(times["fit"]), median(single)
    ratio = fit / raw
    print(
        "per repeat fit/raw:",
        " ".join(f"{f / r:.3f}" for f, r in zip(times["fit"], times["raw"], strict=True)),
    )
    speedup = (2 * N / fit) / (N / one)  # two processes do twice the samples per step
    print(f"2 processes: hand-written DDP {raw * 1e3:8.1f} ms   Model.fit {fit * 1e3:8.1f} ms")
    print(
        f"fit/raw (distributed) = {ratio:.3f}  (median of {len(times['raw'])} interleaved repeats; "
        "target <= 1.10)"
    )
    print(
        f"throughput with 2 processes vs 1 (64 samples per process per step): {speedup:.2f}x "
        f"({2 * N * EPOCHS / fit:,.0f} vs {N * EPOCHS / one:,.0f} samples/s)"
    )
    write_result(
        "ddp_cpu",
        {
            "raw_ms": raw * 1e3,
            "fit_ms": fit * 1e3,
            "fit_over_raw": ratio,
            "single_process_fit_ms": one * 1e3,
            "throughput_2_vs_1": speedup,
            "repeats": len(times["raw"]),
        },
    )


if __name__ == "__main__":
    main()
