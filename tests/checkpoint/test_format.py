"""Crash safety of checkpoint folders: kill -9, exceptions, full disks, truncation, byte flips."""

import errno
import os
import random
import signal
import time

import pytest
import torch

from ember.checkpoint import list_checkpoints, load_states, read_checkpoint, save_states, write_checkpoint
from ember.checkpoint.format import MANIFEST
from ember.errors import CheckpointError


def _save(path, value, step):
    return save_states(
        path, {"model": {"w": torch.full((50_000,), float(value))}}, {"step": step}, info={"step": step}
    )


def _value(path):
    states, extra = load_states(path)
    return states["model"]["w"][0].item(), extra["step"]


def test_round_trip_and_manifest(tmp_path):
    path = _save(tmp_path / "ck", 3, 7)
    assert sorted(p.name for p in path.iterdir()) == [MANIFEST, "model.safetensors", "state.json"]
    assert _value(path) == (3.0, 7)
    manifest = read_checkpoint(path, ["state.json"])
    assert list(manifest) == ["state.json"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_kill_9_at_random_moments_never_leaves_a_broken_checkpoint(tmp_path):
    rng = random.Random(0)
    for trial in range(50):
        pid = os.fork()
        if pid == 0:  # child: save forever, new folders and one replaced in place
            try:
                torch.set_num_threads(1)  # the parent's intra-op thread pool does not survive a fork
                step = 1000 * trial
                while True:
                    step += 1
                    _save(tmp_path / f"ck{step:08d}", step, step)
                    _save(tmp_path / "latest", step, step)
            finally:
                os._exit(0)
        time.sleep(rng.uniform(0.0, 0.06))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"child ended: {status}"
        found = list_checkpoints(tmp_path)
        for path in found:  # every listed checkpoint is complete and consistent
            value, step = _value(path)
            assert value == step
        if (tmp_path / "latest" / MANIFEST).exists() or any(tmp_path.glob(".ember-old-latest-*")):
            value, step = _value(tmp_path / "latest")  # repaired if a replacement was cut short
            assert value == step
    _save(tmp_path / "final", 1, 1)  # the next write removes what interrupted writes left behind
    assert not list(tmp_path.glob(".ember-tmp-*"))


def test_an_exception_or_a_full_disk_mid_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = _save(tmp_path / "ck", 1, 1)
    real_write = os.write

    def full_disk(fd, data):
        if len(data) > 1000:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr("builtins.open", _failing_open(open, full_disk))
    with pytest.raises(OSError, match="No space left"):
        _save(path, 2, 2)
    monkeypatch.undo()
    assert _value(path) == (1.0, 1)
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]  # the temporary folder is gone

    def boom(*args, **kwargs):
        raise RuntimeError("boom while writing")

    monkeypatch.setattr("ember.checkpoint.format._write_synced", boom)
    with pytest.raises(RuntimeError, match="boom"):
        _save(path, 3, 3)
    monkeypatch.undo()
    assert _value(path) == (1.0, 1)


def _failing_open(real_open, write):
    class Handle:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            return write(self.handle.fileno(), data)

        def __getattr__(self, name):
            return getattr(self.handle, name)

    def opener(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        return Handle(handle) if "w" in mode and ".ember-tmp-" in str(file) else handle

    return opener


def test_truncations_and_byte_flips_are_all_detected(tmp_path):
    path = _save(tmp_path / "ck", 5, 5)
    rng = random.Random(1)
    files = ["model.safetensors", "state.json"]
    originals = {name: (path / name).read_bytes() for name in files}
    for trial in range(100):
        name = files[trial % 2]
        data = bytearray(originals[name])
        if trial % 4 < 2:
            data = data[: rng.randrange(len(data))]
        else:
            position = rng.randrange(len(data))
            data[position] ^= 1 << rng.randrange(8)
        (path / name).write_bytes(bytes(data))
        with pytest.raises(CheckpointError, match=name):
            load_states(path)
        assert path not in list_checkpoints(tmp_path)
        (path / name).write_bytes(originals[name])
    assert _value(path) == (5.0, 5)


def test_a_folder_without_manifest_is_not_a_checkpoint(tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "model.safetensors").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="no valid manifest.json"):
        load_states(tmp_path / "half")
    assert list_checkpoints(tmp_path) == []
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_states(tmp_path / "missing")


def test_interrupted_replacement_is_repaired(tmp_path):
    path = _save(tmp_path / "latest", 1, 1)
    os.rename(path, tmp_path / ".ember-old-latest-1234abcd")  # as if killed between the two renames
    assert _value(tmp_path / "latest") == (1.0, 1)


def test_checkpoints_are_listed_by_step(tmp_path):
    for step in (30, 10, 20):
        write_checkpoint(tmp_path / f"s{step}", {"a": b"1"}, info={"step": step})
    assert [p.name for p in list_checkpoints(tmp_path)] == ["s10", "s20", "s30"]


def test_listing_without_verification_checks_sizes_only(tmp_path):
    path = _save(tmp_path / "ck", 5, 5)
    data = bytearray((path / "state.json").read_bytes())
    data[0] ^= 1  # same size, altered content
    (path / "state.json").write_bytes(bytes(data))
    assert list_checkpoints(tmp_path, verify=False) == [path]
    assert list_checkpoints(tmp_path) == []
    (path / "state.json").write_bytes(bytes(data[:-1]))
    assert list_checkpoints(tmp_path, verify=False) == []
