"""Crash-safe checkpoint directories: files written into a temporary sibling folder, fsynced, a
``manifest.json`` (format version, ember/torch versions, sha256 and size of every file) written last,
then the folder renamed into place and the parent fsynced.

A folder without a valid manifest is not a checkpoint: loading refuses it and listing skips it.
Reading verifies every file's size and hash. Stray temporary folders of interrupted writes are
removed by the next write in the same parent. Knows the standard library and torch's version only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import torch

from ember.errors import CheckpointError

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "atomic_write_bytes",
    "commit",
    "fsync_dir",
    "list_checkpoints",
    "manifest_of",
    "read_checkpoint",
    "read_manifest",
    "write_checkpoint",
    "write_file",
]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TMP_PREFIX, _OLD = ".ember-tmp-", ".ember-old-"


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries (renames) to disk where the OS allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write one file atomically (temp file in the same folder, fsync, rename, fsync the folder)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        _write_synced(Path(tmp), data)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(target.parent)
    return target


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ember")
    except PackageNotFoundError:
        return "unknown"


def write_checkpoint(path: str | Path, files: dict[str, bytes], info: dict[str, Any] | None = None) -> Path:
    """Write ``files`` (name -> bytes) as the checkpoint folder ``path``, replacing an existing one.

    ``info`` (JSON-able: epoch, step, ...) goes into the manifest, so checkpoints can be ordered
    without reading their files. Until the final rename, an existing checkpoint at ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stray(target.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{target.name}-", dir=target.parent))
    try:
        entries = {name: write_file(tmp / name, data) for name, data in files.items()}
        commit(tmp, target, manifest_of(entries, info))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def write_file(path: Path, data: bytes) -> dict[str, Any]:
    """Write ``data`` to ``path`` and flush it to disk; returns its manifest entry (sha256, size)."""
    _write_synced(path, data)
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def manifest_of(entries: dict[str, Any], info: dict[str, Any] | None, **more: Any) -> dict[str, Any]:
    """The manifest of a checkpoint whose files have ``entries`` (``more``: further sections)."""
    return {
        "format": FORMAT_VERSION,
        "ember": _version(),
        "torch": torch.__version__,
        "created": time.time(),
        "info": info or {},
        "files": entries,
        **more,
    }


def commit(tmp: Path, target: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest`` last into the filled folder ``tmp``, then rename it to ``target``."""
    _write_synced(tmp / MANIFEST, json.dumps(manifest, indent=1).encode())
    fsync_dir(tmp)
    _swap_into_place(tmp, target)


def _swap_into_place(tmp: Path, target: Path) -> None:
    if target.exists():
        old = target.parent / f"{_OLD}{target.name}-{uuid.uuid4().hex[:8]}"
        os.rename(target, old)  # a crash from here to the next rename is repaired by _recover
        os.rename(tmp, target)
        fsync_dir(target.parent)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, target)
        fsync_dir(target.parent)


def _recover(target: Path) -> None:
    """Put back a checkpoint whose replacement was interrupted between its two renames."""
    if target.exists() or not target.parent.is_dir():
        return
    for old in sorted(target.parent.glob(f"{_OLD}{target.name}-*")):
        if _manifest_or_none(old) is not None:
            os.rename(old, target)
            return


def remove_stray(parent: Path) -> None:
    """Delete temporary folders left by interrupted writes (and superseded old copies)."""
    for entry in parent.glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(entry, ignore_errors=True)
    for entry in parent.glob(f"{_OLD}*"):
        name = entry.name[len(_OLD) :].rsplit("-", 1)[0]
        if (parent / name).exists():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            _recover(parent / name)


def _manifest_or_none(path: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and "files" in manifest else None


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of checkpoint ``path``; CheckpointError when it is missing or unreadable."""
    target = Path(path)
    _recover(target)
    if not target.is_dir():
        raise CheckpointError(f"no checkpoint at {target}")
    manifest = _manifest_or_none(target)
    if manifest is None:
        raise CheckpointError(f"{target} has no valid {MANIFEST}: it is not a complete checkpoint")
    if manifest.get("format", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{target} has format {manifest['format']}; this ember reads up to {FORMAT_VERSION}"
        )
    return manifest


def read_checkpoint(path: str | Path, names: list[str] | None = None) -> dict[str, bytes]:
    """The files of checkpoint ``path`` (all, or ``names``), each checked against the manifest."""
    target = Path(path)
    manifest = read_manifest(target)
    out = {}
    for name in names if names is not None else list(manifest["files"]):
        entry = manifest["files"].get(name)
        if entry is None:
            raise CheckpointError(f"{target} has no file {name!r}")
        try:
            data = (target / name).read_bytes()
        except OSError as exc:
            raise CheckpointError(f"cannot read {target / name}: {exc.strerror}") from exc
        if len(data) != entry["size"]:
            raise CheckpointError(f"{target / name} has {len(data)} bytes, the manifest says {entry['size']}")
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise CheckpointError(f"{target / name} does not match its sha256 in the manifest (altered)")
        out[name] = data
    return out


def is_complete(path: str | Path, verify: bool = True) -> bool:
    """True when ``path`` is a checkpoint whose files all match the manifest (``verify=False``:
    their sizes only, without reading them)."""
    if not verify:
        manifest = _manifest_or_none(Path(path))
        if manifest is None:
            return False
        files = manifest["files"].items()
        return all(
            (Path(path) / n).is_file() and (Path(path) / n).stat().st_size == e["size"] for n, e in files
        )
    try:
        read_checkpoint(path)
    except CheckpointError:
        return False
    return True


def list_checkpoints(dirpath: str | Path, verify: bool = True) -> list[Path]:
    """The complete checkpoints directly inside ``dirpath``, oldest first (by step, then time).

    ``verify=True`` hashes every file (what resuming relies on); ``verify=False`` checks manifests and
    file sizes only, for frequent bookkeeping such as rotation.
    """
    folder = Path(dirpath)
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        if entry.name.startswith((TMP_PREFIX, _OLD)) or not entry.is_dir():
            continue
        manifest = _manifest_or_none(entry)
        if manifest is not None and is_complete(entry, verify):
            info = manifest.get("info", {})
            found.append((info.get("step", -1), manifest.get("created", 0.0), entry))
    return [entry for *_, entry in sorted(found)]
