"""The Metric protocol: reset / update / compute, with the state held as device tensors of sums.

``update`` never reads a tensor on the host, so metrics cost no synchronisation inside a step;
``compute`` returns a 0-dim tensor that the loop reads together with the loss in one copy.
Sample counts are known on the host (batch shapes), so they are kept as Python ints.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

__all__ = ["Metric"]


class Metric:
    """Base class of ember metrics.

    Subclasses declare their state in ``__init__`` with :meth:`add_state` and implement
    :meth:`update` and :meth:`compute`. Everything in the state survives a resume through
    :meth:`state_dict` / :meth:`load_state_dict`.

    Attributes:
        name: the column name in logs and history.
        host_sync: True when ``update`` reads values on the host (plain-function metrics).
        update_in_place: True when ``update`` only adds into the state tensors in place and its
            counts depend on shapes alone (so it can be recorded once and replayed).
        higher_is_better: True for scores, False for errors, None when unknown; monitors with
            ``mode="auto"`` read it (see ``ember.metrics.direction``).
    """

    host_sync = False
    update_in_place = False
    higher_is_better: bool | None = None

    def __init__(self, name: str) -> None:
        self.name = name
        self._tensors: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}
        self._device = torch.device("cpu")

    def add_state(self, key: str, kind: str = "sum") -> None:
        """Declare a state entry: ``kind="sum"`` (a device float64 tensor) or ``"count"`` (a host int)."""
        if kind == "count":
            self._counts[key] = 0
        else:
            self._tensors[key] = torch.zeros((), dtype=_acc_dtype(self._device), device=self._device)

    def reset(self) -> None:
        """Zero every state entry in place (called at the start of each epoch)."""
        for value in self._tensors.values():
            value.zero_()
        for key in self._counts:
            self._counts[key] = 0

    def clone(self) -> Metric:
        """An independent copy with its own state (each Meter updates its own copies, so an
        ``evaluate`` inside a ``fit`` leaves the running epoch's sums alone)."""
        return copy.deepcopy(self)

    def to(self, device: torch.device) -> Metric:
        """Move the state to ``device``; returns self."""
        self._device = torch.device(device)
        dtype = _acc_dtype(self._device)
        self._tensors = {k: v.to(self._device, dtype) for k, v in self._tensors.items()}
        return self

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch's sufficient statistics (device ops only)."""
        raise NotImplementedError

    def compute(self) -> torch.Tensor:
        """The metric over everything seen since ``reset``, as a 0-dim tensor (no host read)."""
        raise NotImplementedError

    def ratio(self, sum_key: str, count_key: str) -> torch.Tensor:
        """``state[sum_key] / state[count_key]`` as a device tensor; NaN when the count is 0."""
        total, count = self._tensors[sum_key], self._counts[count_key]
        return total / count if count else torch.full_like(total, float("nan"))

    def state_vector(self) -> torch.Tensor | None:
        """The state as one float vector (sums, then counts) for a cross-process sum, or None when
        the metric synchronises itself (see :meth:`synchronize`)."""
        values = [v.reshape(1).to(_acc_dtype(self._device)) for v in self._tensors.values()]
        values += [
            torch.tensor([float(c)], dtype=_acc_dtype(self._device), device=self._device)
            for c in self._counts.values()
        ]
        return torch.cat(values) if values else None

    def with_state_vector(self, vector: torch.Tensor) -> Metric:
        """A copy of this metric holding ``vector`` (a summed :meth:`state_vector`) as its state."""
        other = copy.copy(self)
        keys = list(self._tensors)
        other._tensors = {k: vector[i] for i, k in enumerate(keys)}
        other._counts = {k: round(float(vector[len(keys) + i])) for i, k in enumerate(self._counts)}
        return other

    def synchronize(self, gather: Any) -> Metric:
        """A copy holding every process's state, for metrics without a state vector (``gather`` maps
        an object to the list of every process's object). The default has nothing to gather."""
        return self

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        """A copy of the accumulated state."""
        state: dict[str, torch.Tensor | int] = {k: v.clone() for k, v in self._tensors.items()}
        state.update(self._counts)
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor | int]) -> None:
        """Restore a state from :meth:`state_dict`."""
        for key, value in self._tensors.items():  # in place: a captured CUDA graph holds these
            value.copy_(torch.as_tensor(state[key]))
        for key in self._counts:
            self._counts[key] = int(state[key])

    def counts(self) -> dict[str, int]:
        """A copy of the host-side counts."""
        return dict(self._counts)

    def set_counts(self, counts: dict[str, int]) -> None:
        """Replace the host-side counts (a caller that recorded an update once adds the counts of
        each repeat this way)."""
        self._counts.update(counts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def _acc_dtype(device: torch.device) -> torch.dtype:
    """float64 where the device has it, so long epochs sum without float32 drift."""
    return torch.float32 if device.type == "mps" else torch.float64
