"""Meter: the running statistics of one epoch (loss and metrics), kept on the device.

Each batch's mean loss is written into a device buffer (no host read); batch sizes are host ints.
``read`` turns everything into floats with one device-to-host copy, and ``first_nonfinite`` finds the
batch where the loss first became NaN or infinite. The epoch loss is the exact sample-weighted mean
``sum(loss_b * n_b) / sum(n_b)``, not a mean of batch means.

``loss_buffer`` and ``record_batch`` let a caller write a batch's loss and metric sums itself and
then count the batch (``ember.graphs`` does so from inside a captured CUDA graph).
"""

from __future__ import annotations

from typing import Any

import torch

from ember._tree import describe
from ember.errors import ConfigError
from ember.metrics.base import Metric, _acc_dtype

__all__ = ["Meter", "update_metrics"]

_INITIAL_CAPACITY = 1024


class Meter:
    """Loss and metric accumulators for one pass over the data.

    Args:
        metrics: the metric objects whose kind to measure: the meter updates its own copies, so
            meters (a fit's, an evaluate's inside it) never share state.
        device: where the statistics live (the model's device).
        capacity: expected number of batches (the buffer grows when exceeded).

    Example:
        >>> meter = Meter([], torch.device("cpu"))
        >>> meter.update(torch.tensor(1.0), None, None, 3); meter.update(torch.tensor(3.0), None, None, 1)
        >>> meter.read()
        {'loss': 1.5}
    """

    def __init__(self, metrics: list[Metric], device: torch.device, capacity: int | None = None) -> None:
        self.metrics = [m.clone().to(device) for m in metrics]
        self.device = device
        self._dtype = _acc_dtype(device)
        self._losses = torch.zeros(capacity or _INITIAL_CAPACITY, dtype=self._dtype, device=device)
        self._sizes: list[int] = []

    @property
    def batches(self) -> int:
        """Batches seen since the last reset."""
        return len(self._sizes)

    @property
    def samples(self) -> int:
        """Samples seen since the last reset."""
        return sum(self._sizes)

    def reset(self) -> None:
        """Start a new epoch."""
        self._sizes = []
        for metric in self.metrics:
            metric.reset()

    def update(self, loss: torch.Tensor | None, preds: object, target: object, n: int) -> None:
        """Record one batch: its mean loss (a 0-dim tensor, or None), outputs, targets and size."""
        i = len(self._sizes)
        losses = self.loss_buffer(i + 1)
        if loss is not None:
            losses[i] = loss.detach()
        self._sizes.append(n)
        if self.metrics:
            update_metrics(self.metrics, preds, target)

    def loss_buffer(self, batches: int) -> torch.Tensor:
        """The device buffer of per-batch mean losses (slot ``i`` for batch ``i`` of the epoch),
        grown to hold at least ``batches`` (a new tensor when it grows, else the same one)."""
        while batches > self._losses.numel():
            self._losses = torch.cat([self._losses, torch.zeros_like(self._losses)])
        return self._losses

    def record_batch(self, n: int) -> None:
        """Count a batch of ``n`` samples whose loss is already in :meth:`loss_buffer` at slot
        :attr:`batches` and whose metric statistics are already added (see ``ember.graphs``)."""
        self._sizes.append(n)

    def _loss_sum(self) -> torch.Tensor:
        k = len(self._sizes)
        sizes = torch.tensor(self._sizes, dtype=self._dtype).to(self.device, non_blocking=True)
        return (self._losses[:k] * sizes).sum()

    def _global(self, reduce: Any, gather: Any) -> tuple[torch.Tensor, int, list[Metric]]:
        """Loss sum, sample count and metrics summed over processes, with one all_reduce."""
        vectors = [
            torch.stack(
                [self._loss_sum(), torch.tensor(float(self.samples), dtype=self._dtype, device=self.device)]
            )
        ]
        vectors += [
            v.to(self.device, self._dtype) for m in self.metrics if (v := m.state_vector()) is not None
        ]
        summed = reduce(torch.cat(vectors))
        metrics, at = [], 2
        for metric in self.metrics:
            vector = metric.state_vector()
            if vector is None:
                metrics.append(metric.synchronize(gather))
            else:
                metrics.append(metric.with_state_vector(summed[at : at + len(vector)].to(vector.device)))
                at += len(vector)
        return summed[0], round(float(summed[1])), metrics

    def read(self, prefix: str = "", reduce: Any = None, gather: Any = None) -> dict[str, float]:
        """Loss and metric values so far, as floats (one device-to-host copy for device metrics).

        With ``reduce`` (a cross-process sum) and ``gather``, the values cover every process.
        """
        if reduce is None:
            loss_sum, total, metrics = self._loss_sum(), self.samples, self.metrics
        else:
            loss_sum, total, metrics = self._global(reduce, gather)
        device_metrics = [m for m in metrics if not m.host_sync]
        host_metrics = [m for m in metrics if m.host_sync]
        values = [loss_sum / max(total, 1)]
        values += [m.compute().to(self.device, self._dtype) for m in device_metrics]
        host = torch.stack(values).tolist()
        computed = dict(zip((m.name for m in device_metrics), host[1:], strict=True))
        computed.update({m.name: float(m.compute()) for m in host_metrics})
        logs = {prefix + "loss": host[0] if total else float("nan")}
        logs.update({prefix + m.name: computed[m.name] for m in self.metrics})
        return logs

    def first_nonfinite(self) -> int | None:
        """Index (0-based) of the first batch whose loss is NaN or infinite, or None."""
        bad = torch.nonzero(~torch.isfinite(self._losses[: len(self._sizes)]))
        return int(bad[0, 0]) if bad.numel() else None

    def state_dict(self) -> dict[str, object]:
        """The running epoch: per-batch losses, sizes and metric states."""
        return {
            "losses": self._losses[: len(self._sizes)].clone(),
            "sizes": list(self._sizes),
            "metrics": {m.name: m.state_dict() for m in self.metrics},
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore a running epoch saved by :meth:`state_dict`."""
        losses = torch.as_tensor(state["losses"]).to(self.device, self._dtype)
        sizes = list(state["sizes"])  # type: ignore[call-overload]
        if len(sizes) >= self._losses.numel():
            self._losses = torch.zeros(len(sizes) * 2, dtype=self._dtype, device=self.device)
        self._losses[: len(sizes)] = losses
        self._sizes = [int(s) for s in sizes]
        for metric in self.metrics:
            metric.load_state_dict(state["metrics"][metric.name])  # type: ignore[index]


def update_metrics(metrics: list[Metric], preds: Any, target: Any) -> None:
    """``metric.update`` of each; a model output that is not a tensor (a dict, a Hugging Face
    ModelOutput, a tuple) gets an error naming its type and keys instead of a bare AttributeError."""
    metric = None
    try:
        for metric in metrics:
            metric.update(preds, target)
    except (AttributeError, TypeError, ValueError, RuntimeError) as exc:
        if isinstance(preds, torch.Tensor) or metric is None:
            raise
        raise ConfigError(
            f"metric {metric.name!r} takes the model output as one tensor, but the model returned "
            f"{describe(preds)}; make the net return the tensor to measure (e.g. a wrapper whose "
            "forward returns out['logits']), or use a metric function that picks it: "
            f"metrics={{{metric.name!r}: lambda out, y: ...}}"
        ) from exc
