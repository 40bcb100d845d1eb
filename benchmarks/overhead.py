"""Per-step overhead of Model.fit over a careful hand-written loop (CPU, one thread).

Two cases, each timed against its own hand-written loop, interleaved in ABBA order (each side runs
first in half of the repeats, so neither always inherits the other's caches), at least five repeats
each (11 by default); each prints the median ``fit/raw`` ratio (and the range of the per-repeat
ratios) and a control: the raw loop timed a second time, whose ratio to the first is what the
machine's noise alone gives.

``plain``: both train the same MLP 32 -> 64 -> 10 on 20000 random samples, batch 64, Adam, 3 epochs,
from the same initial weights and the same data. Both compute the same outputs: the exact epoch loss
and accuracy, accumulated on the device and read once per epoch in the raw loop; ember adds its live
progress bar (drawn into a fake terminal), history and callbacks.

``features``: the same, with gradient accumulation over 4 batches of 64 (one update per 256
samples) and an exponential moving average of the weights (decay 0.999):
``compile(..., accumulate=4, ema=0.999)``. The raw loop does the same math as ember: each
micro-batch's mean loss times its sample count in backward; after 4 micro-batches (or the epoch's
last, shorter window) the summed gradients divided by the window's sample count (one
``torch._foreach_div_``), the Adam step, ``zero_grad(set_to_none=True)`` and one
``torch._foreach_lerp_`` of the average towards the weights. Both walk the same ``(seed, epoch)``
permutation, so one checked run asserts that the weights, the averages and the epoch logs agree.
Neither side validates; ember lends the average to the net only around validation, so that swap
costs nothing here: the case measures the accumulation window and the per-update average.

Both raw loops gather a batch with ``x[index]``; ember's DeviceLoader uses ``torch.index_select``,
about 10 us a step cheaper here, which hides that much of ember's own per-step cost in both ratios.

``--instructions`` counts instead of timing: each side runs once (after a warm-up) under valgrind's
callgrind in its own process, and the ratio of executed instructions is printed. Time and
instructions differ (a Python opcode and a matrix kernel do not cost the same per instruction), but
the count is deterministic: on a shared machine where two runs of the same loop differ by 10%, it
still shows a 1% change in ember's per-step work. The counted runs refresh the bar at epoch ends
only (time-based refreshes would fire far more often at valgrind's speed).

Usage: ``python benchmarks/overhead.py [--case {all,plain,features}] [--repeats N] [--instructions]``
(default: both cases, plain first); results go to ``results/overhead.json`` and
``results/overhead_features.json`` (``*_instructions.json`` for counts).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import nn

import ember
from _common import FakeTerminal, median, timed, write_result
from ember.callbacks import ProgressBar
from ember.data import DeviceLoader
from ember.data.order import epoch_generator

N, FEATURES, CLASSES, BATCH, EPOCHS = 20000, 32, 10, 64, 3
ACCUMULATE, DECAY, SEED = 4, 0.999, 1
BAR_INTERVAL = [0.1]  # seconds between the bar's refreshes (ProgressBar's default)


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


def epoch_order(epoch: int) -> torch.Tensor:
    """The permutation of epoch ``epoch`` that ember's DeviceLoader with ``seed=SEED`` walks (one
    generator per epoch, seeded by mixing ``(SEED, epoch)``): so both sides see the same batches."""
    return torch.randperm(N, generator=epoch_generator(SEED, epoch))


def raw_features_loop(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[list[tuple[float, float]], list[torch.Tensor]]:
    """The careful loop with accumulation over ``ACCUMULATE`` batches and an EMA of the weights;
    returns the epoch logs and the averaged parameters."""
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    with torch.no_grad():
        averages = [p.detach().clone() for p in params]
    logs = []
    for epoch in range(EPOCHS):
        net.train()
        order = epoch_order(epoch)
        loss_sum = torch.zeros((), dtype=torch.float64)
        correct = torch.zeros((), dtype=torch.float64)
        batches = samples = 0  # the open accumulation window
        for start in range(0, N, BATCH):
            index = order[start : start + BATCH]
            xb, yb = x[index], y[index]
            n = len(yb)
            out = net(xb)
            loss = loss_fn(out, yb)
            (loss * n).backward()  # the sum of the window's losses: the mean over its samples later
            batches, samples = batches + 1, samples + n
            if batches == ACCUMULATE or start + BATCH >= N:
                torch._foreach_div_([p.grad for p in params], float(samples))
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                with torch.no_grad():
                    torch._foreach_lerp_(averages, params, 1.0 - DECAY)
                batches = samples = 0
            loss_sum += loss.detach() * n
            correct += (out.argmax(1) == yb).sum()
        loss_value, accuracy = torch.stack([loss_sum / N, correct / N]).tolist()
        logs.append((loss_value, accuracy))
    return logs, averages


def ember_fit(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> ember.Model:
    model = ember.Model(net).compile(
        loss=nn.CrossEntropyLoss(),
        optimizer=torch.optim.Adam(net.parameters(), lr=1e-3),
        metrics=["accuracy"],
        device="cpu",
    )
    bar = ProgressBar(verbose=1, stream=FakeTerminal(), interval=BAR_INTERVAL[0])
    model.fit((x, y), epochs=EPOCHS, batch_size=BATCH, callbacks=[bar], verbose=0)
    return model


def ember_features_fit(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> ember.Model:
    """``Model.fit`` with ``accumulate=4, ema=0.999``; the data is what ``fit((x, y),
    batch_size=64)`` builds (a DeviceLoader), with a fixed shuffle seed so the raw loop can follow."""
    model = ember.Model(net).compile(
        loss=nn.CrossEntropyLoss(),
        optimizer=torch.optim.Adam(net.parameters(), lr=1e-3),
        metrics=["accuracy"],
        accumulate=ACCUMULATE,
        ema=DECAY,
        device="cpu",
    )
    bar = ProgressBar(verbose=1, stream=FakeTerminal(), interval=BAR_INTERVAL[0])
    data = DeviceLoader(x, y, batch_size=BATCH, shuffle=True, seed=SEED)
    model.fit(data, epochs=EPOCHS, callbacks=[bar], verbose=0)
    return model


def check_features_agree(base: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """One run of each side: the same weights, averaged weights and epoch logs (same work)."""
    raw_net = copy.deepcopy(base)
    raw_logs, raw_averages = raw_features_loop(raw_net, x, y)
    model = ember_features_fit(copy.deepcopy(base), x, y)
    assert model.ema is not None
    pairs = list(zip(raw_net.parameters(), model.net.parameters(), strict=True))
    pairs += list(zip(raw_averages, model.ema.state_dict()["average"].values(), strict=True))
    for raw, fit in pairs:
        torch.testing.assert_close(fit, raw, rtol=1e-5, atol=1e-6)
    history = model.history
    fit_logs = list(zip(history["loss"].tolist(), history["accuracy"].tolist(), strict=True))
    torch.testing.assert_close(torch.tensor(fit_logs), torch.tensor(raw_logs), rtol=1e-5, atol=1e-6)
    assert int(model.ema.updates) == EPOCHS * math.ceil(math.ceil(N / BATCH) / ACCUMULATE)


def measure(
    name: str, raw_fn: Callable[[], object], fit_fn: Callable[[], object], repeats: int, target: float
) -> dict[str, float]:
    """Interleaved timings of both sides and of a control (the raw loop again, whose ratio to the
    raw loop shows the machine's noise); prints and returns medians and the per-repeat range."""
    timed(raw_fn)  # warm-up both paths once
    timed(fit_fn)
    sides: dict[str, list[float]] = {"raw": [], "fit": [], "control": []}
    functions = {"raw": raw_fn, "fit": fit_fn, "control": raw_fn}
    for repeat in range(max(5, repeats)):  # ABBA order: each side runs first half the time
        for side in ("raw", "fit", "control") if repeat % 2 == 0 else ("control", "fit", "raw"):
            sides[side].append(timed(functions[side]))
    raw, fit, control = (median(sides[side]) for side in ("raw", "fit", "control"))
    ratios = [f / r for f, r in zip(sides["fit"], sides["raw"], strict=True)]
    steps = EPOCHS * -(-N // BATCH)
    print(f"[{name}]")
    print(f"raw loop  : {raw * 1e3:8.1f} ms  ({raw / steps * 1e6:6.1f} us/step)")
    print(f"Model.fit : {fit * 1e3:8.1f} ms  ({fit / steps * 1e6:6.1f} us/step)")
    print(
        f"fit/raw = {fit / raw:.3f}  (median of {len(ratios)} interleaved repeats; per-repeat "
        f"{min(ratios):.3f}-{max(ratios):.3f}; target <= {target:.2f}); control raw/raw = "
        f"{control / raw:.3f}",
        flush=True,
    )
    return {
        "raw_ms": raw * 1e3,
        "fit_ms": fit * 1e3,
        "fit_over_raw": fit / raw,
        "control_over_raw": control / raw,
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "repeats": len(ratios),
        "threads": 1,
    }


def instructions(case: str, side: str) -> int:
    """The instructions one run of ``side`` (``raw`` or ``fit``) of ``case`` executes, counted by
    valgrind's callgrind in a child process (after one uncounted warm-up run)."""
    out = Path(tempfile.mkdtemp(prefix="ember-overhead-")) / "callgrind.out"
    command = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    command += [sys.executable, __file__, "--case", case, "--child", side]
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    totals = next(line for line in out.read_text().splitlines() if line.startswith("totals:"))
    return int(totals.split()[1])


def count_instructions(cases: list[str]) -> None:
    """Print and save ``fit/raw`` in executed instructions: deterministic, so it holds on a noisy
    machine where the timed ratio of two identical runs already varies by several percent."""
    for case in cases:
        with ThreadPoolExecutor(2) as pool:  # one valgrind per side, side by side
            raw, fit = pool.map(instructions, [case, case], ["raw", "fit"])
        print(f"[{case}] instructions: raw {raw / 1e6:.1f} M, fit {fit / 1e6:.1f} M, fit/raw {fit / raw:.3f}")
        name = "overhead_instructions" if case == "plain" else "overhead_features_instructions"
        write_result(name, {"raw_instructions": raw, "fit_instructions": fit, "fit_over_raw": fit / raw})


def run_child(side: Callable[[], object]) -> None:
    """Under callgrind: warm up, then count one run (instrumentation switched on around it only).
    The bar refreshes at epoch ends only: its time-based refreshes (about 5 per run at full speed)
    would fire some 50 times as often under valgrind's slowdown."""
    BAR_INTERVAL[0] = float("inf")
    side()
    subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True, capture_output=True)
    side()
    subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=["all", "plain", "features"], default="all")
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--instructions", action="store_true", help="count instructions (valgrind)")
    parser.add_argument("--child", choices=["raw", "fit"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    cases = ["plain", "features"] if args.case == "all" else [args.case]
    if args.instructions:
        count_instructions(cases)
        return
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(N, FEATURES, generator=generator)
    y = torch.randint(0, CLASSES, (N,), generator=generator)
    base = make_net()
    sides = {
        "plain": (lambda: raw_loop(copy.deepcopy(base), x, y), lambda: ember_fit(copy.deepcopy(base), x, y)),
        "features": (
            lambda: raw_features_loop(copy.deepcopy(base), x, y),
            lambda: ember_features_fit(copy.deepcopy(base), x, y),
        ),
    }
    if args.child is not None:
        run_child(sides[cases[0]][args.child == "fit"])
        return
    if "plain" in cases:
        result = measure("plain", *sides["plain"], args.repeats, target=1.10)
        write_result("overhead", result)
    if "features" in cases:
        check_features_agree(base, x, y)
        name = f"features: accumulate={ACCUMULATE}, ema={DECAY}"
        result = measure(name, *sides["features"], args.repeats, target=1.05)
        write_result("overhead_features", {"accumulate": ACCUMULATE, "ema": DECAY, **result})


if __name__ == "__main__":
    main()
