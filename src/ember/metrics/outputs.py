"""Per-output metrics of a model with several outputs: ``OutputMetric`` measures one output of a
dict or tuple against the same key of the target, named ``<output>_<metric>``; ``compile(metrics=
{output: [...]})`` resolves into them, and each output's binary accuracy follows its own loss.
Layer 2: part of ember.metrics (the structured loss and output names are ``structured.py``'s).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ember.errors import ConfigError
from ember.metrics.adapters import resolve_metrics
from ember.metrics.base import Metric
from ember.metrics.classification import Accuracy
from ember.metrics.structured import Key, StructuredLoss, canonical_key, output_name, select_output

__all__ = ["OutputMetric", "configure_output_accuracy", "resolve_output_metrics"]


class OutputMetric(Metric):
    """Any ember Metric measuring one output: ``metric.update(preds[key], target[key])``.

    Named ``f"{output_name(key)}_{metric.name}"`` (``cls_accuracy``, ``output_1_mae``); state, counts,
    cross-process sums, direction and the in-place flag are the wrapped metric's.

    Args:
        metric: the metric to apply (owned by this wrapper: clones copy it).
        key: the output's dict key or position.

    Example:
        >>> m = OutputMetric(Accuracy(), "cls")
        >>> m.update({"cls": torch.tensor([[2.0, 0.0]])}, {"cls": torch.tensor([0])})
        >>> m.name, float(m.compute())
        ('cls_accuracy', 1.0)
    """

    def __init__(self, metric: Metric, key: Key) -> None:
        super().__init__(f"{output_name(key)}_{metric.name}")
        self.metric = metric
        self.key = key
        self.host_sync = metric.host_sync  # a metric's flags are fixed by its kind: copied once
        self.update_in_place = metric.update_in_place
        self.higher_is_better = metric.higher_is_better

    def _wrap(self, metric: Metric) -> OutputMetric:
        other = copy.copy(self)
        other.metric = metric
        return other

    def reset(self) -> None:
        """Reset the wrapped metric."""
        self.metric.reset()

    def clone(self) -> Metric:
        """A copy around ``metric.clone()``."""
        return self._wrap(self.metric.clone())

    def to(self, device: torch.device) -> Metric:
        """Move the wrapped metric's state."""
        self._device = torch.device(device)
        self.metric = self.metric.to(device)
        return self

    def update(self, preds: Any, target: Any, weight: torch.Tensor | None = None) -> None:
        """Update the wrapped metric with this output's predictions and targets."""
        p = select_output(preds, self.key, "model output")
        t = select_output(target, self.key, "target")
        if weight is None:
            self.metric.update(p, t)
        else:
            self.metric.update(p, t, weight)  # type: ignore[call-arg]

    def compute(self) -> torch.Tensor:
        """The wrapped metric's value."""
        return self.metric.compute()

    def state_vector(self) -> torch.Tensor | None:
        """The wrapped metric's state vector."""
        return self.metric.state_vector()

    def with_state_vector(self, vector: torch.Tensor) -> Metric:
        """A copy around ``metric.with_state_vector(vector)``."""
        return self._wrap(self.metric.with_state_vector(vector))

    def synchronize(self, gather: Any) -> Metric:
        """A copy around ``metric.synchronize(gather)``."""
        return self._wrap(self.metric.synchronize(gather))

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        """The wrapped metric's state."""
        return self.metric.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor | int]) -> None:
        """Restore the wrapped metric's state."""
        self.metric.load_state_dict(state)

    def counts(self) -> dict[str, int]:
        """The wrapped metric's host counts."""
        return self.metric.counts()

    def set_counts(self, counts: dict[str, int]) -> None:
        """Replace the wrapped metric's host counts."""
        self.metric.set_counts(counts)


def _per_output(spec: Any, keys: Sequence[Key]) -> list[tuple[Key, Any]]:
    """``(loss key, metric specs)`` pairs from a dict (or, for tuple outputs, a list per position)."""
    if isinstance(spec, Mapping):
        return [(canonical_key(k, keys, "metrics"), v) for k, v in spec.items()]
    positional = all(isinstance(k, int) for k in keys)
    if positional and isinstance(spec, (list, tuple)) and len(spec) == len(keys):
        return list(zip(keys, spec, strict=True))
    either = f" (or a list of {len(keys)} entries, one per output)" if positional else ""
    outputs = [output_name(k) for k in keys]
    raise ConfigError(
        f"with several losses, metrics is a dict {{output: [metrics]}}{either}; the loss "
        f"outputs are {outputs}; got {spec!r}"
    )


def resolve_output_metrics(spec: Any, keys: Sequence[Key]) -> list[Metric]:
    """Per-output metrics for ``compile(metrics=...)`` when the loss is structured.

    ``spec`` maps an output key (one of ``keys``, the loss keys; a position as an int or
    ``"output_i"``) to what ``resolve_metrics`` takes: a name, a metric, a function or a list of
    them. For tuple outputs a list with one entry per output (None for none) works too. The rule:
    with ONE loss, a dict ``metrics={"acc": Accuracy()}`` maps column names to metrics; with a
    structured loss (and only then is this function called) the dict's keys are outputs.

    Example:
        >>> [m.name for m in resolve_output_metrics({"cls": ["accuracy"], "reg": "mae"}, ("cls", "reg"))]
        ['cls_accuracy', 'reg_mae']
    """
    if spec is None:
        return []
    metrics: list[Metric] = [
        OutputMetric(metric.clone(), key)  # each output owns its metric, even when one object is reused
        for key, specs in _per_output(spec, keys)
        for metric in resolve_metrics(specs)
    ]
    names = [m.name for m in metrics]
    taken = {f"{output_name(k)}_loss" for k in keys}  # prefixed names never hit "loss" or "lr"
    clashes = sorted({n for n in names if names.count(n) > 1 or n in taken})
    if clashes:
        raise ConfigError(f"metric columns {clashes} repeat or clash with loss columns; got {names}")
    return metrics


def configure_output_accuracy(metrics: Sequence[Metric], structured: StructuredLoss) -> None:
    """Each output's binary accuracy reads logits after BCEWithLogitsLoss and probabilities after
    BCELoss (its own loss decides; an explicit ``from_logits`` is kept).

    Example:
        >>> ms = resolve_output_metrics({"b": "accuracy"}, ("b",))
        >>> configure_output_accuracy(ms, StructuredLoss({"b": nn.BCEWithLogitsLoss()}))
        >>> ms[0].metric.from_logits
        True
    """
    for m in metrics:
        if isinstance(m, OutputMetric) and isinstance(m.metric, Accuracy) and m.metric.from_logits is None:
            loss = structured.losses.get(m.key)
            m.metric.from_logits = {nn.BCEWithLogitsLoss: True, nn.BCELoss: False}.get(type(loss))
