"""Every training feature (accumulation, sample and class weights, several outputs, dict batches,
EMA) with two processes (the numbers of one process) and killed mid-epoch and resumed (bitwise)."""

import pytest
import torch

import ember
from ember.checkpoint import read_state_dict
from ember.spawn import LaunchError
from tests import dist_jobs


def _weights(folder, name, rank=0):
    return read_state_dict(folder / f"{name}-rank{rank}.safetensors")


def _history(folder, name):
    import pandas as pd

    return pd.read_json(folder / f"{name}-rank0.json")


@pytest.mark.parametrize("feature", dist_jobs.FEATURES)
def test_two_processes_match_one(tmp_path, feature):
    """45 samples: one process with batches of 8, two with 4 each (uneven last batch)."""
    dist_jobs.feature_job(tmp_path, "single", feature, 8)
    ember.launch(dist_jobs.feature_job, 2, str(tmp_path), "double", feature, 4)
    single, double = _history(tmp_path, "single"), _history(tmp_path, "double")
    assert list(double.columns) == list(single.columns)
    for column in single.columns:
        assert double[column].to_numpy() == pytest.approx(single[column].to_numpy(), abs=1e-5), column
    names = ["single", "double"] if feature != "ema" else ["single", "double", "single-ema", "double-ema"]
    one, two = _weights(tmp_path, names[0]), _weights(tmp_path, names[1])
    for key in one:
        assert torch.allclose(one[key], two[key], atol=1e-5), key
    if feature == "ema":
        one, two = _weights(tmp_path, "single-ema"), _weights(tmp_path, "double-ema")
        assert all(torch.allclose(one[k], two[k], atol=1e-5) for k in one)


@pytest.mark.parametrize("feature", dist_jobs.FEATURES)
@pytest.mark.parametrize("stop_at", [3, 8])  # inside epoch 1 (mid-window with accumulate=2), epoch 2
def test_a_kill_mid_epoch_and_resume_is_bitwise(tmp_path, feature, stop_at):
    dist_jobs.feature_job(tmp_path, "reference", feature, 8)
    with pytest.raises(RuntimeError, match=f"boom at step {stop_at}"):
        dist_jobs.feature_job(tmp_path, "run", feature, 8, "first", stop_at)
    dist_jobs.feature_job(tmp_path, "run", feature, 8, "second")
    reference, resumed = _weights(tmp_path, "reference"), _weights(tmp_path, "run")
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)
    assert _history(tmp_path, "reference").equals(_history(tmp_path, "run"))
    if feature == "ema":
        reference, resumed = _weights(tmp_path, "reference-ema"), _weights(tmp_path, "run-ema")
        assert all(torch.equal(reference[k], resumed[k]) for k in reference)


def test_features_resume_at_world_size_two(tmp_path):
    """Accumulation with two processes: a kill inside a window resumes with every process's sums."""
    ember.launch(dist_jobs.feature_job, 2, str(tmp_path), "reference", "accumulate", 4)
    with pytest.raises(LaunchError, match="boom at step 3"):
        ember.launch(dist_jobs.feature_job, 2, str(tmp_path), "run", "accumulate", 4, "first", 3)
    ember.launch(dist_jobs.feature_job, 2, str(tmp_path), "run", "accumulate", 4, "second")
    for rank in (0, 1):
        reference, resumed = _weights(tmp_path, "reference", rank), _weights(tmp_path, "run", rank)
        assert all(torch.equal(reference[k], resumed[k]) for k in reference)
