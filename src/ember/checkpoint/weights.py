"""Weights for reuse: save as safetensors; load from safetensors, ``torch.save`` state dicts (never
unpickling code) or ember checkpoint folders, with renaming, prefix handling and a LoadReport.

Files are recognised by their first bytes, not their suffix: ``save_weights`` always writes
safetensors, whatever the name, and ``load_weights`` reads safetensors and ``torch.save`` files under
any name. Tensors are copied to CPU, made contiguous and unshared before writing, so tied weights and
views save correctly. Errors name the file and the keys."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ember.checkpoint.format import MANIFEST, atomic_write_bytes, read_checkpoint, read_manifest
from ember.checkpoint.objects import load_tensor_bytes, tensor_bytes
from ember.checkpoint.sharded import SHARDS, full_state
from ember.checkpoint.shards import is_sharded, shard_like
from ember.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LoadReport", "consolidate", "load_weights", "read_state_dict", "save_weights", "write_state_dict"]

KNOWN_PREFIXES = ("module.", "_orig_mod.", "net.")
Rename = Mapping[str, str] | Callable[[str], str] | None


def write_state_dict(state: Mapping[str, torch.Tensor], path: str | Path) -> Path:
    """Write a flat dict of tensors to a safetensors file atomically."""
    return atomic_write_bytes(path, tensor_bytes(state, str(path)))


def save_weights(net: torch.nn.Module, path: str | Path) -> Path:
    """Save ``net.state_dict()`` (parameters and buffers) to ``path`` as safetensors, atomically.

    Args:
        net: the module whose parameters and buffers are saved.
        path: the file. The bytes are safetensors whatever the suffix; :func:`load_weights` reads by
            content, so ``w.pt`` loads back. Tools that pick a reader by suffix (``torch.load`` for
            ``.pt``) cannot read it: ``.safetensors`` is the name that tells them.

    Returns:
        The path written.

    A net sharded over processes (``strategy="fsdp"``) has its full tensors gathered first, which
    every process must take part in: call it in every process (each one writes ``path``).

    Example:
        >>> import tempfile, pathlib
        >>> p = save_weights(torch.nn.Linear(2, 1), pathlib.Path(tempfile.mkdtemp()) / "w.safetensors")
        >>> sorted(read_state_dict(p))
        ['bias', 'weight']
    """
    state = {k: v.full_tensor() if is_sharded(v) else v for k, v in net.state_dict().items()}
    return write_state_dict(state, path)


def consolidate(checkpoint: str | Path, path: str | Path) -> Path:
    """Write the weights of checkpoint folder ``checkpoint`` as one plain safetensors file ``path``:
    a sharded checkpoint's tensors are assembled whole from every process's files (one process
    suffices; no process group is needed).

    Example:
        >>> import tempfile
        >>> from ember.checkpoint.objects import save_states
        >>> ck = save_states(tempfile.mkdtemp() + "/ck", {"model": {"w": torch.ones(2)}})
        >>> read_state_dict(consolidate(ck, ck.parent / "w.safetensors"))
        {'w': tensor([1., 1.])}
    """
    return write_state_dict(read_state_dict(checkpoint), path)


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
    """Unpickle a ``torch.save`` file with ``weights_only=True`` unless ``trust_pickle``."""
    # An open handle, not the path: torch.load picks safetensors for any path ending in .safetensors.
    with file.open("rb") as handle:
        if trust_pickle:
            return torch.load(handle, map_location="cpu", weights_only=False)  # trust_pickle=True only
        with _weights_only_forced():
            try:
                return torch.load(handle, map_location="cpu", weights_only=True)
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


def _file_format(file: Path) -> str:
    """``"pickle"`` or ``"safetensors"`` from the first bytes of ``file``; a CheckpointError otherwise.

    A ``torch.save`` file is a zip (``PK``) or, in the legacy format, a pickle (``\\x80``); a
    safetensors file is an 8-byte little-endian header length followed by its JSON header (``{``).
    """
    with file.open("rb") as handle:
        head = handle.read(9)
    size = file.stat().st_size
    # safetensors first: its header length may start with any byte, \x80 and "PK" included
    braced = len(head) == 9 and head[8:9] == b"{"
    if braced and 8 + int.from_bytes(head[:8], "little") <= size:
        return "safetensors"
    if head.startswith((b"PK\x03\x04", b"\x80")):
        return "pickle"
    if braced:  # a truncated safetensors file: its reader names the damage
        return "safetensors"
    said = f"it starts with {head[:8]!r}" if head else "it is empty"
    raise CheckpointError(f"{file} is neither a safetensors file nor a torch.save file ({said})")


def read_state_dict(
    path: str | Path, trust_pickle: bool = False, key: str | None = None
) -> dict[str, torch.Tensor]:
    """A flat state dict from a safetensors file, a ``torch.save`` file or an ember checkpoint folder.

    Args:
        path: the file (recognised by its content, whatever its suffix) or checkpoint folder.
        trust_pickle: allow full unpickling of a ``torch.save`` file you trust (never the default).
        key: the entry of a ``torch.save`` dict that holds the state dict (found when unique).

    Returns:
        Key -> tensor, on CPU.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "w.pt"
        >>> torch.save(torch.nn.Linear(2, 1).state_dict(), p)
        >>> sorted(read_state_dict(p))
        ['bias', 'weight']
    """
    file = Path(path)
    if file.is_dir():
        if not (file / MANIFEST).exists():
            raise CheckpointError(f"{file} is a folder but not an ember checkpoint (no {MANIFEST})")
        if SHARDS in read_manifest(file):
            return full_state(file, "model")
        data = read_checkpoint(file, ["model.safetensors"])["model.safetensors"]
        return load_tensor_bytes(data, str(file / "model.safetensors"))
    if not file.exists():
        raise CheckpointError(f"cannot read weights file {file}: no such file")
    if _file_format(file) == "pickle":
        return _state_of(_read_pickle_file(file, trust_pickle), file, key)
    return load_tensor_bytes(file.read_bytes(), str(file))


Shape = tuple[int, ...]


def _shape(shape: Shape | None) -> str:
    """``[2, 4]`` for a shape, ``-`` for none."""
    return str(list(shape)) if shape is not None else "-"


@dataclass
class LoadReport:
    """What ``load_weights`` did, by the model's key names (after renaming).

    ``loaded``, ``missing`` (in the model only), ``unexpected`` (in the file only), ``mismatched``
    (``key -> (file shape, model shape)``), ``renamed`` (file key -> model key, where they differ),
    ``key_mapping`` (how file keys became model keys, e.g. ``"stripped 'module.', then renamed"``),
    and every key's ``file_shapes`` / ``model_shapes``. ``str(report)`` shows the counts and the keys
    that did not load; :meth:`to_dataframe` lists every key.
    """

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: dict[str, tuple[Shape, Shape]] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)
    key_mapping: str = "as in the file"
    file_shapes: dict[str, Shape] = field(default_factory=dict, repr=False)
    model_shapes: dict[str, Shape] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        """True when every key matched."""
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        rows = [
            f"LoadReport: {len(self.loaded)} loaded, {len(self.missing)} missing, "
            f"{len(self.unexpected)} unexpected, {len(self.mismatched)} mismatched",
            f"keys: {self.key_mapping}",
        ]
        rows += [f"{'missing':<12} {k}  model {_shape(self.model_shapes.get(k))}" for k in self.missing]
        rows += [f"{'unexpected':<12} {k}  file {_shape(self.file_shapes.get(k))}" for k in self.unexpected]
        rows += [
            f"{'mismatched':<12} {k}  file {list(a)} vs model {list(b)}"
            for k, (a, b) in self.mismatched.items()
        ]
        return "\n".join(rows)

    def to_dataframe(self) -> pd.DataFrame:
        """Every key, one row each: key, status, file_key, file_shape, model_shape.

        Returns:
            A pandas DataFrame; ``None`` where a key or shape is absent on one side. Rows are grouped
            as loaded, missing, unexpected, mismatched.

        Example:
            >>> report = load_weights(torch.nn.Linear(2, 1), {"weight": torch.ones(1, 2)}, strict=False)
            >>> report.to_dataframe()[["key", "status"]].values.tolist()
            [['weight', 'loaded'], ['bias', 'missing']]
        """
        import pandas as pd  # imported here: only this method needs it

        file_keys = {new: old for old, new in self.renamed.items()}
        rows = [(k, "loaded") for k in self.loaded] + [(k, "missing") for k in self.missing]
        rows += [(k, "unexpected") for k in self.unexpected] + [(k, "mismatched") for k in self.mismatched]
        records = [
            {
                "key": k,
                "status": status,
                "file_key": None if status == "missing" else file_keys.get(k, k),
                "file_shape": self.file_shapes.get(k),
                "model_shape": self.model_shapes.get(k) if status != "unexpected" else None,
            }
            for k, status in rows
        ]
        # object columns keep None (pandas would turn it into NaN in a string column)
        return pd.DataFrame(
            records, columns=["key", "status", "file_key", "file_shape", "model_shape"], dtype=object
        )


@dataclass
class _Mapping:
    """File key -> model key, and the steps that made it (for ``LoadReport.key_mapping``)."""

    names: dict[str, str]
    steps: list[str]

    def score(self, target: set[str]) -> int:
        """How many distinct model keys this mapping reaches."""
        return len(set(self.names.values()) & target)


def _strip_wrappers(keys: list[str]) -> _Mapping:
    """Strip ``module.`` / ``_orig_mod.`` / ``net.`` while every key starts with one (nesting too)."""
    mapping = _Mapping({k: k for k in keys}, [])
    stripping = True
    while stripping:
        stripping = False
        for prefix in KNOWN_PREFIXES:
            values = mapping.names.values()
            if values and all(v.startswith(prefix) and len(v) > len(prefix) for v in values):
                mapping.names = {k: v[len(prefix) :] for k, v in mapping.names.items()}
                mapping.steps.append(f"stripped {prefix!r}")
                stripping = True
    return mapping


def _rename(mapping: _Mapping, rename: Rename) -> _Mapping:
    """Apply the user's ``rename`` to the current model-side names of ``mapping``."""
    if rename is None:
        return mapping
    if callable(rename):
        names = {k: rename(v) for k, v in mapping.names.items()}
    else:
        names = {}
        for key, new in mapping.names.items():
            for pattern, replacement in rename.items():
                new = re.sub(pattern, replacement, new)
            names[key] = new
    return _Mapping(names, [*mapping.steps, "renamed"])


def _align_prefixes(mapping: _Mapping, target: set[str]) -> _Mapping:
    """Strip or add ``module.`` / ``_orig_mod.`` / ``net.`` when that makes more keys match."""
    names = mapping.names
    best = mapping
    for prefix in KNOWN_PREFIXES:
        if names and all(v.startswith(prefix) for v in names.values()):
            stripped = _Mapping(
                {k: v[len(prefix) :] for k, v in names.items()}, [*mapping.steps, f"stripped {prefix!r}"]
            )
            best = stripped if stripped.score(target) > best.score(target) else best
        if target and all(t.startswith(prefix) for t in target):
            added = _Mapping(
                {k: prefix + v for k, v in best.names.items()}, [*best.steps, f"added {prefix!r}"]
            )
            best = added if added.score(target) > best.score(target) else best
    return best


def _collision(mapping: _Mapping) -> str | None:
    """A message when two file keys end up under one model key, else None."""
    seen: dict[str, str] = {}
    for old, new in mapping.names.items():
        if new in seen:
            return f"rename maps both {seen[new]!r} and {old!r} to {new!r}"
        seen[new] = old
    return None


def _map_keys(keys: list[str], rename: Rename, target: set[str]) -> _Mapping:
    """File keys -> model keys: the rename on the raw keys, or on the keys with the wrapper prefixes
    stripped, whichever reaches more model keys (the raw keys on a tie)."""
    starts = [_Mapping({k: k for k in keys}, [])]
    stripped = _strip_wrappers(keys)
    if stripped.steps:
        starts.append(stripped)
    candidates: list[_Mapping] = []
    errors: list[Exception] = []
    for start in starts:
        try:  # a rename function may raise on the keys it was not written for
            candidates.append(_align_prefixes(_rename(start, rename), target))
        except Exception as exc:
            errors.append(exc)
    valid = [c for c in candidates if _collision(c) is None]
    if not valid:
        if not candidates:
            raise errors[0]
        raise ConfigError(str(_collision(candidates[0])))
    return max(valid, key=lambda c: c.score(target))  # max keeps the first on a tie


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
        net: the module to load into; a net sharded over processes (``strategy="fsdp"``) takes
            each process's rows of the file's whole tensors.
        path: a safetensors or ``torch.save`` file (recognised by content, whatever the suffix), an
            ember checkpoint folder, or a state dict.
        strict: raise one CheckpointError listing missing, unexpected and mismatched keys;
            ``strict=False`` loads what fits and skips the rest (shape mismatches included).
        rename: ``{regex: replacement}`` applied in order, or a function of the key. It is tried on
            the keys as saved and on the keys without wrapper prefixes (``module.``, ``_orig_mod.``,
            ``net.``); the one that matches more of ``net``'s keys is used (``report.key_mapping``).
        skip_mismatched: with ``strict=True``, tolerate (skip) shape mismatches only.
        trust_pickle: allow full unpickling of a ``torch.save`` file you trust (never the default).
        key: the entry of a ``torch.save`` dict that holds the state dict (found automatically when unique).

    Returns:
        A LoadReport; ``print(report)`` shows the counts and the keys that did not load.

    Example:
        >>> state = {"net.weight": torch.ones(1, 2), "net.bias": torch.ones(1)}  # prefix stripped
        >>> load_weights(torch.nn.Linear(2, 1), state).loaded
        ['bias', 'weight']
    """
    source = dict(path) if isinstance(path, Mapping) else read_state_dict(path, trust_pickle, key)
    target = net.state_dict()
    mapping = _map_keys(list(source), rename, set(target))
    report = LoadReport(
        renamed={k: v for k, v in mapping.names.items() if k != v},
        key_mapping=", then ".join(mapping.steps) or "as in the file",
        file_shapes={new: tuple(source[old].shape) for old, new in mapping.names.items()},
        model_shapes={k: tuple(v.shape) for k, v in target.items()},
    )
    fitting = {}
    for old, new in mapping.names.items():
        if new not in target:
            report.unexpected.append(new)
        elif tuple(source[old].shape) != tuple(target[new].shape):
            report.mismatched[new] = (tuple(source[old].shape), tuple(target[new].shape))
        else:
            fitting[new] = source[old]
    report.missing = sorted(set(target) - set(mapping.names.values()))
    report.loaded, report.unexpected = sorted(fitting), sorted(report.unexpected)
    problems = report.missing or report.unexpected or (report.mismatched and not skip_mismatched)
    if strict and problems:
        where = path if not isinstance(path, Mapping) else "the state dict"
        raise CheckpointError(f"weights in {where} do not fit {type(net).__name__}:\n{report}")
    sharded = {k: shard_like(v, target[k]) for k, v in fitting.items() if is_sharded(target[k])}
    net.load_state_dict({**fitting, **sharded}, strict=False)
    return report
