"""Objective: what a batch holds and what a training step minimises, as ``Model.compile`` set it.

A batch is split into inputs, target and sample weights: a tuple ``(x, y)`` or ``(*inputs, y)``;
with ``weighted=True`` a 3-tuple is ``(x, y, sample_weight)``; a mapping is split by its target key
(``labels`` / ``label`` by default) and the rest goes to ``forward`` as keywords. The loss is one
loss function, several (one per output, weighted: a :class:`~ember.metrics.StructuredLoss`), or the
loss the model computed itself (``loss=None``: the output's ``.loss``, as transformers' Trainer reads
it). Sample and class weights make a batch's loss the weighted mean ``sum(w * l) / sum(w)``.
Metrics read a model output's ``.logits`` when it has them. Layer 3: uses batches, metrics,
weighting, options' ``split_batch`` and errors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ember import checks
from ember._tree import describe, to_device
from ember.arguments import check_not_class
from ember.batches import output_logits, output_loss, split_mapping
from ember.errors import ConfigError, DataError
from ember.metrics import (
    Metric,
    StructuredLoss,
    as_structured_loss,
    configure_output_accuracy,
    loss_component_metrics,
    resolve_metrics,
    resolve_output_metrics,
)
from ember.options import configure_accuracy, split_batch
from ember.weighting import class_sample_weights, class_weight_table, per_sample_loss, weighted_mean

__all__ = ["Objective"]


class Objective:
    """Batch splitting and the loss of a compiled model.

    Args:
        loss: a loss ``f(preds, target)``; ``{output: loss}`` or a list of losses for a model with
            several outputs; None when the model computes its loss (its output's ``.loss``).
        loss_weights: the weight of each output's loss (several losses only).
        target: the key of a mapping batch that holds the target (None: ``labels``, else ``label``).
        weighted: a 3-tuple batch is ``(inputs, target, sample_weight)`` (else ``(x1, x2, target)``).

    Example:
        >>> objective = Objective(torch.nn.MSELoss(), weighted=True)
        >>> x, y, w = objective.split((torch.ones(2, 1), torch.zeros(2, 1), torch.tensor([1.0, 3.0])), "cpu")
        >>> float(objective.loss(torch.tensor([[1.0], [2.0]]), y, w))
        3.25
    """

    def __init__(
        self, loss: Any, loss_weights: Any = None, target: str | None = None, weighted: bool = False
    ) -> None:
        check_not_class("loss", loss)
        if loss is not None and not callable(loss) and not isinstance(loss, (Mapping, list, tuple)):
            raise ConfigError(f"loss must be callable (e.g. nn.CrossEntropyLoss()), got {loss!r}")
        if target is not None and not isinstance(target, str):
            raise ConfigError(f"target names the key of dict batches that holds the target, got {target!r}")
        if not isinstance(weighted, bool):
            raise ConfigError(f"weighted must be True or False, got {weighted!r}")
        self.structured: StructuredLoss | None = as_structured_loss(loss, loss_weights)
        self.fn: Callable[..., torch.Tensor] | None = self.structured or loss
        self.target_key = target
        self.weighted = weighted
        self.class_weight: torch.Tensor | None = None  # a lookup table, set for one fit call
        self._per_sample: Callable[..., torch.Tensor] | None = None
        # a torch loss module gets the logits of a transformers output (it could not read the output)
        self.loss_reads_logits = isinstance(self.fn, nn.modules.loss._Loss)

    def metrics(self, spec: Sequence[Any] | Mapping[str, Any] | None) -> list[Metric]:
        """``compile(metrics=...)`` as metric objects: with several losses, ``{output: [metrics]}``
        plus one ``<output>_loss`` column per output; else names, objects or ``{column: metric}``."""
        if self.structured is None:
            metrics = resolve_metrics(spec)
            configure_accuracy(metrics, self.fn)
            return metrics
        metrics = loss_component_metrics(self.structured) + resolve_output_metrics(spec, self.structured.keys)
        configure_output_accuracy(metrics, self.structured)
        return metrics

    def set_class_weight(self, class_weight: Mapping[Any, Any] | None, device: torch.device) -> None:
        """``fit(class_weight={class: weight})`` for the coming fit (None: no class weights)."""
        if class_weight is not None and (self.structured is not None or self.fn is None):
            raise ConfigError(
                "class_weight weighs one loss that ember computes from one target; with several "
                "outputs' losses or with compile(loss=None) (the model's own loss), weigh inside the loss "
                "(e.g. nn.CrossEntropyLoss(weight=...)) instead"
            )
        self.class_weight = None if class_weight is None else class_weight_table(class_weight, device)

    def split(self, batch: Any, device: torch.device) -> tuple[Any, Any, torch.Tensor | None]:
        """``(inputs, target, sample_weight)`` of ``batch`` on ``device`` (weight None: unweighted);
        class weights apply to training steps (with gradients) only, as in Keras."""
        if self.class_weight is None and not self.weighted and type(batch) in (tuple, list):
            if len(batch) == 2:  # the common case, as fast as it goes
                inputs, target = batch
                if type(inputs) is torch.Tensor and type(target) is torch.Tensor:
                    if inputs.device == device and target.device == device:  # a DeviceLoader's batch
                        return inputs, target, None
                    return inputs.to(device, non_blocking=True), target.to(device, non_blocking=True), None
            inputs, target = split_batch(batch, device)
            return inputs, target, None
        weight = None
        if isinstance(batch, Mapping):
            inputs, target = split_mapping(batch, self.target_key, device, keep_target=self.fn is None)
        elif self.weighted and _is_triple(batch):
            inputs, target = split_batch(tuple(batch[:2]), device)
            weight = _sample_weight(batch[2], target, device)
        else:
            inputs, target = split_batch(batch, device)
        if self.class_weight is not None and torch.is_grad_enabled() and isinstance(target, torch.Tensor):
            classes = class_sample_weights(self.class_weight, target)
            weight = classes if weight is None else weight * classes
        return inputs, target, weight

    def loss(self, preds: Any, target: Any, weight: torch.Tensor | None = None) -> torch.Tensor:
        """The batch's loss: the loss function's, its weighted mean over samples with ``weight``, or
        the model's own (``loss=None``)."""
        if self.fn is None:
            if weight is not None:
                raise ConfigError(
                    "sample or class weights need ember to compute the loss: pass compile(loss=...) "
                    "instead of loss=None (a model's own loss is already averaged)"
                )
            return output_loss(preds)
        if weight is None:
            return self.fn(preds, target)
        if self.structured is not None:
            raise ConfigError("sample and class weights apply to one loss, not to several outputs' losses")
        if self._per_sample is None:
            self._per_sample = per_sample_loss(self.fn)
        return weighted_mean(self._per_sample(preds, target), weight)

    def check_inputs(self, preds: Any, target: Any, read_values: bool) -> None:
        """ShapeError / DataError when outputs and targets cannot be right for the loss (each
        output's own loss with several); ``read_values`` also checks label ranges (a host read)."""
        for fn, part_preds, part_target in self._loss_inputs(preds, target):
            checks.check_loss_inputs(fn, part_preds, part_target, read_values)

    def explain_failure(self, preds: Any, target: Any, exc: Exception) -> Exception:
        """An ember error explaining ``exc`` raised by the loss, or ``exc`` itself."""
        for fn, part_preds, part_target in self._loss_inputs(preds, target):
            explained = checks.explain_loss_failure(fn, part_preds, part_target, exc)
            if explained is not exc:
                return explained
        return exc

    def _loss_inputs(self, preds: Any, target: Any) -> list[tuple[Any, Any, Any]]:
        """``(loss_fn, preds, target)`` of each loss (none when the model computes its loss)."""
        if self.structured is not None:
            return [(fn, p, t) for _, fn, p, t in self.structured.parts(preds, target)]
        return [] if self.fn is None else [(self.fn, preds, target)]

    def predictions(self, preds: Any) -> Any:
        """What metrics measure: the ``.logits`` of a model output that has them (one output)."""
        return preds if self.structured is not None else output_logits(preds)


def _is_triple(batch: Any) -> bool:
    return isinstance(batch, (list, tuple)) and len(batch) == 3 and not hasattr(batch, "_fields")


def _sample_weight(weight: Any, target: Any, device: torch.device) -> torch.Tensor:
    """The third element of a weighted batch as float32 weights of shape (N,) on ``device``."""
    weight = to_device(torch.as_tensor(weight), device)
    if weight.dim() == 2 and weight.shape[1] == 1:
        weight = weight[:, 0]
    n = target.shape[0] if isinstance(target, torch.Tensor) and target.dim() else None
    if weight.dim() != 1 or (n is not None and weight.shape[0] != n):
        raise DataError(
            f"with compile(weighted=True) a 3-tuple batch is (inputs, target, sample_weight); its "
            f"sample_weight has shape {tuple(weight.shape)}, but the target is {describe(target)}: "
            "give one weight per sample, shape (N,)"
        )
    return weight.float()
