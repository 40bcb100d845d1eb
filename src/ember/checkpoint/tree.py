"""Encode nested state (dicts, lists, tuples, numbers, strings, tensors, numpy arrays) as a JSON
skeleton plus a flat dict of tensors, and back, so that no pickle is ever needed.

Tensors are replaced in the skeleton by ``{"$tensor": key}``; numpy arrays by ``{"$ndarray": key}``;
tuples by ``{"$tuple": [...]}``; dicts with non-string keys by ``{"$items": [[key, value], ...]}``.
Knows torch and numpy; nothing about files.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ember.errors import CheckpointError

__all__ = ["decode_tree", "encode_tree"]

_MARKERS = ("$tensor", "$ndarray", "$tuple", "$items")


def encode_tree(obj: Any, path: str = "") -> tuple[Any, dict[str, torch.Tensor]]:
    """``(skeleton, tensors)`` for ``obj``; tensor keys are the dotted paths inside ``obj``.

    Example:
        >>> skeleton, tensors = encode_tree({"step": 3, "w": torch.ones(2), "betas": (0.9, 0.99)})
        >>> skeleton["w"], list(tensors), skeleton["betas"]
        ({'$tensor': 'w'}, ['w'], {'$tuple': [0.9, 0.99]})
    """
    tensors: dict[str, torch.Tensor] = {}
    return _encode(obj, path, tensors), tensors


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _encode(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = path or "tensor"
        if key in tensors:
            raise CheckpointError(f"two tensors map to the key {key!r}")
        tensors[key] = obj
        return {"$tensor": key}
    if isinstance(obj, np.ndarray):
        tensors[path] = torch.from_numpy(np.ascontiguousarray(obj))
        return {"$ndarray": path}
    if isinstance(obj, (bool, int, float, str)) or obj is None:
        return obj
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if isinstance(obj, tuple):
        return {"$tuple": [_encode(v, _join(path, i), tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, _join(path, i), tensors) for i, v in enumerate(obj)]
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) and k not in _MARKERS for k in obj):
            return {k: _encode(v, _join(path, k), tensors) for k, v in obj.items()}
        return {
            "$items": [
                [_encode(k, _join(path, f"key{i}"), tensors), _encode(v, _join(path, k), tensors)]
                for i, (k, v) in enumerate(obj.items())
            ]
        }
    raise CheckpointError(
        f"cannot store {type(obj).__name__} at {path or 'the top level'}: checkpoints hold tensors, "
        "numbers, strings, lists, tuples and dicts only (no pickle)"
    )


def decode_tree(skeleton: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Rebuild the object :func:`encode_tree` described."""
    if isinstance(skeleton, list):
        return [decode_tree(v, tensors) for v in skeleton]
    if not isinstance(skeleton, dict):
        return skeleton
    if "$tensor" in skeleton:
        return _tensor(tensors, skeleton["$tensor"])
    if "$ndarray" in skeleton:
        return _tensor(tensors, skeleton["$ndarray"]).numpy()
    if "$tuple" in skeleton:
        return tuple(decode_tree(v, tensors) for v in skeleton["$tuple"])
    if "$items" in skeleton:
        return {_hashable(decode_tree(k, tensors)): decode_tree(v, tensors) for k, v in skeleton["$items"]}
    return {k: decode_tree(v, tensors) for k, v in skeleton.items()}


def _tensor(tensors: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in tensors:
        raise CheckpointError(f"the checkpoint names tensor {key!r} but does not contain it")
    return tensors[key]


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key
