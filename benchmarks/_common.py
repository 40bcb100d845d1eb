"""Shared helpers for the benchmark scripts: timing, medians, result files."""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def data_dir() -> Path:
    """The real datasets: ``$EMBER_DATA`` (a copy carried to another machine), else ../shared/data."""
    return Path(os.environ.get("EMBER_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


class FakeTerminal(io.StringIO):
    """A sink that says it is a terminal, so progress bars draw as they would for a user."""

    def isatty(self) -> bool:
        return True


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def write_result(name: str, payload: dict, folder: Path | None = None) -> Path:
    """Save ``payload`` with machine, torch version and date under ``folder`` (default
    benchmarks/results/)."""
    folder = RESULTS if folder is None else Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else _cpu_name()
    record = {
        "benchmark": name,
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "device": device,
        **payload,
    }
    path = folder / f"{name}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


class GpuRun:
    """The command line of a GPU benchmark: ``--epochs``, ``--smoke`` (CPU variants on a few samples,
    also chosen when no CUDA device is here), ``--out`` (the JSON's folder)."""

    def __init__(self, doc: str, smoke_help: str) -> None:
        parser = argparse.ArgumentParser(description=doc.splitlines()[0])
        parser.add_argument("--epochs", type=int, default=5)
        parser.add_argument("--smoke", action="store_true", help=smoke_help)
        parser.add_argument("--out", type=Path, default=None, help="folder for the JSON (default results/)")
        args = parser.parse_args()
        self.smoke = args.smoke or not torch.cuda.is_available()
        if self.smoke and not args.smoke:
            print("no CUDA device here: running the CPU smoke variants", flush=True)
        self.device = torch.device("cpu" if self.smoke else "cuda")
        self.epochs = 2 if args.smoke else args.epochs
        self.out: Path | None = args.out
