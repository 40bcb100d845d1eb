"""Two processes on CPU with gloo: the same numbers as one process, rank-0 files, faults, resume."""

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import ember
from ember.checkpoint import read_state_dict
from ember.spawn import LaunchError
from tests import dist_jobs

ROOT = Path(__file__).resolve().parents[1]


def _weights(folder, name, rank=0):
    return read_state_dict(folder / f"{name}-rank{rank}.safetensors")


def _history(folder, name, rank=0):
    return pd.read_json(folder / f"{name}-rank{rank}.json")


@pytest.mark.parametrize(("n", "loader"), [(48, False), (45, False), (17, False), (45, True)])
def test_two_processes_match_one(tmp_path, n, loader):
    """Even split (48 = 3 x 16), uneven last batch (45), a rank with nothing in the last batch (17),
    and a user DataLoader rebuilt on ember's sampler."""
    dist_jobs.fit_job(tmp_path, n, 16, name="single", loader=loader)  # one process, batch 16
    ember.launch(dist_jobs.fit_job, 2, str(tmp_path), n, 8, 21, "double", 0.0, loader)  # two x 8
    single, double = _history(tmp_path, "single"), _history(tmp_path, "double")
    assert list(single.columns) == list(double.columns)
    for column in single.columns:
        assert double[column].to_numpy() == pytest.approx(single[column].to_numpy(), abs=1e-6), column
    assert _history(tmp_path, "double", 1).equals(double)  # every process returns the same history
    w1, w2 = _weights(tmp_path, "single"), _weights(tmp_path, "double")
    assert all(torch.allclose(w1[k], w2[k], atol=1e-6) for k in w1)
    assert torch.equal(w2["0.weight"], _weights(tmp_path, "double", 1)["0.weight"])
    for r in (0, 1):  # evaluate and predict cover every sample once, in order, on every process
        predictions = torch.load(tmp_path / f"double-predict-rank{r}.pt")
        assert torch.allclose(predictions, torch.load(tmp_path / "single-predict-rank0.pt"), atol=1e-6)
        evaluated = json.loads((tmp_path / f"double-evaluate-rank{r}.json").read_text())
        assert evaluated == pytest.approx(json.loads((tmp_path / "single-evaluate-rank0.json").read_text()))
    rows = (tmp_path / "double.csv").read_text().strip().splitlines()
    assert len(rows) == 4  # header + 3 epochs: only process 0 wrote


def test_a_custom_step_written_with_the_helpers_gets_exact_loss_scaling(tmp_path):
    """An uneven last batch (45 = 2 x 16 + 13): the override's optimize applies each process's
    loss scale, so two processes train exactly like one."""
    dist_jobs.fit_job(tmp_path, 45, 16, name="single")
    ember.launch(dist_jobs.fit_job, 2, str(tmp_path), 45, 8, 21, "custom", 0.0, False, True)
    single, custom = _history(tmp_path, "single"), _history(tmp_path, "custom")
    for column in ["loss", "val_loss", "val_accuracy"]:
        assert custom[column].to_numpy() == pytest.approx(single[column].to_numpy(), abs=1e-6), column
    w1, w2 = _weights(tmp_path, "single"), _weights(tmp_path, "custom")
    assert all(torch.allclose(w1[k], w2[k], atol=1e-6) for k in w1)


def test_several_optimizers_are_refused_under_several_processes(tmp_path):
    ember.launch(dist_jobs.several_optimizers_job, 2, str(tmp_path))
    for r in (0, 1):
        assert "outside the DDP wrapper" in (tmp_path / f"refused-rank{r}.txt").read_text()


def test_a_raising_rank_stops_every_process_and_is_named(tmp_path):
    started = time.time()
    with pytest.raises(LaunchError, match=r"(?s)rank 1 of 2 raised RuntimeError: boom at step 3"):
        ember.launch(dist_jobs.raising_job, 2, str(tmp_path))
    assert time.time() - started < 60


def test_resume_at_world_size_two_is_exact(tmp_path):
    ember.launch(dist_jobs.resume_job, 2, str(tmp_path / "ref"), "reference")
    with pytest.raises(LaunchError, match="boom at step 5"):
        ember.launch(dist_jobs.resume_job, 2, str(tmp_path / "run"), "first", 5)
    ember.launch(dist_jobs.resume_job, 2, str(tmp_path / "run"), "second")
    for r in (0, 1):
        ref, resumed = _weights(tmp_path / "ref", "reference", r), _weights(tmp_path / "run", "second", r)
        assert all(torch.equal(ref[k], resumed[k]) for k in ref)
    assert _history(tmp_path / "ref", "reference").equals(_history(tmp_path / "run", "second"))


def test_torchrun_restart_resumes_from_the_latest_checkpoint(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from ember.checkpoint import list_checkpoints
        from tests import dist_jobs
        out = {str(tmp_path)!r}
        first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
        phase = "second" if list_checkpoints(out + "/ck") else "first"
        dist_jobs.resume_job(out, phase, stop_at=6 if first_attempt else -1, crash_rank=1)
    """)
    )
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "--max-restarts=1",
        str(script),
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ember.launch(dist_jobs.resume_job, 2, str(tmp_path / "ref"), "reference")
    ref, resumed = _weights(tmp_path / "ref", "reference"), _weights(tmp_path, "second")
    assert all(torch.equal(ref[k], resumed[k]) for k in ref)
