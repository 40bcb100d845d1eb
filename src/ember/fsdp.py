"""Fully sharded data parallel training on PyTorch's FSDP2 (``fully_shard``): the runtime of a
``compile(strategy="fsdp")`` run under torchrun. It chooses the sharding units, turns
``precision="bf16"`` into FSDP2's mixed-precision policy and shards the net in place (its
parameters become DTensors, ``model.net`` stays the user's module). Layer 1: knows torch only.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch
from torch import nn

from ember.errors import ConfigError
from ember.runtime import _NO_SYNC, DistributedRuntime

__all__ = ["DEFAULT_MIN_PARAMS", "FSDPRuntime", "sharding_units"]

DEFAULT_MIN_PARAMS = 1_000_000  # a smaller unit is not worth its own all-gather


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def sharding_units(
    net: nn.Module, blocks: tuple[type, ...] = (), min_params: int = DEFAULT_MIN_PARAMS
) -> list[nn.Module]:
    """The modules sharded on their own before the root, innermost first: every module whose class
    is in ``blocks``, else every direct child with at least ``min_params`` parameters.

    Example:
        >>> net = nn.Sequential(nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 2))
        >>> [type(m).__name__ for m in sharding_units(net, min_params=1000)]
        ['Linear']
        >>> len(sharding_units(net, blocks=(nn.Linear,)))
        2
    """
    if blocks:
        found = [m for m in net.modules() if isinstance(m, blocks) and m is not net]
        if not found:
            names = ", ".join(b.__name__ for b in blocks)
            raise ConfigError(
                f"fsdp_blocks=({names},): {type(net).__name__} contains no module of these classes"
            )
        return found[::-1]  # children before the blocks that hold them
    return [child for child in net.children() if _count(child) >= min_params]


class FSDPRuntime(DistributedRuntime):
    """One process of a fully sharded run: each process holds 1/N of every sharded unit's
    parameters, gradients and optimizer state; a unit's full weights are gathered for its forward
    and backward only.

    Args:
        device, precision, timeout: as for :class:`DistributedRuntime` ("16" is refused: FSDP2's
            bfloat16 policy needs no gradient scaler).
        blocks: module classes to shard one by one (the usual choice: the transformer block).
        min_params: without ``blocks``, direct children of at least this many parameters are units.
        reshard_after_forward: free a unit's gathered weights after its forward (less memory, one
            more all-gather in backward).
    """

    def __init__(
        self,
        device: str | torch.device | None = None,
        precision: str = "32",
        timeout: float | None = None,
        blocks: tuple[type, ...] = (),
        min_params: int = DEFAULT_MIN_PARAMS,
        reshard_after_forward: bool = True,
    ) -> None:
        if precision == "16":
            raise ConfigError(
                'strategy="fsdp" trains in precision "32" or "bf16" (FSDP2 computes in bfloat16 and '
                'reduces in float32, with no gradient scaler): use precision="bf16"'
            )
        super().__init__(device, precision, timeout)
        from torch.distributed.device_mesh import init_device_mesh

        self.sharded = True
        self.mesh = init_device_mesh(self.device.type, (self.world_size,))
        self.blocks, self.min_params = tuple(blocks), int(min_params)
        self.reshard_after_forward = bool(reshard_after_forward)
        self._autocast_dtype = None  # the policy casts parameters and inputs; no autocast region

    @property
    def tidies_checkpoints(self) -> bool:
        """True in the first process of each machine: every machine holds its processes' shards."""
        return int(os.environ.get("LOCAL_RANK", "0")) == 0

    def _policy(self) -> Any:
        from torch.distributed.fsdp import MixedPrecisionPolicy

        if self.precision != "bf16":
            return MixedPrecisionPolicy()
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)

    def wrap_model(self, net: nn.Module) -> nn.Module:
        """Shard ``net`` in place (its units, then the root) and return it: the module steps call."""
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        net = net.to(self.device)
        options = {"mesh": self.mesh, "reshard_after_forward": self.reshard_after_forward}
        for unit in sharding_units(net, self.blocks, self.min_params):
            fully_shard(unit, mp_policy=self._policy(), **options)
        root = self._policy()
        if self.precision == "bf16":  # predictions and the loss leave the net in float32
            root = MixedPrecisionPolicy(torch.bfloat16, torch.float32, output_dtype=torch.float32)
        fully_shard(net, mp_policy=root, **options)
        return net

    def no_sync(self, train_net: nn.Module) -> contextlib.AbstractContextManager[Any]:
        """Nothing: under FSDP every micro-batch reduce-scatters its gradient, so gradients stay
        sharded (skipping it would keep a whole unsharded gradient in every process)."""
        return _NO_SYNC
