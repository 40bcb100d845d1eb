import pytest
import torch
from torch import nn

import ember
from ember.checkpoint import read_state_dict, write_state_dict
from ember.errors import CheckpointError


def test_round_trip_with_tied_weights_and_buffers(tmp_path):
    net = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 5, bias=False), nn.BatchNorm1d(5))
    net[1].weight = net[0].weight  # tied: one storage under two names
    net[2].running_mean.fill_(0.5)
    path = ember.save_weights(net, tmp_path / "w.safetensors")
    fresh = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 5, bias=False), nn.BatchNorm1d(5))
    fresh[1].weight = fresh[0].weight
    ember.load_weights(fresh, path)
    expected, loaded = net.state_dict(), fresh.state_dict()
    assert list(expected) == list(loaded)
    assert all(torch.equal(expected[k], loaded[k]) for k in expected)


def test_views_are_saved_as_their_values(tmp_path):
    base = torch.arange(12.0).view(3, 4)
    write_state_dict({"col": base[:, 1], "all": base}, tmp_path / "v.safetensors")
    loaded = read_state_dict(tmp_path / "v.safetensors")
    assert loaded["col"].tolist() == [1.0, 5.0, 9.0] and loaded["all"].shape == (3, 4)


def test_damaged_or_missing_files_name_the_file(tmp_path):
    path = ember.save_weights(nn.Linear(2, 2), tmp_path / "w.safetensors")
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(CheckpointError, match="w.safetensors is not a valid safetensors file"):
        ember.load_weights(nn.Linear(2, 2), path)
    with pytest.raises(CheckpointError, match="cannot read weights file .*missing"):
        ember.load_weights(nn.Linear(2, 2), tmp_path / "missing")


def test_shape_mismatch_names_the_file(tmp_path):
    path = ember.save_weights(nn.Linear(2, 2), tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match=r"weights in .*w.safetensors do not fit Linear"):
        ember.load_weights(nn.Linear(3, 2), path)


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = ember.save_weights(nn.Linear(2, 2), tmp_path / "w.safetensors")
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("os.fsync", broken)
    with pytest.raises(OSError, match="disk full"):
        ember.save_weights(nn.Linear(2, 2), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # temp file removed
