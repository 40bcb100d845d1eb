"""Map functions over nested batches: tensors inside tuples, lists and dicts.

Pure helpers with no ember imports; used to move batches to a device and to concatenate outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

__all__ = ["concat", "describe", "first_tensor", "to_device", "tree_map"]


def tree_map(fn: Callable[[torch.Tensor], Any], obj: Any) -> Any:
    """Apply ``fn`` to every tensor in ``obj``, keeping tuples, lists and dicts as they are."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, Mapping):
        return type(obj)((k, tree_map(fn, v)) for k, v in obj.items())
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(tree_map(fn, v) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(tree_map(fn, v) for v in obj)
    return obj


def to_device(obj: Any, device: torch.device, non_blocking: bool = True) -> Any:
    """Move every tensor of a nested batch to ``device`` (no copy when it is already there)."""
    if isinstance(obj, torch.Tensor):  # the common case, without the generic walk
        return obj.to(device, non_blocking=non_blocking)
    return tree_map(lambda t: t.to(device, non_blocking=non_blocking), obj)


def first_tensor(obj: Any) -> torch.Tensor | None:
    """The first tensor found depth-first in ``obj``, or None."""
    if isinstance(obj, torch.Tensor):
        return obj
    values = obj.values() if isinstance(obj, Mapping) else obj
    if isinstance(values, (Sequence, type({}.values()))) and not isinstance(values, (str, bytes)):
        for value in values:
            found = first_tensor(value)
            if found is not None:
                return found
    return None


def concat(chunks: list[Any]) -> Any:
    """Concatenate a list of same-structured batches along dim 0 (tensors), structure kept."""
    head = chunks[0]
    if isinstance(head, torch.Tensor):
        return torch.cat(chunks) if head.dim() > 0 else torch.stack(chunks)
    if isinstance(head, Mapping):
        return type(head)((k, concat([c[k] for c in chunks])) for k in head)
    if isinstance(head, (list, tuple)):
        parts = [concat([c[i] for c in chunks]) for i in range(len(head))]
        return type(head)(*parts) if hasattr(head, "_fields") else type(head)(parts)
    return chunks


def describe(value: Any) -> str:
    """A short description of a nested value for error messages: its type, a mapping's keys, a
    sequence's length and shapes.

    Example:
        >>> describe({"logits": torch.zeros(2)})
        "a dict with keys ['logits']"
        >>> describe((torch.zeros(2, 3), 1))
        "a tuple of 2: [(2, 3), 'int']"
    """
    if isinstance(value, Mapping):
        return f"a {type(value).__name__} with keys {list(value)}"
    if isinstance(value, (tuple, list)):
        shapes = [tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__ for v in value]
        return f"a {type(value).__name__} of {len(value)}: {shapes}"
    return f"a {type(value).__name__}"
