"""The graph halves of ember's plain objects, kept out of them: a DeviceLoader batch before it is
cut (:class:`LazyBatch`, yielded through the loader's neutral ``deferred`` hook, so the captured
step does the gather) and a Meter's update split into the part recorded in the graph and the part
done after each replay (:class:`GraphMeter`, over the Meter's ``loss_buffer`` / ``record_batch``).
Layer 3: uses data (DeviceLoader) and metrics (Meter).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from ember._tree import tree_map
from ember.data.device import DeviceLoader
from ember.metrics.meter import Meter, update_metrics

__all__ = ["GraphMeter", "LazyBatch"]


class LazyBatch(NamedTuple):
    """Batch ``b`` of a DeviceLoader's ``epoch`` before it is cut: the samples ``index`` (a device
    tensor). The captured step cuts it inside its graph; ``materialize()`` cuts it eagerly."""

    loader: DeviceLoader
    epoch: int
    b: int
    index: torch.Tensor

    def materialize(self) -> tuple[torch.Tensor, ...]:
        """The batch, exactly as the loader would have yielded it."""
        return self.loader.cut(self.index, self.loader.batch_generator(self.b, self.epoch))


class GraphMeter:
    """A Meter as a captured step sees it: the device half of an update (the loss into the slot a
    device-side cursor names, the in-place metrics' sums) recorded in the graph, and the host half
    (batch size, the counts the capture measured, the other metrics) after each replay.

    Args:
        meter: the fit's training Meter; only its public primitives are used (``loss_buffer``,
            ``record_batch``, ``metrics``).
    """

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self.cursor = torch.zeros(1, dtype=torch.long, device=meter.device)
        self.cursor_value = -1  # what the device cursor holds (-1: unknown)
        self.in_graph = [m for m in meter.metrics if m.update_in_place]
        self.after = [m for m in meter.metrics if not m.update_in_place]
        self.losses = meter.loss_buffer(1)

    def prepare(self) -> torch.Tensor:
        """Point the cursor at the next batch's slot (growing the buffer when full); returns the
        buffer, whose identity a captured graph depends on."""
        i = self.meter.batches
        self.losses = self.meter.loss_buffer(i + 1)
        if self.cursor_value != i:
            self.cursor.fill_(i)
            self.cursor_value = i
        return self.losses

    def counts(self) -> list[dict[str, int]]:
        """The host counts of the metrics updated inside the graph."""
        return [m.counts() for m in self.in_graph]

    def set_counts(self, counts: list[dict[str, int]]) -> None:
        """Put back counts from :meth:`counts`."""
        for metric, values in zip(self.in_graph, counts, strict=True):
            metric.set_counts(values)

    def device_update(self, loss: torch.Tensor, preds: Any, target: Any) -> None:
        """The half safe to capture: loss into the cursor's slot, cursor + 1, in-place metrics."""
        self.losses.index_copy_(0, self.cursor, loss.detach().to(self.losses.dtype).view(1))
        self.cursor.add_(1)
        for metric in self.in_graph:
            metric.update(preds, target)

    def record_replay(self, preds: Any, target: Any, n: int, added: list[dict[str, int]]) -> None:
        """The host half after a replay (or a capture that ran the step)."""
        self.meter.record_batch(n)
        self.cursor_value += 1
        for metric, more in zip(self.in_graph, added, strict=True):
            metric.set_counts({k: v + more[k] for k, v in metric.counts().items()})
        if self.after:  # the graph's outputs are overwritten by the next replay: keep copies
            update_metrics(self.after, tree_map(torch.clone, preds), tree_map(torch.clone, target))
