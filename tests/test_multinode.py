"""Several machines simulated on one: two torchrun launchers (``--nnodes=2 --nproc_per_node=1``)
meeting at a c10d rendezvous on 127.0.0.1 train like one ``--standalone --nproc_per_node=2`` job,
under DDP and FSDP. Each node keeps its checkpoints in its own folder (no shared filesystem):
FSDP resumes from its per-process shards; DDP, whose checkpoints process 0 writes alone, refuses
before any step with an error naming the missing file and the node."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from ember.checkpoint import list_checkpoints, read_state_dict

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "multinode_job.py"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# torchrun gives each process one thread when it starts several per node, not with one per node;
# the same for both, so that both compute in the same order.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _torchrun(*options: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *options, str(SCRIPT)]


def _standalone(*args: str, restarts: int = 0) -> subprocess.CompletedProcess:
    command = _torchrun("--standalone", "--nproc_per_node=2", f"--max-restarts={restarts}") + list(args)
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=ENV)


def _two_nodes(*args: str) -> list[subprocess.CompletedProcess]:
    """Two launchers, one per simulated node, started together; their results."""
    endpoint = f"--rdzv-endpoint=127.0.0.1:{_free_port()}"
    options = ("--nnodes=2", "--nproc_per_node=1", "--rdzv-backend=c10d", endpoint, "--rdzv-id=ember-test")
    launchers = [
        subprocess.Popen(
            _torchrun(*options) + list(args),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for _ in range(2)
    ]
    results = []
    for launcher in launchers:
        stdout, stderr = launcher.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(launcher.args, launcher.returncode, stdout, stderr))
    return results


def _weights(folder: Path, name: str, rank: int = 0) -> dict[str, torch.Tensor]:
    return read_state_dict(folder / f"{name}-rank{rank}.safetensors")


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_nodes_train_like_one_node_with_two_processes(tmp_path, strategy):
    standalone = _standalone(str(tmp_path), "standalone", strategy, "fit")
    assert standalone.returncode == 0, standalone.stderr[-3000:]
    for node in _two_nodes(str(tmp_path), "nodes", strategy, "fit"):
        assert node.returncode == 0, node.stderr[-3000:]
    one, two = _weights(tmp_path, "standalone"), _weights(tmp_path, "nodes")
    assert all(torch.equal(one[k], two[k]) for k in one)
    assert all(torch.equal(two[k], _weights(tmp_path, "nodes", 1)[k]) for k in two)
    history = pd.read_json(tmp_path / "nodes-rank0.json")
    assert history.equals(pd.read_json(tmp_path / "standalone-rank0.json"))
    assert history["epoch"].tolist() == [1, 2, 3]


def test_fsdp_resumes_with_each_node_reading_only_its_own_folder(tmp_path):
    reference = _standalone(str(tmp_path), "uncut", "fsdp", "full")
    assert reference.returncode == 0, reference.stderr[-3000:]
    cut = _two_nodes(str(tmp_path), "nodes", "fsdp", "cut")
    assert all(node.returncode != 0 for node in cut)
    assert "boom at step 5" in cut[0].stderr + cut[1].stderr
    folders = [tmp_path / "ck-nodes" / f"node{n}" for n in (0, 1)]
    for n, folder in enumerate(folders):  # each folder holds its own process's shards only
        kept = [p.name for p in list_checkpoints(folder)]
        assert kept == ["epoch0001-step000000003", "epoch0002-step000000004"]  # rotated on each node
        newest = list_checkpoints(folder)[-1]
        assert sorted(p.name for p in newest.glob("model.*")) == [f"model.rank{n}.safetensors"]
    for node in _two_nodes(str(tmp_path), "nodes", "fsdp", "resume"):
        assert node.returncode == 0, node.stderr[-3000:]
    uncut, resumed = _weights(tmp_path, "uncut"), _weights(tmp_path, "nodes")
    assert all(torch.equal(uncut[k], resumed[k]) for k in uncut)


def test_ddp_refuses_to_resume_from_a_checkpoint_another_node_wrote(tmp_path):
    cut = _two_nodes(str(tmp_path), "nodes", "ddp", "cut")
    assert all(node.returncode != 0 for node in cut)
    written = list_checkpoints(tmp_path / "ck-nodes" / "node0")
    assert written
    assert list_checkpoints(tmp_path / "ck-nodes" / "node1") == []  # process 0 wrote them all
    refused = _two_nodes(str(tmp_path), "nodes", "ddp", "resume")
    assert all(node.returncode != 0 for node in refused)
    newest = written[-1].name
    expected = f"ck-nodes/node1/{newest}/manifest.json is missing for process 1 on node 1 (host "
    for node in refused:
        assert expected in node.stderr, node.stderr[-3000:]
    assert list_checkpoints(tmp_path / "ck-nodes" / "node0") == written  # no step was taken
    assert not (tmp_path / "nodes-rank0.json").exists()


def test_a_torchrun_restart_of_a_sharded_run_resumes_bitwise(tmp_path):
    reference = _standalone(str(tmp_path), "uncut", "fsdp", "full")
    assert reference.returncode == 0, reference.stderr[-3000:]
    restarted = _standalone(str(tmp_path), "restarted", "fsdp", "restart", restarts=1)
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    assert "boom at step 5" in restarted.stderr  # the first attempt failed
    uncut, resumed = _weights(tmp_path, "uncut"), _weights(tmp_path, "restarted")
    assert all(torch.equal(uncut[k], resumed[k]) for k in uncut)
