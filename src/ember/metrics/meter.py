"""Meter: the running statistics of one epoch (loss and metrics), kept on the device.

Each batch's mean loss is written into a device buffer (no host read); batch sizes are host ints.
``read`` turns everything into floats with one device-to-host copy, and ``first_nonfinite`` finds the
batch where the loss first became NaN or infinite. The epoch loss is the exact sample-weighted mean
``sum(loss_b * n_b) / sum(n_b)``, not a mean of batch means.

A batch may come with per-sample weights: its loss is then the batch's weighted mean and it counts
``W_b = sum(weights)`` (a device tensor, kept in a second buffer) instead of ``n_b``, so the epoch loss
is ``sum(loss_b * d_b) / sum(d_b)`` with ``d_b`` = ``W_b`` or ``n_b``; the weights go on to the metrics.
Until a weighted batch is seen, nothing of this runs.

``loss_buffer`` and ``record_batch`` let a caller write a batch's loss and metric sums itself and
then count the batch (``ember.graphs`` does so from inside a captured CUDA graph); ``weight_buffer``
is the same for the weight sums.
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

import torch

from ember._tree import describe
from ember.errors import ConfigError, EmberError
from ember.metrics.base import Metric, _acc_dtype

__all__ = ["Meter", "update_metrics"]

_INITIAL_CAPACITY = 1024


class _LossSums(NamedTuple):
    """An epoch's loss statistics: ``loss`` = sum of ``loss_b * d_b``; ``samples`` all samples (host);
    ``weight`` the summed ``W_b`` of weighted batches (device) and ``weighted`` their samples (host)."""

    loss: torch.Tensor
    samples: int
    weight: torch.Tensor | None
    weighted: int

    def mean(self) -> torch.Tensor:
        """``loss / (unweighted samples + weight)``; exactly ``loss / samples`` without weights."""
        if not self.weighted or self.weight is None:
            return self.loss / max(self.samples, 1)
        return self.loss / (self.weight + (self.samples - self.weighted))


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
        self._capacity = self._losses.numel()  # slots in the buffer, kept as an int for the per-batch check
        self._sizes: list[int] = []
        self._weights: torch.Tensor | None = None  # per-batch weight sums, made at the first weighted batch
        self._weighted: list[int] = []  # indices of this epoch's batches that came with weights

    @property
    def batches(self) -> int:
        """Batches seen since the last reset."""
        return len(self._sizes)

    @property
    def samples(self) -> int:
        """Samples seen since the last reset (weighted or not: a count, not a weight sum)."""
        return sum(self._sizes)

    def reset(self) -> None:
        """Start a new epoch."""
        self._sizes = []
        self._weighted = []
        for metric in self.metrics:
            metric.reset()

    def update(
        self,
        loss: torch.Tensor | None,
        preds: object,
        target: object,
        n: int,
        weight: torch.Tensor | None = None,
    ) -> None:
        """Record one batch: its mean loss (a 0-dim tensor, or None), outputs, targets and size.

        Args:
            weight: None, or the batch's per-sample weights (shape (N,), on the device): ``loss``
                is then the weighted mean ``sum(w * l) / sum(w)``, the batch counts ``sum(w)``
                for the loss, and the metrics get the weights.
        """
        i = len(self._sizes)
        losses = self._losses if i < self._capacity else self.loss_buffer(i + 1)
        if loss is not None:
            losses[i] = loss.detach()
        if weight is not None:
            self.weight_buffer(i + 1)[i] = weight.detach().sum(dtype=self._dtype)
            self._weighted.append(i)
        self._sizes.append(n)
        if self.metrics:
            update_metrics(self.metrics, preds, target, weight)

    def loss_buffer(self, batches: int) -> torch.Tensor:
        """The device buffer of per-batch mean losses (slot ``i`` for batch ``i`` of the epoch),
        grown to hold at least ``batches`` (a new tensor when it grows, else the same one)."""
        while batches > self._losses.numel():
            self._losses = torch.cat([self._losses, torch.zeros_like(self._losses)])
        self._capacity = self._losses.numel()
        return self._losses

    def weight_buffer(self, batches: int) -> torch.Tensor:
        """The device buffer of per-batch weight sums (slot ``i`` for batch ``i``; read only for
        batches recorded as weighted), made on first use and grown like :meth:`loss_buffer`."""
        if self._weights is None:
            self._weights = torch.zeros_like(self._losses)
        while batches > self._weights.numel():
            self._weights = torch.cat([self._weights, torch.zeros_like(self._weights)])
        return self._weights

    def record_batch(self, n: int, weighted: bool = False) -> None:
        """Count a batch of ``n`` samples whose loss is already in :meth:`loss_buffer` at slot
        :attr:`batches` and whose metric statistics are already added (see ``ember.graphs``);
        ``weighted=True`` when its weight sum is already in :meth:`weight_buffer` at that slot."""
        if weighted:
            self._weighted.append(len(self._sizes))
        self._sizes.append(n)

    def _loss_sum(self) -> torch.Tensor:
        k = len(self._sizes)
        sizes = torch.tensor(self._sizes, dtype=self._dtype).to(self.device, non_blocking=True)
        return (self._losses[:k] * sizes).sum()

    def _batch_weights(self) -> torch.Tensor:
        """Per-batch weight sums of this epoch, 0 for unweighted batches (device)."""
        k = len(self._sizes)
        mask = torch.zeros(k, dtype=torch.bool)
        mask[self._weighted] = True
        weights = self.weight_buffer(k)[:k]
        return torch.where(mask.to(self.device, non_blocking=True), weights, torch.zeros_like(weights))

    def _local(self) -> _LossSums:
        """This process's loss statistics (the unweighted path as it always was)."""
        if not self._weighted:
            return _LossSums(self._loss_sum(), self.samples, None, 0)
        k = len(self._sizes)
        weighted = set(self._weighted)
        sizes = [0 if i in weighted else n for i, n in enumerate(self._sizes)]
        weights = self._batch_weights()
        counts = torch.tensor(sizes, dtype=self._dtype).to(self.device, non_blocking=True)
        loss = (self._losses[:k] * (counts + weights)).sum()
        return _LossSums(loss, self.samples, weights.sum(), sum(self._sizes[i] for i in weighted))

    def _global(self, reduce: Any, gather: Any) -> tuple[_LossSums, list[Metric]]:
        """Loss statistics and metrics summed over processes, with one all_reduce."""
        own = self._local()
        weight = (
            own.weight if own.weight is not None else torch.zeros((), dtype=self._dtype, device=self.device)
        )
        counts = torch.tensor([float(own.samples), float(own.weighted)], dtype=self._dtype)
        vectors = [torch.stack([own.loss, weight]), counts.to(self.device, non_blocking=True)]
        vectors += [
            v.to(self.device, self._dtype) for m in self.metrics if (v := m.state_vector()) is not None
        ]
        summed = reduce(torch.cat(vectors))
        metrics: list[Metric] = []
        at = 4
        for metric in self.metrics:
            vector = metric.state_vector()
            if vector is None:
                metrics.append(metric.synchronize(gather))
            else:
                metrics.append(metric.with_state_vector(summed[at : at + len(vector)].to(vector.device)))
                at += len(vector)
        samples, weighted = (round(c) for c in summed[2:4].tolist())
        return _LossSums(summed[0], samples, summed[1], weighted), metrics

    def read(self, prefix: str = "", reduce: Any = None, gather: Any = None) -> dict[str, float]:
        """Loss and metric values so far, as floats (one device-to-host copy for device metrics).

        With ``reduce`` (a cross-process sum) and ``gather``, the values cover every process.
        """
        if reduce is None:
            sums = self._local()
            metrics = self.metrics
        else:
            sums, metrics = self._global(reduce, gather)
        device_metrics = [m for m in metrics if not m.host_sync]
        host_metrics = [m for m in metrics if m.host_sync]
        values = [sums.mean()]
        values += [m.compute().to(self.device, self._dtype) for m in device_metrics]
        host = torch.stack(values).tolist()
        computed = dict(zip((m.name for m in device_metrics), host[1:], strict=True))
        computed.update({m.name: float(m.compute()) for m in host_metrics})
        logs = {prefix + "loss": host[0] if sums.samples else float("nan")}
        logs.update({prefix + m.name: computed[m.name] for m in self.metrics})
        return logs

    def first_nonfinite(self) -> int | None:
        """Index (0-based) of the first batch whose loss is NaN or infinite, or None."""
        bad = torch.nonzero(~torch.isfinite(self._losses[: len(self._sizes)]))
        return int(bad[0, 0]) if bad.numel() else None

    def state_dict(self) -> dict[str, object]:
        """The running epoch: per-batch losses, sizes and metric states (and, once a batch had
        weights, the weighted batches' indices and per-batch weight sums)."""
        state: dict[str, object] = {
            "losses": self._losses[: len(self._sizes)].clone(),
            "sizes": list(self._sizes),
            "metrics": {m.name: m.state_dict() for m in self.metrics},
        }
        if self._weighted:
            state["weighted"] = list(self._weighted)
            state["weights"] = self._batch_weights()
        return state

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore a running epoch saved by :meth:`state_dict`."""
        losses = torch.as_tensor(state["losses"]).to(self.device, self._dtype)
        sizes = list(state["sizes"])  # type: ignore[call-overload]
        if len(sizes) >= self._losses.numel():
            self._losses = torch.zeros(len(sizes) * 2, dtype=self._dtype, device=self.device)
            self._capacity = self._losses.numel()
        self._losses[: len(sizes)] = losses
        self._sizes = [int(s) for s in sizes]
        self._weighted = [int(i) for i in state.get("weighted", [])]  # type: ignore[attr-defined]
        if self._weighted:
            weights = torch.as_tensor(state["weights"]).to(self.device, self._dtype)
            self.weight_buffer(len(sizes))[: len(sizes)] = weights
        for metric in self.metrics:
            metric.load_state_dict(state["metrics"][metric.name])  # type: ignore[index]


def update_metrics(
    metrics: list[Metric], preds: Any, target: Any, weight: torch.Tensor | None = None
) -> None:
    """``metric.update`` of each (with ``weight`` when given); a model output that is not a tensor
    (a dict, a Hugging Face ModelOutput, a tuple) gets an error naming its type and keys instead of
    a bare AttributeError."""
    metric = None
    try:
        if weight is None:
            for metric in metrics:
                metric.update(preds, target)
        else:
            for metric in metrics:
                _update_weighted(metric, preds, target, weight)
    except EmberError:
        raise
    except (AttributeError, TypeError, ValueError, RuntimeError) as exc:
        if isinstance(preds, torch.Tensor) or metric is None:
            raise
        raise ConfigError(
            f"metric {metric.name!r} takes the model output as one tensor, but the model returned "
            f"{describe(preds)}; make the net return the tensor to measure (e.g. a wrapper whose "
            "forward returns out['logits']), or use a metric function that picks it: "
            f"metrics={{{metric.name!r}: lambda out, y: ...}}"
        ) from exc


def _update_weighted(metric: Metric, preds: Any, target: Any, weight: torch.Tensor) -> None:
    """``metric.update(preds, target, weight)``; a custom metric whose ``update`` takes no weight
    gets a ConfigError saying so instead of a TypeError about argument counts."""
    try:
        metric.update(preds, target, weight)
    except TypeError as exc:
        params = inspect.signature(metric.update).parameters.values()
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(positional) >= 3 or any(p.kind == p.VAR_POSITIONAL for p in params):
            raise
        raise ConfigError(
            f"metric {metric.name!r} ({type(metric).__name__}) has update(preds, target) without a "
            "weight parameter, so it cannot take sample weights; give it "
            "update(self, preds, target, weight=None) or train without sample weights"
        ) from exc
