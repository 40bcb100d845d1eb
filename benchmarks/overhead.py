"""Per-step overhead of Model.fit over a careful hand-written loop (CPU, one thread).

Both train the same MLP 32 -> 64 -> 10 on 20000 random samples, batch 64, Adam, 3 epochs, from the
same initial weights and the same data. Both compute the same outputs: the exact epoch loss and
accuracy, accumulated on the device and read once per epoch in the raw loop; ember adds its live
progress bar (drawn into a fake terminal), history and callbacks. Runs are interleaved, at least five
repeats each (11 by default); prints the median ``fit/raw`` ratio.
Usage: ``python benchmarks/overhead.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import copy

import torch
from torch import nn

import ember
from _common import FakeTerminal, median, timed, write_result
from ember.callbacks import ProgressBar

N, FEATURES, CLASSES, BATCH, EPOCHS = 20000, 32, 10, 64, 3


def make_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(FEATURES, 64), nn.ReLU(), nn.Linear(64, CLASSES))


def raw_loop(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[tuple[float, float]]:
    """The careful hand-written loop: one gather per batch, sums on the device, one read per epoch."""
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(1)
    logs = []
    for _ in range(EPOCHS):
        net.train()
        order = torch.randperm(N, generator=generator)
        loss_sum = torch.zeros((), dtype=torch.float64)
        correct = torch.zeros((), dtype=torch.float64)
        for start in range(0, N, BATCH):
            index = order[start : start + BATCH]
            xb, yb = x[index], y[index]
            out = net(xb)
            loss = loss_fn(out, yb)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach() * len(yb)
            correct += (out.argmax(1) == yb).sum()
        loss_value, accuracy = torch.stack([loss_sum / N, correct / N]).tolist()
        logs.append((loss_value, accuracy))
    return logs


def ember_fit(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> object:
    model = ember.Model(net).compile(
        loss=nn.CrossEntropyLoss(),
        optimizer=torch.optim.Adam(net.parameters(), lr=1e-3),
        metrics=["accuracy"],
        device="cpu",
    )
    bar = ProgressBar(verbose=1, stream=FakeTerminal())
    return model.fit((x, y), epochs=EPOCHS, batch_size=BATCH, callbacks=[bar], verbose=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(N, FEATURES, generator=generator)
    y = torch.randint(0, CLASSES, (N,), generator=generator)
    base = make_net()
    raw_times, fit_times = [], []
    timed(lambda: raw_loop(copy.deepcopy(base), x, y))  # warm-up both paths once
    timed(lambda: ember_fit(copy.deepcopy(base), x, y))
    for _ in range(max(5, args.repeats)):
        raw_times.append(timed(lambda: raw_loop(copy.deepcopy(base), x, y)))
        fit_times.append(timed(lambda: ember_fit(copy.deepcopy(base), x, y)))
    raw, fit = median(raw_times), median(fit_times)
    ratio = fit / raw
    steps = EPOCHS * -(-N // BATCH)
    print(f"raw loop  : {raw * 1e3:8.1f} ms  ({raw / steps * 1e6:6.1f} us/step)")
    print(f"Model.fit : {fit * 1e3:8.1f} ms  ({fit / steps * 1e6:6.1f} us/step)")
    print(f"fit/raw = {ratio:.3f}  (median of {len(raw_times)} interleaved repeats; target <= 1.10)")
    write_result(
        "overhead",
        {
            "raw_ms": raw * 1e3,
            "fit_ms": fit * 1e3,
            "fit_over_raw": ratio,
            "repeats": len(raw_times),
            "threads": 1,
        },
    )


if __name__ == "__main__":
    main()
