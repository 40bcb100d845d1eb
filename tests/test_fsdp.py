"""strategy="fsdp": two CPU processes (gloo) running FSDP2 train like one process; sharded
checkpoints resume bitwise, re-shard across process counts, assemble into plain weights and
hold no pickle; a process killed while saving leaves the previous checkpoint in charge."""

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors import safe_open
from torch import nn

import ember
from ember.checkpoint import list_checkpoints, read_state_dict
from ember.checkpoint.sharded import SavedTensors
from ember.errors import CheckpointError, ConfigError
from ember.fsdp import FSDPRuntime, sharding_units
from ember.options import rebind_optimizers
from ember.spawn import LaunchError
from tests import fsdp_jobs


def _weights(folder, name, rank=0):
    return read_state_dict(Path(folder) / f"{name}-rank{rank}.safetensors")


def _history(folder, name, rank=0):
    return pd.read_json(Path(folder) / f"{name}-rank{rank}.json")


def _same(a, b, atol=None):
    assert sorted(a) == sorted(b)
    if atol is None:
        assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    else:
        assert all(torch.allclose(a[k], b[k], atol=atol) for k in a)


@pytest.mark.parametrize("n", [45, 17])
def test_two_sharded_processes_match_one(tmp_path, n):
    """45 = 2 x 16 + 13 (an uneven last batch); 17 = 16 + 1 (process 1 has nothing in the last)."""
    fsdp_jobs.fit_job(tmp_path, "single", n, 16, strategy="ddp")
    ember.launch(fsdp_jobs.fit_job, 2, str(tmp_path), "sharded", n, 8)
    single, sharded = _history(tmp_path, "single"), _history(tmp_path, "sharded")
    assert list(single.columns) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr"]
    for column in single.columns:
        assert sharded[column].to_numpy() == pytest.approx(single[column].to_numpy(), abs=1e-6), column
    assert _history(tmp_path, "sharded", 1).equals(sharded)
    _same(_weights(tmp_path, "single"), _weights(tmp_path, "sharded"), atol=1e-6)
    _same(_weights(tmp_path, "sharded"), _weights(tmp_path, "sharded", 1))  # gathered in both
    expected = torch.load(tmp_path / "single-predict-rank0.pt")
    for r in (0, 1):  # evaluate and predict cover every sample once, on every process
        assert torch.allclose(torch.load(tmp_path / f"sharded-predict-rank{r}.pt"), expected, atol=1e-6)
        evaluated = json.loads((tmp_path / f"sharded-evaluate-rank{r}.json").read_text())
        assert evaluated == pytest.approx(json.loads((tmp_path / "single-evaluate-rank0.json").read_text()))


def test_accumulation_ema_and_clipping_under_fsdp_match_one_process(tmp_path):
    fsdp_jobs.fit_job(tmp_path, "single", 45, 16, "ddp", 3, 4, 0.9, 0.5)
    ember.launch(fsdp_jobs.fit_job, 2, str(tmp_path), "sharded", 45, 8, "fsdp", 3, 4, 0.9, 0.5)
    single, sharded = _history(tmp_path, "single"), _history(tmp_path, "sharded")
    for column in single.columns:
        assert sharded[column].to_numpy() == pytest.approx(single[column].to_numpy(), abs=1e-6), column
    _same(_weights(tmp_path, "single"), _weights(tmp_path, "sharded"), atol=1e-6)


def test_bf16_and_jit_under_fsdp(tmp_path):
    """bf16 becomes FSDP2's policy (bfloat16 compute, float32 parameters, reductions and outputs);
    ``jit`` compiles the sharded net and trains as eagerly."""
    ember.launch(fsdp_jobs.precision_job, 2, str(tmp_path), "eager")
    ember.launch(fsdp_jobs.precision_job, 2, str(tmp_path), "bf16", "bf16")
    ember.launch(fsdp_jobs.precision_job, 2, str(tmp_path), "jit", "32", True)
    eager, bf16, jit = (_history(tmp_path, name) for name in ("eager", "bf16", "jit"))
    assert bf16["loss"].to_numpy() == pytest.approx(eager["loss"].to_numpy(), abs=2e-2)
    assert not bf16["loss"].equals(eager["loss"])  # computed in bfloat16 indeed
    assert jit["loss"].to_numpy() == pytest.approx(eager["loss"].to_numpy(), abs=1e-5)
    dtypes = json.loads((tmp_path / "bf16-dtypes-rank1.json").read_text())
    assert dtypes == {"parameters": "torch.float32", "predictions": "torch.float32"}


def test_a_sharded_checkpoint_holds_each_process_rows_and_resumes_bitwise(tmp_path):
    ember.launch(fsdp_jobs.resume_job, 2, str(tmp_path), "reference", str(tmp_path / "ck-ref"))
    with pytest.raises(LaunchError, match="boom at step 5"):
        ember.launch(fsdp_jobs.resume_job, 2, str(tmp_path), "cut", str(tmp_path / "ck"), 8, 3, 5)
    newest = list_checkpoints(tmp_path / "ck")[-1]
    assert newest.name == "epoch0002-step000000004"  # batch 1 of epoch 2 (3 global batches of 16)
    manifest = json.loads((newest / "manifest.json").read_text())
    shards = manifest["shards"]
    assert shards["world_size"] == 2
    assert shards["layout"]["model"]["0.weight"] == {"shape": [15, 6], "dtype": "float32"}
    assert shards["layout"]["model"]["4.weight"] == {"shape": [3, 15], "dtype": "float32"}
    assert {e["rank"] for e in shards["files"].values()} == {0, 1}
    with (
        safe_open(str(newest / "model.rank0.safetensors"), "pt") as f0,
        safe_open(str(newest / "model.rank1.safetensors"), "pt") as f1,
    ):
        assert f0.get_slice("0.weight").get_shape() == [8, 6]  # torch.chunk rows: 8 + 7
        assert f1.get_slice("0.weight").get_shape() == [7, 6]
        assert f0.get_slice("4.weight").get_shape() == [2, 15]
        assert f1.get_slice("4.weight").get_shape() == [1, 15]
    with safe_open(str(newest / "optimizer.rank1.safetensors"), "pt") as f1:
        assert f1.get_slice("state.0.exp_avg").get_shape() == [7, 6]
    ember.launch(
        fsdp_jobs.resume_job, 2, str(tmp_path), "resumed", str(tmp_path / "ck"), 8, 3, None, "latest"
    )
    for r in (0, 1):
        _same(_weights(tmp_path, "reference", r), _weights(tmp_path, "resumed", r))
    assert _history(tmp_path, "reference").equals(_history(tmp_path, "resumed"))


def test_resume_at_one_process_from_two_and_at_two_from_one(tmp_path):
    """Same global batch (2 x 8 = 16): the re-sharded runs end where the 2-process run ends, up to
    float rounding (the reduction order differs across process counts)."""
    ember.launch(fsdp_jobs.resume_job, 2, str(tmp_path), "two", str(tmp_path / "ck2"), 8, 3, None, None, None)
    after_one = list_checkpoints(tmp_path / "ck2")[0]
    assert after_one.name == "epoch0001-step000000003"
    fsdp_jobs.resume_job(tmp_path, "two-then-one", tmp_path / "ck21", 16, 3, None, after_one, None, "fsdp")
    _same(_weights(tmp_path, "two"), _weights(tmp_path, "two-then-one"), atol=1e-6)
    fsdp_jobs.resume_job(tmp_path, "one", tmp_path / "ck1", 16, 1, None, None, None, "ddp")
    plain = list_checkpoints(tmp_path / "ck1")[0]
    ember.launch(
        fsdp_jobs.resume_job,
        2,
        str(tmp_path),
        "one-then-two",
        str(tmp_path / "ck12"),
        8,
        3,
        None,
        str(plain),
        None,
    )
    _same(_weights(tmp_path, "two"), _weights(tmp_path, "one-then-two"), atol=1e-6)
    history = _history(tmp_path, "one-then-two")
    assert history["loss"].to_numpy() == pytest.approx(_history(tmp_path, "two")["loss"].to_numpy(), abs=1e-6)


def test_a_checkpoint_saved_inside_an_epoch_resumes_only_with_its_process_count(tmp_path):
    with pytest.raises(LaunchError, match="boom at step 2"):
        ember.launch(fsdp_jobs.resume_job, 2, str(tmp_path), "cut", str(tmp_path / "ck"), 8, 3, 2, None, 1)
    inside = list_checkpoints(tmp_path / "ck")[-1]
    with pytest.raises(CheckpointError, match="saved inside an epoch by 2 processes.*with 2 processes"):
        fsdp_jobs.resume_job(tmp_path, "one", tmp_path / "ck1", 16, 3, None, inside, None, "ddp")


def test_load_weights_and_consolidate_assemble_the_full_tensors(tmp_path):
    ember.launch(fsdp_jobs.resume_job, 2, str(tmp_path), "two", str(tmp_path / "ck"), 8, 1, None, None, None)
    checkpoint = list_checkpoints(tmp_path / "ck")[-1]
    gathered = _weights(tmp_path, "two")
    plain = fsdp_jobs.net()
    report = ember.load_weights(plain, checkpoint)
    assert report.ok
    _same(plain.state_dict(), gathered)
    single = ember.consolidate(checkpoint, tmp_path / "model.safetensors")
    _same(read_state_dict(single), gathered)
    with safe_open(str(single), "pt") as f:
        assert f.get_slice("1.up.weight").get_shape() == [30, 15]


def test_whole_weights_load_into_a_sharded_net(tmp_path):
    source = fsdp_jobs.net()
    ember.save_weights(source, tmp_path / "pretrained.safetensors")
    ember.launch(fsdp_jobs.load_into_sharded_job, 2, str(tmp_path), str(tmp_path / "pretrained.safetensors"))
    for r in (0, 1):
        _same(_weights(tmp_path, "loaded", r), source.state_dict())


def test_no_file_of_a_sharded_checkpoint_needs_pickle(tmp_path):
    with pytest.raises(LaunchError):
        ember.launch(fsdp_jobs.resume_job, 2, str(tmp_path), "cut", str(tmp_path / "ck"), 8, 3, 5)
    loaded, suffixes = 0, set()
    for checkpoint in list_checkpoints(tmp_path / "ck"):
        for file in checkpoint.iterdir():
            data = file.read_bytes()
            assert not data.startswith(b"\x80"), file  # every pickle of protocol >= 2 starts so
            suffixes.add(file.suffix)
            if file.suffix == ".json":
                json.loads(data)
            else:
                with safe_open(str(file), "pt") as f:
                    loaded += len([f.get_tensor(k) for k in f.keys()])  # noqa: SIM118 (not iterable)
    assert suffixes == {".json", ".safetensors"}
    assert loaded > 100  # every shard of model, optimizer, RNG, running sums


def test_a_process_killed_while_saving_leaves_the_previous_checkpoint_in_charge(tmp_path):
    ember.launch(fsdp_jobs.resume_job, 2, str(tmp_path), "reference", str(tmp_path / "ck-ref"))
    with pytest.raises(LaunchError, match="exited with code 3"):
        ember.launch(fsdp_jobs.killed_mid_save_job, 2, str(tmp_path), "cut", str(tmp_path / "ck"), 3)
    kept = list_checkpoints(tmp_path / "ck")
    assert [p.name for p in kept] == ["epoch0001-step000000002", "epoch0001-step000000003"]
    assert any(p.name.startswith(".ember-tmp-") for p in (tmp_path / "ck").iterdir())  # the broken one
    ember.launch(
        fsdp_jobs.resume_job, 2, str(tmp_path), "resumed", str(tmp_path / "ck"), 8, 3, None, "latest"
    )
    _same(_weights(tmp_path, "reference"), _weights(tmp_path, "resumed"))
    assert not any(p.name.startswith(".ember-tmp-") for p in (tmp_path / "ck").iterdir())  # cleared


def test_fsdp_in_one_process_warns_and_trains_unsharded(tmp_path):
    with pytest.warns(UserWarning, match="nothing to shard over"):
        model = fsdp_jobs.model("fsdp")
    assert not model.runtime.sharded
    x, y = fsdp_jobs.data()
    history = model.fit((x, y), epochs=1, batch_size=16, verbose=0)
    assert history["loss"].iloc[0] == pytest.approx(1.154413, abs=1e-5)


def test_fsdp_options_are_checked_up_front():
    with pytest.raises(ConfigError, match="strategy='zero' is not one of ddp, fsdp"):
        fsdp_jobs.model("zero")
    net = fsdp_jobs.net()
    with pytest.raises(ConfigError, match="fsdp_blocks holds 'Block'"):
        ember.Model(net).compile(loss=nn.CrossEntropyLoss(), strategy="fsdp", fsdp_blocks=("Block",))
    with pytest.raises(ConfigError, match="cuda_graphs=True cannot be used with strategy='fsdp'"):
        ember.Model(net).compile(loss=nn.CrossEntropyLoss(), strategy="fsdp", cuda_graphs=True)
    with pytest.raises(ConfigError, match='use precision="bf16"'):
        FSDPRuntime("cpu", "16")
    with pytest.raises(ConfigError, match=r"fsdp_blocks=\(GRU,\): Sequential contains no module"):
        sharding_units(net, (nn.GRU,))


def test_sharding_units_are_the_blocks_innermost_first_or_the_large_children():
    net = fsdp_jobs.net(width=15, blocks=2)
    assert sharding_units(net, (fsdp_jobs.Block,)) == [net[2], net[1]]
    assert sharding_units(net, min_params=700) == [net[1], net[2]]  # 15*30*2 + 30 + 15 + 30 = 975
    assert sharding_units(net, min_params=1000) == []


def test_an_optimizer_is_moved_onto_replaced_parameters_unless_it_has_stepped():
    net = nn.Linear(3, 2)
    names = {id(p): name for name, p in net.named_parameters()}
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    net.weight = nn.Parameter(net.weight.detach().clone())  # as fully_shard does
    rebind_optimizers({"optimizer": optimizer}, names, net)
    assert optimizer.param_groups[0]["params"][0] is net.weight
    assert optimizer.param_groups[0]["params"][1] is net.bias
    stepped = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 3)).sum().backward()
    stepped.step()
    names = {id(p): name for name, p in net.named_parameters()}
    net.bias = nn.Parameter(net.bias.detach().clone())
    with pytest.raises(ConfigError, match="'optimizer' already holds state"):
        rebind_optimizers({"optimizer": stepped}, names, net)


def test_a_shard_written_on_another_node_is_named_when_missing(tmp_path):
    manifest = {
        "files": {"state.rank0.json": {"sha256": "", "size": 2}},
        "shards": {
            "world_size": 2,
            "layout": {},
            "files": {
                "model.rank1.safetensors": {"rank": 1, "node": "node 1 (host gpu-b)", "sha256": "", "size": 9}
            },
        },
    }
    saved = SavedTensors(tmp_path, manifest)
    with pytest.raises(
        CheckpointError, match=r"model.rank1.safetensors is not here: process 1 on node 1 \(host gpu-b\)"
    ):
        saved.require("model.rank1.safetensors")
    with pytest.raises(CheckpointError, match="has no file 'optimizer.rank0.safetensors'"):
        saved.require("optimizer.rank0.safetensors")
    os.makedirs(tmp_path, exist_ok=True)
    (tmp_path / "state.rank0.json").write_text("{}}")
    with pytest.raises(CheckpointError, match="has 3 bytes, the manifest says 2"):
        saved.require("state.rank0.json")
