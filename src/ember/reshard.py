"""The states one process loads from a checkpoint, whatever wrote it: its own shards of a sharded
checkpoint of the same number of processes, or tensors re-cut from any checkpoint (sharded or
plain) for a run with another number of processes or another strategy.

A tensor becomes this process's rows of a DTensor when the model holds a sharded tensor there: a
parameter or buffer of the sharded net, an optimizer moment of a sharded parameter (same shape),
the weight average of a sharded parameter. Everything else is read whole. Per-process states (the
random states; the running epoch's sums and accumulation window of a checkpoint saved inside an
epoch) come from process ``rank`` of the saved run, or ``rank`` modulo its size. A checkpoint
saved inside an epoch resumes only with the number of processes that saved it. Layer 3: uses
checkpoint and the model's runtime.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from ember.checkpoint.format import read_checkpoint, read_manifest
from ember.checkpoint.objects import STATE_FILE, load_states, load_tensor_bytes
from ember.checkpoint.sharded import SavedTensors, rank_suffix
from ember.checkpoint.shards import from_rows, is_sharded, rows_of
from ember.checkpoint.tree import decode_tree
from ember.errors import CheckpointError

__all__ = ["PER_PROCESS", "load_process_states"]

PER_PROCESS = ("rng", "meter", "window")
_MOMENT = re.compile(r"^state\.(\d+)\.[^.]+$")


def load_process_states(model: Any, path: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(states, extra, mine)`` this process loads from checkpoint ``path``: the shared states,
    the extras and this process's own (``rng``, ``meter``, ``window``)."""
    runtime = model.runtime
    saved = SavedTensors(path, read_manifest(path))
    if not saved.sharded and not runtime.sharded:
        return _plain(path, runtime)
    if runtime.sharded and saved.sharded and saved.world == runtime.world_size:
        return _own_shards(path, saved, runtime)
    return _recut(model, path, saved)


def _processes(n: int) -> str:
    return f"{n} process" if n == 1 else f"{n} processes"


def _check_world(path: Path, extra: dict[str, Any], saved_world: int, world: int) -> None:
    if extra["progress"]["in_epoch"] and saved_world != world:
        raise CheckpointError(
            f"{path} was saved inside an epoch by {_processes(saved_world)}; a checkpoint saved "
            f"inside an epoch resumes with the same number of processes (this run has {world}): "
            f"resume from an epoch-end checkpoint, or with {_processes(saved_world)}"
        )


def _plain(path: Path, runtime: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    states, extra = load_states(path)
    saved_world = int(extra["world_size"])
    _check_world(path, extra, saved_world, runtime.world_size)
    mine = {name: states.pop(name)[runtime.rank % saved_world] for name in PER_PROCESS if name in states}
    return states, extra, mine


def _own_shards(
    path: Path, saved: SavedTensors, runtime: Any
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    suffix = rank_suffix(runtime.rank)
    for name in saved.manifest["shards"]["files"]:
        if name.endswith(f"{suffix}.safetensors") or name == f"state{suffix}.json":
            saved.require(name)

    def convert(state: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        layout = saved.layout.get(state, {})
        return {
            k: from_rows(t, layout[k]["shape"], runtime.mesh) if k in layout else t
            for k, t in tensors.items()
        }

    states, extra = load_states(path, suffix=suffix, convert=convert)
    mine = {name: states.pop(name) for name in PER_PROCESS if name in states}
    return states, extra, mine


def _document(path: Path, saved: SavedTensors, rank: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(document, extra)`` of saved process ``rank``'s state file."""
    suffix = saved.suffix(rank)
    name = f"{STATE_FILE.removesuffix('.json')}{suffix}.json"
    saved.require(name)
    document = json.loads(read_checkpoint(path, [name])[name])
    extra_file = f"extra{suffix}.safetensors"
    tensors = {}
    if extra_file in saved.manifest["files"]:
        tensors = load_tensor_bytes(read_checkpoint(path, [extra_file])[extra_file], str(path / extra_file))
    return document, decode_tree(document["extra"], tensors)


def _recut(
    model: Any, path: Path, saved: SavedTensors
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    runtime = model.runtime
    source = runtime.rank % saved.world
    document, extra = _document(path, saved, source)
    _check_world(path, extra, saved.world, runtime.world_size)
    targets = _sharded_targets(model)
    states = {}
    for name, skeleton in document["objects"].items():
        if name in PER_PROCESS:
            continue
        tensors = {
            key: _tensor(saved, name, key, targets.get(name, {}), runtime, source)
            for key in saved.keys(name, source)
        }
        states[name] = decode_tree(skeleton, tensors)
    per_process, _ = load_states(
        path, [n for n in PER_PROCESS if n in document["objects"]], suffix=saved.suffix(source)
    )
    if not saved.sharded:  # a plain checkpoint keeps every process's states in one list
        per_process = {name: value[source] for name, value in per_process.items()}
    return states, extra, per_process


def _tensor(
    saved: SavedTensors, state: str, key: str, targets: dict[str, list[int]], runtime: Any, source: int
) -> torch.Tensor:
    """Tensor ``key`` of ``state`` as this process holds it: its rows when the model shards it."""
    shape = saved.shape(state, key)
    if _matches(key, shape, targets):
        start, stop = rows_of(shape[0], runtime.world_size, runtime.rank)
        return from_rows(saved.rows(state, key, start, stop), shape, runtime.mesh)
    if key in saved.layout.get(state, {}):
        return saved.full(state, key)
    return saved.whole(state, key, source)


def _matches(key: str, shape: list[int], targets: dict[str, list[int]]) -> bool:
    moment = _MOMENT.match(key)
    wanted = targets.get(f"state.{moment.group(1)}.*" if moment else key)
    return wanted is not None and list(wanted) == list(shape) and len(shape) > 0


def _sharded_targets(model: Any) -> dict[str, dict[str, list[int]]]:
    """Per state, the keys (``state.<i>.*`` for an optimizer's moments) the model holds sharded,
    with their global shapes."""
    if not model.runtime.sharded:
        return {}
    params = {name: p for name, p in model.net.named_parameters() if is_sharded(p)}
    targets = {"model": {k: list(v.shape) for k, v in model.net.state_dict().items() if is_sharded(v)}}
    targets["ema"] = {f"average.{name}": list(p.shape) for name, p in params.items()}
    for name, optimizer in model.optimizers.items():
        ordered = [p for group in optimizer.param_groups for p in group["params"]]
        key = "optimizer" if optimizer is model.optimizer else f"optimizer.{name}"
        targets[key] = {f"state.{i}.*": list(p.shape) for i, p in enumerate(ordered) if is_sharded(p)}
    return targets
