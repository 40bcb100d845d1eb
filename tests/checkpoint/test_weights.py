import pytest
import torch
from torch import nn

import ember
from ember.checkpoint import LoadReport, export, load_exported, read_state_dict, write_state_dict
from ember.errors import CheckpointError


class Evil:
    """Unpickling this would create the sentinel file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_round_trip_with_tied_weights_and_buffers(tmp_path):
    net = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 5, bias=False), nn.BatchNorm1d(5))
    net[1].weight = net[0].weight  # tied: one storage under two names
    net[2].running_mean.fill_(0.5)
    path = ember.save_weights(net, tmp_path / "w.safetensors")
    fresh = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 5, bias=False), nn.BatchNorm1d(5))
    fresh[1].weight = fresh[0].weight
    report = ember.load_weights(fresh, path)
    assert report.ok and report.loaded == sorted(net.state_dict())
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in net.state_dict().items())


def test_damaged_or_missing_files_name_the_file(tmp_path):
    path = ember.save_weights(nn.Linear(2, 2), tmp_path / "w.safetensors")
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(CheckpointError, match="w.safetensors is not a valid safetensors file"):
        ember.load_weights(nn.Linear(2, 2), path)
    with pytest.raises(CheckpointError, match="missing: no such file"):
        ember.load_weights(nn.Linear(2, 2), tmp_path / "missing")


def test_strict_lists_all_three_groups_and_non_strict_loads_what_fits():
    source = {
        "a.weight": torch.ones(4, 3),
        "a.bias": torch.ones(4),
        "b.weight": torch.ones(2, 9),
        "extra": torch.ones(1),
    }
    net = nn.Sequential()
    net.add_module("a", nn.Linear(3, 4))
    net.add_module("b", nn.Linear(4, 2))
    with pytest.raises(CheckpointError) as info:
        ember.load_weights(net, source)
    message = str(info.value)
    assert "missing      b.bias" in message and "unexpected   extra" in message
    assert "mismatched   b.weight  file [2, 9] vs model [2, 4]" in message
    report = ember.load_weights(net, source, strict=False)
    assert report.loaded == ["a.bias", "a.weight"] and report.missing == ["b.bias"]
    assert report.mismatched == {"b.weight": ((2, 9), (2, 4))} and report.unexpected == ["extra"]
    assert torch.equal(net.a.weight, torch.ones(4, 3)) and not torch.equal(net.b.weight, torch.ones(2, 4))
    assert "1 missing, 1 unexpected, 1 mismatched" in str(report) and isinstance(report, LoadReport)


def test_rename_by_regex_and_by_function():
    source = {"features.0.weight": torch.ones(4, 3), "features.0.bias": torch.zeros(4)}
    net = nn.Sequential()
    net.add_module("encoder", nn.Linear(3, 4))
    report = ember.load_weights(net, source, rename={r"^features\.0\.": "encoder."})
    assert report.ok and report.renamed == {
        "features.0.weight": "encoder.weight",
        "features.0.bias": "encoder.bias",
    }
    ember.load_weights(
        net,
        {"W": torch.full((4, 3), 2.0), "B": torch.zeros(4)},
        rename=lambda k: {"W": "encoder.weight", "B": "encoder.bias"}[k],
    )
    assert net.encoder.weight[0, 0].item() == 2.0


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "net."])
def test_known_prefixes_are_handled_both_ways(prefix):
    plain = nn.Linear(2, 2)
    wrapped_state = {prefix + k: v for k, v in plain.state_dict().items()}
    assert ember.load_weights(nn.Linear(2, 2), wrapped_state).ok
    holder = nn.Module()
    holder.add_module(prefix.rstrip("."), nn.Linear(2, 2))
    assert ember.load_weights(holder, plain.state_dict()).ok


def test_pt_state_dicts_are_read_safely(tmp_path):
    net = nn.Linear(3, 2)
    torch.save(net.state_dict(), tmp_path / "model_parameter.pt")
    assert ember.load_weights(nn.Linear(3, 2), tmp_path / "model_parameter.pt").ok
    torch.save({"epoch": 3, "model_state_dict": net.state_dict(), "loss": 0.1}, tmp_path / "ck.tar")
    assert torch.equal(read_state_dict(tmp_path / "ck.tar")["weight"], net.weight)
    torch.save({"a": net.state_dict(), "b": net.state_dict()}, tmp_path / "two.pt")
    with pytest.raises(CheckpointError, match="pass key"):
        read_state_dict(tmp_path / "two.pt")
    assert torch.equal(read_state_dict(tmp_path / "two.pt", key="b")["bias"], net.bias)


@pytest.mark.parametrize("force_env", [False, True])
def test_malicious_pickles_are_refused_and_run_no_code(tmp_path, monkeypatch, force_env):
    if force_env:
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    sentinel = tmp_path / "pwned"
    torch.save(Evil(sentinel), tmp_path / "evil.pt")
    nested = {"state": {0: {"exp_avg": Evil(sentinel)}}, "param_groups": [{"lr": 0.1, "params": [0]}]}
    torch.save({"model": nn.Linear(2, 2).state_dict(), "optimizer": nested}, tmp_path / "nested.pt")
    for name in ("evil.pt", "nested.pt"):
        with pytest.raises(CheckpointError, match="trust_pickle=True"):
            ember.load_weights(nn.Linear(2, 2), tmp_path / name)
        assert not sentinel.exists()
    if force_env:
        assert __import__("os").environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "1"  # left as it was


def test_whole_model_pickles_need_trust(tmp_path):
    torch.save(nn.Linear(2, 2), tmp_path / "whole.pt")
    with pytest.raises(CheckpointError, match="trust_pickle=True"):
        read_state_dict(tmp_path / "whole.pt")
    with pytest.raises(CheckpointError, match="holds a Linear, not a state dict"):
        read_state_dict(tmp_path / "whole.pt", trust_pickle=True)


def test_checkpoint_folders_are_weights_sources(tmp_path):
    net = nn.Linear(3, 2)
    ember.save_checkpoint(tmp_path / "ck", {"model": net})
    fresh = nn.Linear(3, 2)
    assert ember.load_weights(fresh, tmp_path / "ck").ok and torch.equal(fresh.weight, net.weight)
    (tmp_path / "plain").mkdir()
    with pytest.raises(CheckpointError, match="not an ember checkpoint"):
        read_state_dict(tmp_path / "plain")


def test_views_are_saved_as_their_values(tmp_path):
    base = torch.arange(12.0).view(3, 4)
    write_state_dict({"col": base[:, 1], "all": base}, tmp_path / "v.safetensors")
    loaded = read_state_dict(tmp_path / "v.safetensors")
    assert loaded["col"].tolist() == [1.0, 5.0, 9.0] and loaded["all"].shape == (3, 4)


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = ember.save_weights(nn.Linear(2, 2), tmp_path / "w.safetensors")
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("os.fsync", broken)
    with pytest.raises(OSError, match="disk full"):
        ember.save_weights(nn.Linear(2, 2), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


def test_export_without_the_model_class(tmp_path):
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x = torch.randn(5, 3)
    path = export(net, x, tmp_path / "model.pt2")
    loaded = load_exported(path)
    assert torch.allclose(loaded(x), net(x))
    with pytest.raises(CheckpointError, match="no exported model"):
        load_exported(tmp_path / "missing.pt2")
