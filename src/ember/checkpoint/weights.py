"""Weights for reuse: save as safetensors; load from safetensors, ``.pt``/``.pth`` state dicts (never
unpickling code) or ember checkpoint folders, with renaming, prefix handling and a LoadReport.

Tensors are copied to CPU, made contiguous and unshared before writing, so tied weights and views
save correctly. Errors name the file and the keys.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes

from ember.checkpoint.format import MANIFEST, atomic_write_bytes, read_checkpoint
from ember.checkpoint.objects import tensor_bytes
from ember.errors import CheckpointError

__all__ = ["LoadReport", "load_weights", "read_state_dict", "save_weights", "write_state_dict"]

KNOWN_PREFIXES = ("module.", "_orig_mod.", "net.")
Rename = Mapping[str, str] | Callable[[str], str] | None


def write_state_dict(state: Mapping[str, torch.Tensor], path: str | Path) -> Path:
    """Write a flat dict of tensors to a safetensors file atomically."""
    return atomic_write_bytes(path, tensor_bytes(state, str(path)))


def save_weights(net: torch.nn.Module, path: str | Path) -> Path:
    """Save ``net.state_dict()`` (parameters and buffers) to ``path`` as safetensors.

    Example:
        >>> import tempfile, pathlib
        >>> p = save_weights(torch.nn.Linear(2, 1), pathlib.Path(tempfile.mkdtemp()) / "w.safetensors")
        >>> sorted(read_state_dict(p))
        ['bias', 'weight']
    """
    return write_state_dict(net.state_dict(), path)


@contextlib.contextmanager
def _weights_only_forced() -> Iterator[None]:
    """torch.load honours TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD; ember never lets it unpickle code."""
    saved = os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = saved


def _read_pickle_file(file: Path, trust_pickle: bool) -> Any:
    if trust_pickle:
        return torch.load(file, map_location="cpu", weights_only=False)  # trust_pickle=True only
    with _weights_only_forced():
        try:
            return torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
            if "weights only" in str(exc).lower() or "weights_only" in str(exc):
                raise CheckpointError(
                    f"{file} needs full unpickling, which can run arbitrary code; ember refuses it. "
                    "If you trust the file, pass trust_pickle=True."
                ) from exc
            raise CheckpointError(f"cannot read {file}: {exc}") from exc


def _state_of(obj: Any, file: Path, key: str | None) -> dict[str, torch.Tensor]:
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            raise CheckpointError(f"{file} has no entry {key!r}")
        obj = obj[key]
    if isinstance(obj, Mapping) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj)
    if isinstance(obj, Mapping):
        inner = [
            k
            for k, v in obj.items()
            if isinstance(v, Mapping) and v and all(isinstance(t, torch.Tensor) for t in v.values())
        ]
        if len(inner) == 1:
            return dict(obj[inner[0]])
        raise CheckpointError(
            f"{file} holds a dict with entries {sorted(map(str, obj))}; "
            "pass key=... to say which one is the state dict"
        )
    raise CheckpointError(f"{file} holds a {type(obj).__name__}, not a state dict")


def read_state_dict(
    path: str | Path, trust_pickle: bool = False, key: str | None = None
) -> dict[str, torch.Tensor]:
    """A flat state dict from a ``.safetensors`` file, a ``.pt``/``.pth`` file or a checkpoint folder."""
    file = Path(path)
    if file.is_dir():
        if not (file / MANIFEST).exists():
            raise CheckpointError(f"{file} is a folder but not an ember checkpoint (no {MANIFEST})")
        data = read_checkpoint(file, ["model.safetensors"])["model.safetensors"]
        return load_bytes(data)
    if not file.exists():
        raise CheckpointError(f"cannot read weights file {file}: no such file")
    if file.suffix in (".pt", ".pth", ".bin", ".tar", ".ckpt"):
        return _state_of(_read_pickle_file(file, trust_pickle), file, key)
    try:
        return load_bytes(file.read_bytes())
    except (SafetensorError, ValueError) as exc:
        raise CheckpointError(f"{file} is not a valid safetensors file: {exc}") from exc


@dataclass
class LoadReport:
    """What ``load_weights`` did: keys loaded, missing (in the model only), unexpected (in the file
    only) and shape-mismatched (``key -> (file shape, model shape)``), after renaming."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every key matched."""
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        rows = [f"{'status':<12} key"]
        rows += [f"{'loaded':<12} {k}" for k in self.loaded]
        rows += [f"{'missing':<12} {k}" for k in self.missing]
        rows += [f"{'unexpected':<12} {k}" for k in self.unexpected]
        rows += [
            f"{'mismatched':<12} {k}  file {list(a)} vs model {list(b)}"
            for k, (a, b) in self.mismatched.items()
        ]
        rows.append(
            f"{len(self.loaded)} loaded, {len(self.missing)} missing, {len(self.unexpected)} unexpected, "
            f"{len(self.mismatched)} mismatched"
        )
        return "\n".join(rows)


def _rename(keys: list[str], rename: Rename) -> dict[str, str]:
    if rename is None:
        return {k: k for k in keys}
    if callable(rename):
        return {k: rename(k) for k in keys}
    out = {}
    for key in keys:
        new = key
        for pattern, replacement in rename.items():
            new = re.sub(pattern, replacement, new)
        out[key] = new
    return out


def _align_prefixes(names: dict[str, str], target: set[str]) -> dict[str, str]:
    """Strip or add ``module.`` / ``_orig_mod.`` / ``net.`` when that makes more keys match."""

    def matches(mapping: dict[str, str]) -> int:
        return sum(v in target for v in mapping.values())

    best = names
    for prefix in KNOWN_PREFIXES:
        if names and all(v.startswith(prefix) for v in names.values()):
            stripped = {k: v[len(prefix) :] for k, v in names.items()}
            best = stripped if matches(stripped) > matches(best) else best
        if target and all(t.startswith(prefix) for t in target):
            added = {k: prefix + v for k, v in best.items()}
            best = added if matches(added) > matches(best) else best
    return best


def load_weights(
    net: torch.nn.Module,
    path: str | Path | Mapping[str, torch.Tensor],
    strict: bool = True,
    rename: Rename = None,
    skip_mismatched: bool = False,
    trust_pickle: bool = False,
    key: str | None = None,
) -> LoadReport:
    """Load weights into ``net`` and report what matched.

    Args:
        net: the module to load into.
        path: a ``.safetensors`` / ``.pt`` / ``.pth`` file, an ember checkpoint folder, or a state dict.
        strict: raise one CheckpointError listing missing, unexpected and mismatched keys;
            ``strict=False`` loads what fits and skips the rest (shape mismatches included).
        rename: ``{regex: replacement}`` applied in order, or a function of the key.
        skip_mismatched: with ``strict=True``, tolerate (skip) shape mismatches only.
        trust_pickle: allow full unpickling of a ``.pt`` file you trust (never the default).
        key: the entry of a ``.pt`` dict that holds the state dict (found automatically when unique).

    Example:
        >>> state = {"net.weight": torch.ones(1, 2), "net.bias": torch.ones(1)}  # prefix stripped
        >>> load_weights(torch.nn.Linear(2, 1), state).loaded
        ['bias', 'weight']
    """
    source = dict(path) if isinstance(path, Mapping) else read_state_dict(path, trust_pickle, key)
    target = net.state_dict()
    names = _align_prefixes(_rename(list(source), rename), set(target))
    report = LoadReport(renamed={k: v for k, v in names.items() if k != v})
    fitting = {}
    for old, new in names.items():
        if new not in target:
            report.unexpected.append(new)
        elif tuple(source[old].shape) != tuple(target[new].shape):
            report.mismatched[new] = (tuple(source[old].shape), tuple(target[new].shape))
        else:
            fitting[new] = source[old]
    report.missing = sorted(set(target) - set(names.values()))
    report.loaded, report.unexpected = sorted(fitting), sorted(report.unexpected)
    problems = report.missing or report.unexpected or (report.mismatched and not skip_mismatched)
    if strict and problems:
        where = path if not isinstance(path, Mapping) else "the state dict"
        raise CheckpointError(f"weights in {where} do not fit {type(net).__name__}:\n{report}")
    net.load_state_dict(fitting, strict=False)
    return report
