"""Save and load a module's weights as safetensors (no pickle), written atomically.

Tensors are copied to CPU, made contiguous and un-shared before writing, so tied weights and views
save correctly. Errors name the file and the keys.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from ember.checkpoint.format import atomic_write_bytes
from ember.errors import CheckpointError

__all__ = ["load_weights", "read_state_dict", "save_weights", "write_state_dict"]


def write_state_dict(state: dict[str, torch.Tensor], path: str | Path) -> Path:
    """Write a flat dict of tensors to a safetensors file atomically."""
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    return atomic_write_bytes(path, save_bytes(tensors))


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file; a missing or damaged file raises CheckpointError naming it."""
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read weights file {file}: {exc.strerror}") from exc
    try:
        return load_bytes(data)
    except (SafetensorError, ValueError) as exc:
        raise CheckpointError(f"{file} is not a valid safetensors file: {exc}") from exc


def save_weights(net: torch.nn.Module, path: str | Path) -> Path:
    """Save ``net.state_dict()`` (parameters and buffers) to ``path`` as safetensors.

    Example:
        >>> import tempfile, pathlib
        >>> p = save_weights(torch.nn.Linear(2, 1), pathlib.Path(tempfile.mkdtemp()) / "w.safetensors")
        >>> sorted(read_state_dict(p))
        ['bias', 'weight']
    """
    return write_state_dict(net.state_dict(), path)


def load_weights(net: torch.nn.Module, path: str | Path, strict: bool = True) -> None:
    """Load a safetensors file into ``net``; mismatches raise CheckpointError naming file and keys."""
    state = read_state_dict(path)
    try:
        net.load_state_dict(state, strict=strict)
    except RuntimeError as exc:
        raise CheckpointError(f"weights in {path} do not fit {type(net).__name__}: {exc}") from exc
