"""Sample weights and class weights as losses and weights: the building blocks, not the wiring.

With per-sample weights ``w`` a batch's loss is the weighted mean ``sum(w * l) / sum(w)`` of its
per-sample losses ``l`` (Keras divides by the sample count instead; ember's choice keeps the epoch
loss an exact weighted mean over batches). ``fit(class_weight={0: 1.0, 1: 5.0})`` becomes per-sample
weights looked up from the targets on the device. Everything here runs on the device with no host
read of a tensor, so it fits inside a step (and a captured CUDA graph).
Layer 2: imports torch, ember.errors and ember._tree only; how a step or ``fit`` uses these is the
loop's and the facade's business.
"""

from __future__ import annotations

import copy
import math
import numbers
import operator
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ember._tree import describe
from ember.errors import ConfigError, ShapeError

__all__ = [
    "check_class_weight",
    "class_sample_weights",
    "class_weight_table",
    "per_sample_loss",
    "weighted_mean",
]

PerSampleLoss = Callable[[Any, Any], torch.Tensor]
_MAX_CLASS = 2**24  # a dense lookup table: class indices beyond this are surely a mistake


def per_sample_loss(loss_fn: Callable[..., Any]) -> PerSampleLoss:
    """A function ``(preds, target) -> losses`` of shape (N,): one loss per sample.

    A torch loss module with a ``reduction`` attribute is copied (it shares its buffers, such as
    ``pos_weight``) with ``reduction="none"``, and its element losses are averaged over the
    non-batch dims, so weights of all ones give back the ``"mean"`` reduction for per-sample
    targets (``"batchmean"``: summed over the non-batch dims, giving back ``"batchmean"``).
    For ``CrossEntropyLoss`` / ``NLLLoss`` with class-index targets of shape (N, ...), positions
    equal to ``ignore_index`` are left out of a sample's mean (a fully ignored sample has loss 0
    but its weight still counts in :func:`weighted_mean`; give it weight 0 to drop it).
    Any other callable is called as it is and must return one value per sample (shape (N,) or
    (N, ...), averaged over the non-batch dims).

    Refused with ConfigError: a loss with ``reduction="sum"`` (sample weights make a weighted mean),
    and ``CrossEntropyLoss(weight=...)`` / ``NLLLoss(weight=...)``: their element losses are
    already ``w_c * l`` and their mean divides by ``sum(w_c)``, so combining them with sample weights
    would weight twice or not at all; pass the class weights as ``class_weight=`` instead (they
    become sample weights through :func:`class_sample_weights`; for targets of shape (N,) their
    weighted mean equals ``CrossEntropyLoss(weight=...)``'s mean reduction).

    Example:
        >>> per_sample = per_sample_loss(nn.MSELoss())
        >>> per_sample(torch.tensor([[1.0, 3.0], [0.0, 0.0]]), torch.zeros(2, 2))
        tensor([5., 0.])
    """
    if isinstance(loss_fn, nn.Module) and isinstance(getattr(loss_fn, "reduction", None), str):
        return _module_per_sample(loss_fn)
    name = getattr(loss_fn, "__name__", type(loss_fn).__name__)

    def per_sample(preds: Any, target: Any) -> torch.Tensor:
        return _sample_means(_per_sample_values(name, loss_fn(preds, target)), None)

    return per_sample


def _module_per_sample(loss_fn: nn.Module) -> PerSampleLoss:
    """:func:`per_sample_loss` for a torch loss module with a ``reduction``."""
    reduction = loss_fn.reduction
    name = type(loss_fn).__name__
    if reduction == "sum":
        raise ConfigError(
            f"sample weights make the loss the weighted mean sum(w * l) / sum(w), but {name} has "
            "reduction='sum'; use reduction='mean'"
        )
    indexed = isinstance(loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss))
    if indexed and getattr(loss_fn, "weight", None) is not None:
        raise ConfigError(
            f"{name}(weight=...) cannot be combined with sample weights (its per-sample losses are "
            "already class-weighted and its mean divides by the sum of class weights); give the "
            f"class weights as fit(class_weight={{class: weight}}) and a plain {name}()"
        )
    module = copy.copy(loss_fn)  # shallow: shares parameters and buffers, own reduction
    module.reduction = "none"
    summed = reduction == "batchmean"

    def per_sample(preds: Any, target: Any) -> torch.Tensor:
        values = _per_sample_values(name, module(preds, target))
        valid = None
        if (
            indexed
            and isinstance(target, torch.Tensor)
            and target.dim() > 1
            and not target.is_floating_point()
        ):
            valid = target != module.ignore_index
        if summed:
            return values.reshape(values.shape[0], -1).sum(1) if values.dim() > 1 else values
        return _sample_means(values, valid)

    return per_sample


def _per_sample_values(name: str, values: Any) -> torch.Tensor:
    """``values`` when it holds one loss per sample (a tensor with a batch dim), else ConfigError."""
    if not isinstance(values, torch.Tensor) or values.dim() == 0:
        raise ConfigError(
            f"sample weights need per-sample losses, but the loss {name} returned "
            f"{'a 0-dim tensor' if isinstance(values, torch.Tensor) else describe(values)}; "
            "a loss function should return one value per sample, shape (N,)"
        )
    return values


def _sample_means(values: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Mean over the non-batch dims of ``values`` (over the ``valid`` positions when given)."""
    if values.dim() == 1:
        return values
    rows = values.reshape(values.shape[0], -1)
    if valid is None:
        return rows.mean(1)
    count = valid.reshape(values.shape[0], -1).sum(1).clamp_min(1)
    return rows.sum(1) / count


def weighted_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``sum(w * l) / sum(w)`` as a 0-dim device tensor (no host read).

    Computed in at least float32. A batch whose weights are all 0 gives 0 (not 0/0), with zero
    gradients, so it adds nothing to an epoch that also counts its ``sum(w)``. Negative weights
    are not checked here (that would read the device).

    Args:
        values: per-sample values, shape (N,) (see :func:`per_sample_loss`).
        weight: per-sample weights, shape (N,).

    Example:
        >>> weighted_mean(torch.tensor([1.0, 3.0]), torch.tensor([3.0, 1.0]))
        tensor(1.5000)
    """
    if values.dim() != 1 or weight.dim() != 1 or values.shape[0] != weight.shape[0]:
        raise ShapeError(
            f"weighted_mean needs one value and one weight per sample, shape (N,); got values "
            f"{tuple(values.shape)} and weights {tuple(weight.shape)}"
        )
    dtype = torch.promote_types(values.dtype, torch.float32)
    w = weight.to(dtype)
    total = w.sum()
    safe = torch.where(total == 0, torch.ones_like(total), total)
    return (values.to(dtype) * w).sum() / safe


def check_class_weight(class_weight: Mapping[Any, Any]) -> dict[int, float]:
    """Validate ``fit(class_weight=...)`` and return it as ``{int class: float weight}``.

    Keys must be non-negative integer class indices, values finite non-negative numbers, not all 0.
    Classes missing from the mapping weigh 1.0 (as in Keras).

    Example:
        >>> check_class_weight({0: 1, 1: 5.0})
        {0: 1.0, 1: 5.0}
    """
    if not isinstance(class_weight, Mapping) or not class_weight:
        raise ConfigError(
            f"class_weight must be a non-empty mapping {{class index: weight}}, got {describe(class_weight)}"
        )
    checked: dict[int, float] = {}
    for key, value in class_weight.items():
        checked[_class_index(key)] = _class_weight_value(key, value)
    if not any(checked.values()):
        raise ConfigError(f"class_weight gives every class weight 0: {checked}; the loss would be 0/0")
    return checked


def _class_index(key: Any) -> int:
    """A class_weight key as a non-negative int (bools and floats refused)."""
    try:
        index = operator.index(key) if not isinstance(key, bool) else None
    except TypeError:
        index = None
    if index is None or index < 0 or index >= _MAX_CLASS:
        raise ConfigError(
            f"class_weight key {key!r} is not a class index: keys must be integers in [0, {_MAX_CLASS})"
        )
    return index


def _class_weight_value(key: Any, value: Any) -> float:
    """A class_weight value as a finite non-negative float."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigError(f"class_weight[{key!r}] = {value!r}: weights must be finite non-negative numbers")
    return float(value)


def class_weight_table(class_weight: Mapping[Any, Any], device: torch.device | str = "cpu") -> torch.Tensor:
    """The device lookup table of :func:`class_sample_weights`: entry ``c`` is class ``c``'s weight
    (1.0 for classes missing from the mapping); one extra last entry, 1.0, serves every target
    outside the table (larger classes, negative labels such as an ``ignore_index``).

    Build it once and pass it to :func:`class_sample_weights` to skip rebuilding it each batch.

    Example:
        >>> class_weight_table({0: 0.5, 2: 4.0})
        tensor([0.5000, 1.0000, 4.0000, 1.0000])
    """
    checked = check_class_weight(class_weight)
    values = [1.0] * (max(checked) + 2)
    for index, weight in checked.items():
        values[index] = weight
    return torch.tensor(values, dtype=torch.float32).to(device, non_blocking=True)


def class_sample_weights(
    class_weight: Mapping[Any, Any] | torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """Per-sample weights (shape (N,), float32, on ``target``'s device) from class targets.

    Targets: integer class indices of shape (N,) or (N, 1); binary float targets 0./1. of shape
    (N,) or (N, 1) (class 1 when > 0.5); one-hot or probability targets (N, C) (the argmax class, as
    Keras does). A class missing from the mapping, or outside the table, weighs 1.0. No host read.

    Args:
        class_weight: ``{class: weight}`` (validated by :func:`check_class_weight`), or a table
            from :func:`class_weight_table`.
        target: the batch's targets.

    Example:
        >>> class_sample_weights({0: 1.0, 1: 5.0}, torch.tensor([1, 0, 1]))
        tensor([5., 1., 5.])
    """
    if isinstance(class_weight, torch.Tensor):
        table = class_weight.to(target.device, non_blocking=True)
    else:
        table = class_weight_table(class_weight, target.device)
    classes = _target_classes(target)
    last = table.shape[0] - 1
    inside = (classes >= 0) & (classes < last)
    return table[torch.where(inside, classes, torch.full_like(classes, last))]


def _target_classes(target: torch.Tensor) -> torch.Tensor:
    """One class index per sample (int64, shape (N,)) from a target :func:`class_sample_weights` takes."""
    if target.dim() == 2 and target.shape[1] > 1 and target.is_floating_point():
        return target.argmax(1)
    if target.dim() == 2 and target.shape[1] == 1:
        target = target[:, 0]
    if target.dim() != 1:
        raise ShapeError(
            f"class_weight needs one class per sample: targets of shape (N,), (N, 1) or one-hot (N, C), "
            f"got {tuple(target.shape)}"
        )
    if target.is_floating_point():
        return (target > 0.5).long()
    return target.long()
