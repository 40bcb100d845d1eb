"""The Metric protocol: reset / update / compute, with the state held as device tensors of sums.

``update`` never reads a tensor on the host, so metrics cost no synchronisation inside a step;
``compute`` returns a 0-dim tensor that the loop reads together with the loss in one copy.
Sample counts are known on the host (batch shapes), so they are kept as Python ints.

Per-sample weights (``update(preds, target, weight)``) are optional: a weighted batch adds
``sum_i w_i * sum_j v_ij`` to a sum and ``k * sum(w)`` (``k`` values per sample) to a device sum of
weights, so its denominator stays on the device; an unweighted batch counts as weights of 1. Until a
weighted batch is seen, :meth:`Metric.ratio` is exactly the unweighted ``sum / count``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from ember.errors import ShapeError

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
        self._weight_keys: dict[str, tuple[str, str]] = {}

    def add_state(self, key: str, kind: str = "sum") -> None:
        """Declare a state entry: ``kind="sum"`` (a device float64 tensor) or ``"count"`` (a host int)."""
        if kind == "count":
            self._counts[key] = 0
        else:
            self._tensors[key] = torch.zeros((), dtype=_acc_dtype(self._device), device=self._device)

    def add_weight_state(self, count_key: str) -> None:
        """Declare the weighted part of the count ``count_key``: a device sum of weights
        (``<count_key>_weight``) and a host count of the values that came with weights
        (``<count_key>_weighted``); :meth:`add_weighted` fills them and :meth:`ratio` reads them."""
        weight_key = f"{count_key}_weight"
        weighted_key = f"{count_key}_weighted"
        self.add_state(weight_key)
        self.add_state(weighted_key, kind="count")
        self._weight_keys[count_key] = (weight_key, weighted_key)

    def check_weight(self, weight: torch.Tensor, preds: torch.Tensor) -> None:
        """Raise ShapeError unless ``weight`` is 1-d with one entry per sample of ``preds`` (shapes only)."""
        if weight.dim() != 1 or preds.dim() == 0 or weight.shape[0] != preds.shape[0]:
            raise ShapeError(
                f"{self.name}: sample weights {tuple(weight.shape)} do not fit predictions "
                f"{tuple(preds.shape)}; give one weight per sample, a 1-d tensor of length N"
            )

    def add_weighted(self, sum_key: str, count_key: str, values: torch.Tensor, weight: torch.Tensor) -> None:
        """Add a weighted batch in place (device ops only): ``sum_i w_i * sum_j values_ij`` to
        ``sum_key`` and ``k * sum(w)`` to the weight sum of ``count_key`` (``k`` values per sample,
        so a per-sample value is the mean over its non-batch entries); the host counts grow by
        ``values.numel()``. ``values`` is sample-major with ``weight.shape[0]`` samples."""
        n = weight.shape[0]
        per_sample = values.numel() // n if n else 0
        rows = values.reshape(n, per_sample)
        self._tensors[sum_key].add_((rows * weight.to(rows.dtype).unsqueeze(1)).sum())
        weight_key, weighted_key = self._weight_keys[count_key]
        total = self._tensors[weight_key]
        total.add_(weight.sum(dtype=total.dtype), alpha=per_sample)
        self._counts[count_key] += rows.numel()
        self._counts[weighted_key] += rows.numel()

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

    def update(self, preds: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> None:
        """Add one batch's sufficient statistics (device ops only).

        Args:
            preds: the model output.
            target: the targets.
            weight: None, or per-sample weights: a 1-d float tensor of length N (the batch size) on
                the device of ``preds``; weights are not checked for sign on the host (no sync).
        """
        raise NotImplementedError

    def compute(self) -> torch.Tensor:
        """The metric over everything seen since ``reset``, as a 0-dim tensor (no host read)."""
        raise NotImplementedError

    def ratio(self, sum_key: str, count_key: str) -> torch.Tensor:
        """``state[sum_key] / state[count_key]`` as a device tensor; NaN when the count is 0.

        When weighted values were added (see :meth:`add_weight_state`), the denominator is the
        device sum of weights plus the count of unweighted values, so mixed epochs stay exact.
        """
        total, count = self._tensors[sum_key], self._counts[count_key]
        keys = self._weight_keys.get(count_key)
        if keys is not None and self._counts[keys[1]]:
            return total / (self._tensors[keys[0]] + (count - self._counts[keys[1]]))
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
        optional = {key for keys in self._weight_keys.values() for key in keys}  # absent before weights
        for key, value in self._tensors.items():  # in place: a captured CUDA graph holds these
            value.copy_(torch.as_tensor(state[key] if key in state or key not in optional else 0))
        for key in self._counts:
            self._counts[key] = int(state[key] if key in state or key not in optional else 0)

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
