"""Row shards of tensors: a DTensor split along dim 0 over a 1-d mesh (FSDP2's layout) <-> the
local rows one process stores, the global shape and dtype a manifest records, and the row ranges
that let another number of processes take its own rows from the saved files.

Rows follow ``torch.chunk``: with ``n`` rows over ``w`` processes, process ``r`` holds rows
``[min(r * c, n), min((r + 1) * c, n))`` where ``c = ceil(n / w)`` (later processes may hold none).
Knows torch (and its DTensor type); nothing about files or processes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from ember.errors import CheckpointError

__all__ = ["from_rows", "is_sharded", "localize", "overlaps", "rows_of"]


def rows_of(length: int, world: int, rank: int) -> tuple[int, int]:
    """``(start, stop)`` of the rows process ``rank`` of ``world`` holds of a dim 0 of ``length``.

    Example:
        >>> [rows_of(7, 2, r) for r in (0, 1)], rows_of(1, 2, 1)
        ([(0, 4), (4, 7)], (1, 1))
    """
    chunk = math.ceil(length / world) if length else 0
    return min(rank * chunk, length), min((rank + 1) * chunk, length)


def overlaps(start: int, stop: int, length: int, world: int) -> list[tuple[int, int, int]]:
    """``(rank, first, last)``: the rows ``[first, last)`` of ``[start, stop)`` that process ``rank``
    of ``world`` held, in order (what a reader of another world size takes from each file)."""
    found = []
    for rank in range(world):
        low, high = rows_of(length, world, rank)
        first, last = max(low, start), min(high, stop)
        if first < last:
            found.append((rank, first, last))
    return found


def is_sharded(tensor: Any) -> bool:
    """True for a DTensor (a parameter or state of a fully sharded model)."""
    if not isinstance(tensor, torch.Tensor) or not torch.distributed.is_available():
        return False
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def _check_layout(key: str, tensor: Any) -> None:
    from torch.distributed.tensor import Shard

    mesh, placements = tensor.device_mesh, tuple(tensor.placements)
    if mesh.ndim != 1 or placements != (Shard(0),):
        raise CheckpointError(
            f"{key!r} is a DTensor placed {placements} on a {mesh.ndim}-d mesh; ember's checkpoints "
            "hold tensors sharded along dim 0 over one mesh dimension (FSDP2's default)"
        )
    local = tensor.to_local()
    start, stop = rows_of(tensor.shape[0], mesh.size(), mesh.get_local_rank())
    if local.shape[0] != stop - start:
        raise CheckpointError(f"{key!r}: the local shard has {local.shape[0]} rows, expected {stop - start}")


def localize(tensors: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(local tensors, layout)``: every DTensor replaced by this process's rows; ``layout`` maps
    their keys to ``{"shape": global shape, "dtype": name}`` (other tensors are stored whole).

    Example:
        >>> localize({"w": torch.ones(2)})
        ({'w': tensor([1., 1.])}, {})
    """
    local, layout = {}, {}
    for key, tensor in tensors.items():
        if is_sharded(tensor):
            _check_layout(key, tensor)
            layout[key] = {"shape": list(tensor.shape), "dtype": str(tensor.dtype).removeprefix("torch.")}
            tensor = tensor.to_local()
        local[key] = tensor
    return local, layout


def from_rows(local: torch.Tensor, shape: list[int], mesh: Any) -> torch.Tensor:
    """The DTensor of global ``shape`` whose rows on this process are ``local`` (on the mesh's
    device type), sharded along dim 0 over ``mesh``."""
    from torch.distributed.tensor import DTensor, Shard

    start, stop = rows_of(shape[0], mesh.size(), mesh.get_local_rank())
    if list(local.shape) != [stop - start, *shape[1:]]:
        raise CheckpointError(
            f"a saved shard has shape {list(local.shape)}; this process holds rows {start}:{stop} of "
            f"a tensor of shape {shape}"
        )
    stride = torch.empty(shape, device="meta").stride()
    local = local.to(mesh.device_type)
    return DTensor.from_local(
        local, mesh, [Shard(0)], run_check=False, shape=torch.Size(shape), stride=stride
    )


def shard_like(full: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``full`` cut like the DTensor ``like``: this process's rows of it, as a DTensor on the same
    mesh (for loading whole weights into a sharded net)."""
    mesh = like.device_mesh
    start, stop = rows_of(full.shape[0], mesh.size(), mesh.get_local_rank())
    return from_rows(full[start:stop].to(like.dtype), list(full.shape), mesh)
