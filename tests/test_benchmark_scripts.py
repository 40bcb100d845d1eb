"""The GPU benchmark scripts in their CPU smoke mode: they run end to end and write their table."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import shared_data

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize(
    ("script", "data", "rows"),
    [
        ("gpu_cifar2.py", "cifar2", ["1 tutorial loop", "2 careful loop", "3 ember fit"]),
        ("imdb_gpu.py", "imdb", ["1 DataLoader loop", "2 resident loop", "3 ember fast"]),
    ],
)
def test_gpu_benchmark_smoke_mode_writes_every_variant(tmp_path, script, data, rows):
    shared_data(data)
    subprocess.run(
        [sys.executable, script, "--smoke", "--out", str(tmp_path)], cwd=BENCHMARKS, check=True, timeout=600
    )
    (result,) = tmp_path.glob("*_smoke.json")
    record = json.loads(result.read_text())
    assert record["smoke"] is True and record["epochs"] == 2
    assert list(record["variants"]) == rows
    for row in record["variants"].values():
        assert row["ms_per_epoch"] > 0 and 0.0 <= row["test_accuracy"] <= 1.0
    assert (
        record["variants"][rows[0]]["speedup_vs_" + ("tutorial" if data == "cifar2" else "dataloader")] == 1.0
    )
    assert all("met" in target for target in record["targets"].values())
