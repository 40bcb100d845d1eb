"""Gradient accumulation: which training steps end a window and update the weights, and the open
window (micro-batches and samples so far, the summed gradients) that a checkpoint holds, so a fit
resumed inside a window updates exactly as the uninterrupted one would.

A window's gradient equals the gradient of one batch that concatenates its micro-batches: each
micro-batch's mean loss is multiplied by its sample count in backward, and the sum is divided by
the window's total count before the update. A short last window, batches of different sizes and
processes with uneven shares are therefore all exact (dividing by the number of micro-batches
would weight a small batch's samples more). Layer 1: knows torch only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ember._tree import first_tensor
from ember.arguments import check_count
from ember.errors import CheckpointError

__all__ = ["Accumulation", "sample_count"]


def sample_count(batch: Any) -> int:
    """The samples in ``batch``: the length of its first tensor's first dimension (1 for a batch
    without tensors or with a 0-dim first tensor)."""
    if type(batch) in (tuple, list) and batch:  # the common case first: (x, y) tensors
        first = batch[0]
        if type(first) is torch.Tensor and first.dim():
            return first.shape[0]
    tensor = first_tensor(batch)
    return int(tensor.shape[0]) if tensor is not None and tensor.dim() else 1


class Accumulation:
    """The accumulation window of ``every`` micro-batches.

    Example:
        >>> window = Accumulation(every=2)
        >>> window.plan(32, last=False), window.plan(32, last=False), window.plan(8, last=True)
        ((False, 1.0), (True, 64.0), (True, 8.0))
    """

    def __init__(self, every: int) -> None:
        check_count("accumulate", every, 1)
        self.every = int(every)
        self.batches = 0  # micro-batches in the open window
        self.samples = 0  # their samples, over every process
        self.mass: torch.Tensor | None = None  # their summed sample weights (this process's)

    def add_mass(self, weight: torch.Tensor, counts: bool) -> torch.Tensor:
        """Add a weighted micro-batch's weight sum (zero for a padding batch that ``counts`` not)
        to the window's; returns the batch's sum. Device ops only."""
        mass = weight.sum() if counts else weight.sum() * 0.0
        self.mass = mass.detach() if self.mass is None else self.mass + mass.detach()
        return mass

    def take_mass(self, reduce: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor | None:
        """The window's weight sum over every process (``reduce``: a cross-process sum), or None
        when its batches had no sample weights; the window's sum starts again."""
        mass = self.mass
        self.mass = None
        return None if mass is None else reduce(mass.clone())

    @property
    def open(self) -> bool:
        """True when some micro-batches were accumulated but not applied yet."""
        return self.batches > 0

    def plan(self, samples: int, last: bool) -> tuple[bool, float]:
        """Count a micro-batch of ``samples`` (``last``: the epoch's last batch); returns
        ``(update now, divisor of the summed gradients)``."""
        self.batches += 1
        self.samples += samples
        if self.batches < self.every and not last:
            return False, 1.0
        return True, self.close()

    def close(self) -> float:
        """End the open window; returns its divisor (its sample count)."""
        divisor = float(self.samples)
        self.batches = 0
        self.samples = 0
        return divisor

    def state_dict(self, net: nn.Module) -> dict[str, Any]:
        """The open window: counts and the summed gradients of ``net``'s parameters (this process's)."""
        grads = {name: p.grad.clone() for name, p in net.named_parameters() if p.grad is not None}
        state = {"batches": self.batches, "samples": self.samples, "grads": grads}
        return state if self.mass is None else {**state, "mass": self.mass.clone()}

    def load_state_dict(self, state: dict[str, Any], net: nn.Module) -> None:
        """Restore an open window saved by :meth:`state_dict` into ``net``'s gradients."""
        params = dict(net.named_parameters())
        unknown = sorted(set(state["grads"]) - set(params))
        if unknown:
            raise CheckpointError(f"the saved accumulated gradients name parameters the net lacks: {unknown}")
        for name, param in params.items():
            saved = state["grads"].get(name)
            param.grad = None if saved is None else torch.as_tensor(saved).to(param.device, param.dtype)
        self.batches = int(state["batches"])
        self.samples = int(state["samples"])
        mass = state.get("mass")
        self.mass = None if mass is None else torch.as_tensor(mass).to(next(iter(params.values())).device)
