"""Runtime: where and how the numbers are computed (device, precision, processes).

The serial runtime is a null object for the distributed parts (rank 0 of 1, reductions are identities),
so code above this layer never asks "am I distributed?". Knows torch only; no other ember module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from ember.errors import ConfigError

__all__ = ["PRECISIONS", "Runtime", "resolve_device"]

PRECISIONS = ("32", "bf16", "16")


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
        self.rank = 0
        self.world_size = 1

    @property
    def is_main(self) -> bool:
        """True in the process that prints and writes files."""
        return self.rank == 0

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        with torch.autocast(self.device.type, dtype=self._autocast_dtype):
            yield

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The context the forward pass and loss run under (a no-op for "32")."""
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return self._autocast()

    def make_scaler(self) -> torch.amp.GradScaler | None:
        """A gradient scaler for "16" precision, else None."""
        if self.precision != "16":
            return None
        return torch.amp.GradScaler(self.device.type)

    def wrap_model(self, net: torch.nn.Module) -> torch.nn.Module:
        """The module the loop calls; the serial runtime only moves it to the device."""
        return net.to(self.device)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over processes (identity in one process)."""
        return tensor
