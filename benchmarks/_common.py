"""Shared helpers for the benchmark scripts: timing, medians, result files."""

from __future__ import annotations

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
