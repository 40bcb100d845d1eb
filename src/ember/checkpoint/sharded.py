"""Sharded checkpoint folders, written by every process of a run together.

Each process writes its own files (``<name>.rank<r>.safetensors``, ``state.rank<r>.json``: its
rows of the sharded tensors, the rest whole) into one temporary folder; the processes that see
that folder (all of them on a shared filesystem, one machine's on machine-local disks) agree on a
leader, and each leader writes the manifest last and renames the folder into place, exactly as for
a single writer. A manifest lists, under ``files``, the files in its folder (checked on every read
as before) and, under ``shards``, every process's files with their writer's rank and node, the
number of processes and, per state, the global shape and dtype of each sharded tensor.

Reading back with the same number of processes, each process reads its own files (hashes
verified). With another number, each process reads only the rows it now holds from the files that
hold them (sizes verified; the headers are parsed by safetensors, the rows read from a memory
map). A file that is not in the folder a process reads raises an error naming its writer's node.
Knows the checkpoint format, safetensors and torch; processes are reached through ``comm``.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import torch

from ember.checkpoint.format import TMP_PREFIX, commit, manifest_of, read_manifest, remove_stray, write_file
from ember.checkpoint.shards import overlaps, rows_of
from ember.errors import CheckpointError

__all__ = ["SHARDS", "Comm", "SavedTensors", "full_state", "rank_suffix", "write_sharded"]

SHARDS = "shards"


class Comm(Protocol):
    """What writing together needs from the processes (ember's DistributedRuntime has it)."""

    rank: int
    world_size: int

    @property
    def node(self) -> str: ...

    def gather_objects(self, obj: Any) -> list[Any]: ...

    def broadcast_object(self, obj: Any, src: int = 0) -> Any: ...


def rank_suffix(rank: int) -> str:
    """The file-name ending of process ``rank``'s files: ``.rank<r>``."""
    return f".rank{rank}"


def _raise_failures(reports: list[dict[str, Any]], path: Path) -> None:
    failed = [(rank, r) for rank, r in enumerate(reports) if r["error"] is not None]
    if failed:
        rank, report = failed[0]
        raise CheckpointError(
            f"saving the checkpoint {path} failed on process {rank} on {report['node']}: {report['error']}"
        )


def _fill(tmp: Path, files: Mapping[str, bytes], comm: Comm) -> tuple[list[int], dict[str, Any]]:
    """Write this process's files into ``tmp``; returns the processes that see ``tmp`` and the entries."""
    members = sorted(int(p.name.removeprefix(".member")) for p in tmp.glob(".member*"))
    entries = {}
    for name, data in files.items():
        entries[name] = {**write_file(tmp / name, data), "rank": comm.rank, "node": comm.node}
    return members, entries


def write_sharded(
    path: str | Path, files: Mapping[str, bytes], layout: dict[str, Any], info: dict[str, Any], comm: Comm
) -> Path:
    """Write every process's ``files`` as checkpoint folder ``path`` (collective: every process
    calls it). ``layout``: the sharded tensors per state (the same on every process). An error on
    any process is raised on all of them, and the previous checkpoint at ``path`` stays."""
    target = Path(path)
    tmp = target.parent / comm.broadcast_object(f"{TMP_PREFIX}{target.name}-{uuid.uuid4().hex[:12]}")
    report: dict[str, Any] = {"error": None, "node": comm.node, "members": [], "entries": {}}
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / f".member{comm.rank}").touch()
    except OSError as exc:
        report["error"] = f"cannot create {tmp}: {exc.strerror}"
    comm.gather_objects(None)  # every process has marked the folder it sees
    if report["error"] is None:
        try:
            report["members"], report["entries"] = _fill(tmp, files, comm)
        except (OSError, CheckpointError) as exc:
            report["error"] = str(exc)
    reports = comm.gather_objects(report)
    leader = bool(report["members"]) and report["members"][0] == comm.rank
    try:
        _raise_failures(reports, target)
    except CheckpointError:
        if leader:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    outcome = {"error": None, "node": comm.node}
    if leader:
        try:
            _commit_here(tmp, target, reports, report["members"], layout, info)
        except Exception as exc:  # shared below, so that every process raises it
            shutil.rmtree(tmp, ignore_errors=True)
            outcome["error"] = f"{type(exc).__name__}: {exc}"
    _raise_failures(comm.gather_objects(outcome), target)
    return target


def _commit_here(
    tmp: Path,
    target: Path,
    reports: list[dict[str, Any]],
    members: list[int],
    layout: dict[str, Any],
    info: dict[str, Any],
) -> None:
    """Write the manifest of the folder ``tmp`` (its members' files) and rename it into place."""
    everything = {name: entry for report in reports for name, entry in report["entries"].items()}
    here = {name: entry for name, entry in everything.items() if entry["rank"] in members}
    for marker in tmp.glob(".member*"):
        marker.unlink()
    shards = {"world_size": len(reports), "layout": layout, "files": everything}
    commit(tmp, target, manifest_of(here, info, **{SHARDS: shards}))
    remove_stray(target.parent)  # interrupted earlier writes; this one is in place now


class SavedTensors:
    """The tensors a checkpoint folder holds, read by rows: a sharded checkpoint of any number of
    processes, or a plain one (one "process" holding every row).

    Args:
        path: the checkpoint folder.
        manifest: its manifest (``read_manifest``).
    """

    def __init__(self, path: str | Path, manifest: dict[str, Any]) -> None:
        self.path = Path(path)
        self.manifest = manifest
        shards = manifest.get(SHARDS)
        self.world = 1 if shards is None else int(shards["world_size"])
        self.layout: dict[str, Any] = {} if shards is None else shards["layout"]
        self._owners: dict[str, Any] = {} if shards is None else shards["files"]
        self._open: dict[str, Any] = {}

    @property
    def sharded(self) -> bool:
        """True for a checkpoint written by every process (False: by process 0 alone)."""
        return bool(self._owners)

    def suffix(self, rank: int) -> str:
        """The file-name ending of saved process ``rank`` ("" in a plain checkpoint)."""
        return rank_suffix(rank) if self.sharded else ""

    def require(self, name: str) -> Path:
        """The path of file ``name``, checked to be in this folder with its recorded size; a
        CheckpointError names the process and node that wrote a file this folder lacks."""
        entry = self.manifest["files"].get(name)
        if entry is None:
            owner = self._owners.get(name)
            if owner is None:
                raise CheckpointError(f"{self.path} has no file {name!r}")
            raise CheckpointError(
                f"{self.path / name} is not here: process {owner['rank']} on {owner['node']} wrote it to "
                "its own disk; a run reads the files of the processes whose shards it takes, so resume "
                "with the same processes on the same nodes, or copy the checkpoint's files into one folder"
            )
        file = self.path / name
        size = file.stat().st_size if file.is_file() else -1
        if size != entry["size"]:
            raise CheckpointError(f"{file} has {size} bytes, the manifest says {entry['size']}")
        return file

    def _handle(self, name: str) -> Any:
        if name not in self._open:
            from safetensors import safe_open

            self._open[name] = safe_open(str(self.require(name)), framework="pt")
        return self._open[name]

    def whole(self, state: str, key: str, rank: int = 0) -> torch.Tensor:
        """Tensor ``key`` of ``state`` as saved by process ``rank`` (a tensor stored whole)."""
        return self._handle(f"{state}{self.suffix(rank)}.safetensors").get_tensor(key)

    def shape(self, state: str, key: str) -> list[int]:
        """The global shape of tensor ``key`` of ``state``."""
        sharded = self.layout.get(state, {}).get(key)
        if sharded is not None:
            return list(sharded["shape"])
        return list(self._handle(f"{state}{self.suffix(0)}.safetensors").get_slice(key).get_shape())

    def rows(self, state: str, key: str, start: int, stop: int) -> torch.Tensor:
        """Rows ``[start, stop)`` of tensor ``key`` of ``state``, from the files that hold them."""
        if key not in self.layout.get(state, {}):
            return self._handle(f"{state}{self.suffix(0)}.safetensors").get_slice(key)[start:stop]
        length = self.shape(state, key)[0]
        pieces = []
        for rank, first, last in overlaps(start, stop, length, self.world):
            offset = rows_of(length, self.world, rank)[0]
            piece = self._handle(f"{state}{rank_suffix(rank)}.safetensors").get_slice(key)
            pieces.append(piece[first - offset : last - offset])
        if not pieces:
            return self._empty(state, key)
        return torch.cat(pieces) if len(pieces) > 1 else pieces[0]

    def full(self, state: str, key: str) -> torch.Tensor:
        """Tensor ``key`` of ``state`` whole (a sharded one assembled from every process's rows)."""
        shape = self.shape(state, key)
        return self.rows(state, key, 0, shape[0]) if shape else self.whole(state, key)

    def _empty(self, state: str, key: str) -> torch.Tensor:
        entry = self.layout[state][key]
        return torch.empty([0, *entry["shape"][1:]], dtype=getattr(torch, entry["dtype"]))

    def keys(self, state: str, rank: int = 0) -> list[str]:
        """The tensor keys of ``state`` in saved process ``rank``'s file."""
        return list(self._handle(f"{state}{self.suffix(rank)}.safetensors").keys())


def full_state(path: str | Path, state: str = "model") -> dict[str, torch.Tensor]:
    """The flat tensors of ``state`` in checkpoint ``path`` with every sharded tensor assembled
    whole from the files of all processes (a plain checkpoint's as they are).

    Example:
        >>> import tempfile
        >>> from ember.checkpoint.objects import save_states
        >>> p = save_states(tempfile.mkdtemp() + "/ck", {"model": {"w": torch.ones(2)}})
        >>> full_state(p)
        {'w': tensor([1., 1.])}
    """
    saved = SavedTensors(path, read_manifest(path))
    return {key: saved.full(state, key) for key in saved.keys(state)}
