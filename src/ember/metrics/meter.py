"""Meter: the running statistics of one epoch (loss and metrics), kept on the device.

Each batch's mean loss is written into a device buffer (no host read); batch sizes are host ints.
``read`` turns everything into floats with one device-to-host copy, and ``first_nonfinite`` finds the
batch where the loss first became NaN or infinite. The epoch loss is the exact sample-weighted mean
``sum(loss_b * n_b) / sum(n_b)``, not a mean of batch means.

Inside a captured CUDA graph, :meth:`graph_update` does the device half of an update (the loss goes
to the slot a device-side cursor names; graph-safe metrics add in place) and ``update(...,
graphed=counts)`` the host half after each replay.
"""

from __future__ import annotations

from typing import Any

import torch

from ember._tree import describe, tree_map
from ember.errors import ConfigError
from ember.metrics.base import Metric, _acc_dtype

__all__ = ["Meter"]

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
        self._cursor = torch.zeros(1, dtype=torch.long, device=device)  # the next loss slot, for graphs
        self._cursor_value = 0  # what the device cursor holds (-1: unknown)

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

    def update(
        self,
        loss: torch.Tensor | None,
        preds: object,
        target: object,
        n: int,
        graphed: list[dict[str, int]] | None = None,
    ) -> None:
        """Record one batch: its mean loss (a 0-dim tensor, or None), outputs, targets and size.

        ``graphed``: the batch ran as a CUDA-graph replay whose :meth:`graph_update` already wrote the
        loss and the graph-safe metric sums; these are the counts that update added to each of them.
        """
        if graphed is not None:
            self._record_replay(preds, target, n, graphed)
            return
        i = len(self._sizes)
        if i == self._losses.numel():
            self._losses = torch.cat([self._losses, torch.zeros_like(self._losses)])
        if loss is not None:
            self._losses[i] = loss.detach()
        self._sizes.append(n)
        if self.metrics:
            _update(self.metrics, preds, target)

    def _graph_metrics(self) -> list[Metric]:
        return [m for m in self.metrics if m.graph_safe]

    def graph_counts(self) -> list[dict[str, int]]:
        """The host counts of the graph-safe metrics."""
        return [m.counts() for m in self._graph_metrics()]

    def set_graph_counts(self, counts: list[dict[str, int]]) -> None:
        """Put back counts from :meth:`graph_counts`."""
        for metric, values in zip(self._graph_metrics(), counts, strict=True):
            metric.set_counts(values)

    def prepare_graph_slot(self) -> torch.Tensor:
        """Make the device cursor name the next batch's loss slot (growing the buffer when full);
        returns the loss buffer, whose identity a captured graph depends on."""
        i = len(self._sizes)
        if i == self._losses.numel():
            self._losses = torch.cat([self._losses, torch.zeros_like(self._losses)])
        if self._cursor_value != i:
            self._cursor.fill_(i)
            self._cursor_value = i
        return self._losses

    def graph_update(self, loss: torch.Tensor, preds: Any, target: Any) -> None:
        """The device half of an update, safe to capture: loss into the cursor's slot, cursor + 1,
        graph-safe metrics updated (the others are updated after the replay)."""
        self._losses.index_copy_(0, self._cursor, loss.detach().to(self._dtype).view(1))
        self._cursor.add_(1)
        for metric in self._graph_metrics():
            metric.update(preds, target)

    def _record_replay(self, preds: Any, target: Any, n: int, counts: list[dict[str, int]]) -> None:
        self._sizes.append(n)
        self._cursor_value += 1
        for metric, added in zip(self._graph_metrics(), counts, strict=True):
            metric.set_counts({k: v + added[k] for k, v in metric.counts().items()})
        others = [m for m in self.metrics if not m.graph_safe]
        if others:  # the graph's outputs are overwritten by the next replay: keep copies
            preds, target = tree_map(torch.clone, preds), tree_map(torch.clone, target)
            _update(others, preds, target)

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
        self._cursor_value = -1
        for metric in self.metrics:
            metric.load_state_dict(state["metrics"][metric.name])  # type: ignore[index]


def _update(metrics: list[Metric], preds: Any, target: Any) -> None:
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
