"""save_checkpoint / load_checkpoint: any set of objects with ``state_dict()`` plus JSON-able extras,
in one safe, atomic, verified checkpoint folder.

Each object's tensors go into ``<name>.safetensors`` (a module's file holds its plain state-dict
keys, readable by any safetensors tool); everything else (optimizer hyper-parameters, counters,
extras) goes into ``state.json``. Built on ``checkpoint.format`` and ``checkpoint.tree``.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from ember.checkpoint.format import read_checkpoint, read_manifest, write_checkpoint
from ember.checkpoint.shards import localize
from ember.checkpoint.tree import decode_tree, encode_tree
from ember.errors import CheckpointError

__all__ = [
    "load_checkpoint",
    "load_states",
    "load_tensor_bytes",
    "save_checkpoint",
    "save_states",
    "state_files",
    "tensor_bytes",
]

STATE_FILE = "state.json"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def tensor_bytes(tensors: Mapping[str, torch.Tensor], where: str = "") -> bytes:
    """safetensors bytes of ``tensors``, copied to CPU, contiguous and unshared (views, tied weights)."""
    prepared = {}
    for key, tensor in tensors.items():
        tensor = tensor.detach()
        tensor = (
            tensor.cpu().contiguous()
            if tensor.device.type != "cpu"
            else tensor.clone(memory_format=torch.contiguous_format)
        )
        prepared[key] = tensor
    from safetensors import SafetensorError  # loaded with the first checkpoint, not with ember
    from safetensors.torch import save

    try:
        return save(prepared)
    except (SafetensorError, ValueError, TypeError) as exc:
        raise CheckpointError(f"cannot write the tensors of {where or 'the checkpoint'}: {exc}") from exc


def load_tensor_bytes(data: bytes, where: str) -> dict[str, torch.Tensor]:
    """The tensors of safetensors ``data`` (read from ``where``, which a CheckpointError names)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        return load(data)
    except (SafetensorError, ValueError) as exc:
        raise CheckpointError(f"{where} is not a valid safetensors file: {exc}") from exc


def state_files(
    states: Mapping[str, Any], extra: Mapping[str, Any] | None = None, suffix: str = ""
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """``(files, layout)``: the files of plain state trees (name -> nested dict/list of tensors and
    JSON values) and ``extra``, each name ending in ``suffix``; sharded tensors (DTensors) are
    stored as this process's rows, and ``layout`` names them per state (see ``shards.localize``)."""
    files: dict[str, bytes] = {}
    skeletons, layout = {}, {}
    for name, state in states.items():
        if not _NAME.match(name) or name in ("state", "manifest", "extra"):
            raise CheckpointError(f"{name!r} cannot name a checkpoint entry (letters, digits, _ . - only)")
        skeletons[name], tensors = encode_tree(state)
        tensors, sharded = localize(tensors)
        if sharded:
            layout[name] = sharded
        files[f"{name}{suffix}.safetensors"] = tensor_bytes(tensors, name)
    extra_skeleton, extra_tensors = encode_tree(dict(extra or {}))
    if extra_tensors:
        files[f"extra{suffix}.safetensors"] = tensor_bytes(extra_tensors, "extra")
    document = {"objects": skeletons, "extra": extra_skeleton}
    files[f"{STATE_FILE.removesuffix('.json')}{suffix}.json"] = json.dumps(document, allow_nan=True).encode()
    return files, layout


def save_states(
    path: str | Path,
    states: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    info: dict[str, Any] | None = None,
) -> Path:
    """Write plain state trees (name -> nested dict/list of tensors and JSON values) and ``extra``."""
    files, layout = state_files(states, extra)
    if layout:
        raise CheckpointError(
            f"the states {sorted(layout)} hold sharded tensors: a fully sharded run saves them with "
            "every process (ember.checkpoint.sharded.write_sharded)"
        )
    return write_checkpoint(path, files, info)


Convert = Callable[[str, dict[str, torch.Tensor]], dict[str, torch.Tensor]]


def load_states(
    path: str | Path, names: list[str] | None = None, suffix: str = "", convert: Convert | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(states, extra)`` of a checkpoint folder, every file verified; ``names`` limits the states.

    Args:
        suffix: the file names' ending (a sharded checkpoint's ``.rank<r>``).
        convert: ``(state name, flat tensors) -> flat tensors``, applied before the trees are
            rebuilt (a sharded run turns its saved rows back into DTensors).
    """
    manifest = read_manifest(path)
    state_file = f"{STATE_FILE.removesuffix('.json')}{suffix}.json"
    document = json.loads(read_checkpoint(path, [state_file])[state_file])
    wanted = list(document["objects"]) if names is None else names
    extra_file = f"extra{suffix}.safetensors"
    files = read_checkpoint(
        path,
        [f"{n}{suffix}.safetensors" for n in wanted if n in document["objects"]]
        + ([extra_file] if extra_file in manifest["files"] else []),
    )
    states = {}
    for name in wanted:
        if name in document["objects"]:
            file = f"{name}{suffix}.safetensors"
            tensors = load_tensor_bytes(files[file], str(Path(path) / file))
            if convert is not None:
                tensors = convert(name, tensors)
            states[name] = decode_tree(document["objects"][name], tensors)
    extra = files.get(extra_file)
    extra_tensors = {} if extra is None else load_tensor_bytes(extra, "extra")
    return states, decode_tree(document["extra"], extra_tensors)


def save_checkpoint(path: str | Path, objects: Mapping[str, Any], **extra: Any) -> Path:
    """Save every object's ``state_dict()`` and the JSON-able ``extra`` values to folder ``path``.

    Example:
        >>> import tempfile
        >>> net = torch.nn.Linear(2, 1); opt = torch.optim.SGD(net.parameters(), lr=0.1)
        >>> p = save_checkpoint(tempfile.mkdtemp() + "/ck", {"model": net, "optimizer": opt}, epoch=3)
        >>> load_checkpoint(p, {"model": net, "optimizer": opt})
        {'epoch': 3}
    """
    states = {name: obj.state_dict() if hasattr(obj, "state_dict") else obj for name, obj in objects.items()}
    return save_states(path, states, extra)


def load_checkpoint(path: str | Path, objects: Mapping[str, Any], strict: bool = True) -> dict[str, Any]:
    """Load a checkpoint into ``objects`` (name -> object with ``load_state_dict``); returns the extras.

    Names given but absent from the file, or in the file but not given, raise CheckpointError listing
    both (``strict=False``: load the common names and warn about the rest).
    """
    document = json.loads(read_checkpoint(path, [STATE_FILE])[STATE_FILE])
    stored, given = set(document["objects"]), set(objects)
    missing, unused = sorted(given - stored), sorted(stored - given)
    if missing or unused:
        message = (
            f"{path}: names missing from the checkpoint: {missing}; in the checkpoint but not given: {unused}"
        )
        if strict:
            raise CheckpointError(message)
        warnings.warn(message, stacklevel=2)
    states, extra = load_states(path, sorted(given & stored))
    for name, state in states.items():
        try:
            objects[name].load_state_dict(state)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{path}: {name!r} does not fit the saved state: {exc}") from exc
    return extra
