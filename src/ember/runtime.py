"""Runtime: where and how the numbers are computed (device, precision, processes).

The serial runtime is a null object for the distributed parts (rank 0 of 1, reductions are identities),
so code above this layer never asks "am I distributed?". Knows torch only; no other ember module.
"""

from __future__ import annotations

import contextlib
import os
import socket
import warnings
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from ember._tree import tree_map
from ember.errors import CheckpointError, ConfigError

__all__ = ["PRECISIONS", "STRATEGIES", "DistributedRuntime", "Runtime", "create_runtime", "resolve_device"]

PRECISIONS = ("32", "bf16", "16")
STRATEGIES = ("ddp", "fsdp")
_NO_SYNC = contextlib.nullcontext()  # reusable: entering it does nothing (also "32"'s autocast)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> cuda when available, else cpu; strings and devices are checked for availability."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {str(device)!r} was asked for, but CUDA is not available here")
    return resolved


class Runtime:
    """One process on one device: precision context, gradient scaler and (trivial) reductions.

    Args:
        device: as for :func:`resolve_device`.
        precision: "32" (float32), "bf16" (autocast to bfloat16) or "16" (autocast to float16 with a
            gradient scaler).

    Example:
        >>> rt = Runtime("cpu", "32")
        >>> rt.device.type, rt.is_main, rt.world_size
        ('cpu', True, 1)
    """

    def __init__(self, device: str | torch.device | None = None, precision: str = "32") -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"precision={precision!r} is not one of {', '.join(PRECISIONS)}")
        self.device = resolve_device(device)
        self.precision = precision
        self._autocast_dtype = {"bf16": torch.bfloat16, "16": torch.float16}.get(precision)
        self.autocast_cache = True
        self.rank = 0
        self.world_size = 1
        self.sharded = False  # True when each process holds a shard of the weights (FSDP)

    @property
    def is_main(self) -> bool:
        """True in the process that prints and writes files."""
        return self.rank == 0

    @property
    def tidies_checkpoints(self) -> bool:
        """True in the process that deletes old checkpoints: process 0 (the one that writes them),
        or in a sharded run the first process of each machine (machines may have their own disks)."""
        return self.is_main

    @property
    def node(self) -> str:
        """This process's machine, for messages: ``node <GROUP_RANK> (host <name>)``."""
        return f"node {os.environ.get('GROUP_RANK', '0')} (host {socket.gethostname()})"

    def together(self, fn: Callable[[], Any]) -> Any:
        """``fn()``, where an error in one process is raised in every process (one process: as is)."""
        return fn()

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        with torch.autocast(self.device.type, dtype=self._autocast_dtype, cache_enabled=self.autocast_cache):
            yield

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The context the forward pass and loss run under (a no-op for "32"); it caches weight
        casts within a region unless ``autocast_cache`` is False (a step recorded to be replayed
        turns it off: cached casts would go stale in the replays)."""
        if self._autocast_dtype is None:
            return _NO_SYNC
        return self._autocast()

    def from_autocast(self, outputs: Any, net: torch.nn.Module) -> Any:
        """``outputs`` with the tensors autocast produced (bfloat16 / float16) cast to the dtype of
        ``net``'s parameters, so predictions leave the model in the user's precision."""
        low = self._autocast_dtype
        first = next((p for p in net.parameters() if p.is_floating_point()), None)
        dtype = torch.float32 if first is None else first.dtype
        if low is None or dtype == low:
            return outputs
        return tree_map(lambda t: t.to(dtype) if t.dtype == low else t, outputs)

    def make_scaler(self) -> torch.amp.GradScaler | None:
        """A gradient scaler for "16" precision, else None."""
        if self.precision != "16":
            return None
        return torch.amp.GradScaler(self.device.type)

    def wrap_model(self, net: torch.nn.Module) -> torch.nn.Module:
        """The module training steps call (the serial runtime: the net itself, on the device)."""
        return net.to(self.device)

    def no_sync(self, train_net: torch.nn.Module) -> contextlib.AbstractContextManager[Any]:
        """A context whose backward passes keep gradients local to this process (DDP's ``no_sync``,
        for the micro-batches of an accumulation window before the last); nothing in one process."""
        return _NO_SYNC

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over processes (identity in one process)."""
        return tensor

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every process's ``obj`` in rank order (one process: ``[obj]``)."""
        return [obj]

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """``obj`` of process ``src`` (one process: ``obj``)."""
        return obj


def _timeout_seconds(timeout: float | None) -> float:
    if timeout is not None:
        return float(timeout)
    return float(os.environ.get("EMBER_DIST_TIMEOUT", "60"))


class DistributedRuntime(Runtime):
    """One process of a torch.distributed job (started by torchrun or :func:`ember.launch`).

    Reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` from the environment, initialises the process group
    when needed (nccl on CUDA, gloo on CPU, ``timeout`` seconds, default ``EMBER_DIST_TIMEOUT`` or 60),
    puts this process on ``cuda:LOCAL_RANK`` when CUDA is used, and wraps the net in DDP.
    """

    def __init__(
        self, device: str | torch.device | None = None, precision: str = "32", timeout: float | None = None
    ) -> None:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device is None:
            device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
        super().__init__(device, precision)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if not dist.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            wait = timedelta(seconds=_timeout_seconds(timeout))
            store = _restart_store(wait)
            if store is None:
                dist.init_process_group(backend, timeout=wait)
            else:
                rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
                dist.init_process_group(backend, timeout=wait, store=store, rank=rank, world_size=world)
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()

    def wrap_model(self, net: torch.nn.Module) -> torch.nn.Module:
        """The net on this process's device, wrapped in DistributedDataParallel."""
        net = net.to(self.device)
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(net, device_ids=ids)

    def no_sync(self, train_net: torch.nn.Module) -> contextlib.AbstractContextManager[Any]:
        """DDP's ``no_sync`` of ``train_net`` (the wrapper, also under ``torch.compile``)."""
        return train_net.no_sync()  # an OptimizedModule hands the attribute on to the DDP module

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over all processes, in place."""
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order, on every process."""
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """``obj`` of process ``src``, on every process."""
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def together(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` in every process; when it raises in any of them, every process raises a
        CheckpointError naming the first that failed (its rank, node and error), so none waits
        for the others at a later collective."""
        try:
            result, failure = fn(), None
        except Exception as exc:  # shared below; the failing process chains its own
            result, failure = exc, f"{type(exc).__name__}: {exc}"
        reports = self.gather_objects((failure, self.node))
        failed = [(rank, error, node) for rank, (error, node) in enumerate(reports) if error is not None]
        if not failed:
            return result
        rank, error, node = failed[0]
        message = f"process {rank} of {self.world_size} on {node} failed: {error}"
        raise CheckpointError(message) from (result if failure is not None else None)


def _restart_store(timeout: timedelta) -> dist.Store | None:
    """Under torchrun, a store whose keys are private to this restart attempt, so a restarted process
    never reads the addresses its crashed predecessors published (None: the default env:// store)."""
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if attempt is None:
        return None
    agent_hosts_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        int(os.environ["WORLD_SIZE"]),
        is_master=not agent_hosts_store and os.environ.get("RANK") == "0",
        timeout=timeout,
        wait_for_workers=False,
    )
    return dist.PrefixStore(f"ember/attempt{attempt}", store)


def create_runtime(
    device: str | torch.device | None = None, precision: str = "32", strategy: str = "ddp", **sharding: Any
) -> Runtime:
    """A DistributedRuntime under torchrun / ember.launch (WORLD_SIZE > 1; ``strategy="fsdp"``: the
    fully sharded one, configured by ``sharding``), else the serial Runtime (with a warning when
    "fsdp" was asked for: one process has nothing to shard over)."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy={strategy!r} is not one of {', '.join(STRATEGIES)}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 or (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        if strategy == "fsdp":
            from ember.fsdp import FSDPRuntime  # loaded only by fully sharded runs

            return FSDPRuntime(device, precision, **sharding)
        return DistributedRuntime(device, precision)
    if strategy == "fsdp":
        warnings.warn(
            "strategy='fsdp' in a single process: there is nothing to shard over, so the model trains "
            "unsharded (start several processes with torchrun or ember.launch to shard it)",
            stacklevel=3,
        )
    return Runtime(device, precision)
