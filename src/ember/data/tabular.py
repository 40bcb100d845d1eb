"""Tensors, numpy arrays and pandas objects -> torch tensors and TensorDatasets, with sensible dtypes.

Float features become float32, integer labels int64, booleans float32; uint8 (images) stays uint8.
Knows torch, numpy and pandas; nothing about training.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ember.errors import DataError

__all__ = ["from_arrays", "to_tensor"]


def _is_pandas(obj: Any) -> bool:
    pd = sys.modules.get("pandas")  # a pandas object implies pandas is imported
    return pd is not None and isinstance(obj, (pd.DataFrame, pd.Series))


def _pandas_to_numpy(obj: Any, what: str) -> np.ndarray:
    frame = obj.to_frame() if obj.ndim == 1 else obj
    bad = [str(c) for c, dt in frame.dtypes.items() if dt.kind not in "biuf"]
    if bad:
        raise DataError(f"{what}: columns {bad} are not numeric; encode them before training")
    return obj.to_numpy()


def to_tensor(data: Any, what: str = "data") -> torch.Tensor:
    """A tensor from a tensor, numpy array, pandas DataFrame/Series or nested list.

    float64 -> float32, bool -> float32, uint8 kept (images), other integers -> int64;
    float16/bfloat16 are kept.

    Example:
        >>> to_tensor(np.array([1.5, 2.0])).dtype
        torch.float32
    """
    if _is_pandas(data):
        data = _pandas_to_numpy(data, what)
    if isinstance(data, np.ndarray) and data.dtype.kind not in "biuf":
        raise DataError(f"{what}: numpy dtype {data.dtype} cannot become a tensor")
    if not isinstance(data, torch.Tensor):
        array = np.asarray(data)
        data = torch.from_numpy(array if array.flags.writeable else array.copy())
    tensor = data
    if tensor.dtype in (torch.float64, torch.bool):
        return tensor.float()
    if tensor.dtype == torch.uint8:  # images: kept compact, scaled to [0, 1] when batches are cut
        return tensor
    if not tensor.is_floating_point() and not tensor.is_complex() and tensor.dtype != torch.int64:
        return tensor.long()
    return tensor


def from_arrays(x: Any, y: Any = None) -> TensorDataset:
    """A ``TensorDataset`` of ``x`` (and ``y``) with sensible dtypes and checked lengths.

    Args:
        x: features: tensor, numpy array, DataFrame; or a tuple of those for several inputs.
        y: targets, or None.

    Raises:
        DataError: when the lengths differ (both are named).

    Example:
        >>> ds = from_arrays(np.zeros((4, 3)), np.array([0, 1, 0, 1]))
        >>> len(ds), ds.tensors[0].dtype, ds.tensors[1].dtype
        (4, torch.float32, torch.int64)
    """
    xs = x if isinstance(x, (tuple, list)) and not _is_nested_numbers(x) else (x,)
    tensors = [to_tensor(v, f"x[{i}]" if len(xs) > 1 else "x") for i, v in enumerate(xs)]
    if y is not None:
        tensors.append(to_tensor(y, "y"))
    lengths = [len(t) if t.dim() else 0 for t in tensors]
    if len(set(lengths)) > 1:
        names = [f"x[{i}]" for i in range(len(xs))] if len(xs) > 1 else ["x"]
        names += ["y"] if y is not None else []
        described = ", ".join(f"{n} has {n_}" for n, n_ in zip(names, lengths, strict=True))
        raise DataError(f"inputs and targets must have the same length: {described} samples")
    return TensorDataset(*tensors)


def _is_nested_numbers(value: Any) -> bool:
    """A plain list of numbers (one array), as opposed to a tuple of arrays."""
    return isinstance(value, list) and bool(value) and isinstance(value[0], (int, float, list))
