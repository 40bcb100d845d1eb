"""Checks that turn silent or cryptic loss-input problems into ember errors that name the cause.

Element-wise losses broadcast mismatched shapes ((N, 1) vs (N,)) and train wrong with only a warning;
classification losses fail deep inside torch on float or out-of-range labels. Run on the first batch
of a fit's training pass, of its validation and of every evaluate, and on the failing batch when a
loss raises. Knows torch and ember.errors only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ember._tree import describe
from ember.errors import DataError, ShapeError

__all__ = ["ELEMENTWISE_LOSSES", "check_loss_inputs", "explain_loss_failure"]

ELEMENTWISE_LOSSES = (
    nn.MSELoss,
    nn.L1Loss,
    nn.SmoothL1Loss,
    nn.HuberLoss,
    nn.BCELoss,
    nn.BCEWithLogitsLoss,
    nn.SoftMarginLoss,
    nn.PoissonNLLLoss,
    nn.GaussianNLLLoss,
)
_CLASS_LOSSES = (nn.CrossEntropyLoss, nn.NLLLoss)
_TorchLoss = nn.modules.loss._Loss  # torch's own losses: one output tensor, one target tensor


def _name(loss_fn: Any) -> str:
    return (
        type(loss_fn).__name__
        if isinstance(loss_fn, nn.Module)
        else getattr(loss_fn, "__name__", type(loss_fn).__name__)
    )


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def check_loss_inputs(loss_fn: Any, preds: Any, target: Any, read_values: bool) -> None:
    """Raise ShapeError / DataError when ``preds`` and ``target`` cannot be right for ``loss_fn``.

    Args:
        read_values: also check label ranges, which reads the labels on the host (a sync).
    """
    if target is None:
        raise DataError("the batches have no target; fit and evaluate need (inputs, target) batches")
    if isinstance(loss_fn, _TorchLoss):
        _check_tensors(loss_fn, preds, target)
    if not (isinstance(preds, torch.Tensor) and isinstance(target, torch.Tensor)):
        return
    if isinstance(loss_fn, ELEMENTWISE_LOSSES):
        _check_elementwise(loss_fn, preds, target)
        if read_values and isinstance(loss_fn, nn.BCELoss):
            _check_probabilities(loss_fn, preds)
    elif isinstance(loss_fn, _CLASS_LOSSES):
        _check_class_labels(loss_fn, preds, target, read_values)


def _check_tensors(loss_fn: nn.Module, preds: Any, target: Any) -> None:
    """torch's losses take one output tensor and one target tensor."""
    name = _name(loss_fn)
    if not isinstance(preds, torch.Tensor):
        raise DataError(
            f"{name} takes the model output as one tensor, but the model returned {describe(preds)}; "
            f"return one tensor from forward, or pick it in the loss, keeping your loss object: "
            "compile(loss=lambda out, y: criterion(out[0], y))"
        )
    if not isinstance(target, torch.Tensor):
        raise DataError(
            f"{name} takes the target as one tensor, but the batches hold {describe(target)}; "
            "make the dataset return (inputs, target_tensor), or pick the entry in the loss, keeping "
            "your loss object: compile(loss=lambda out, y: criterion(out, y['label']))"
        )


def _check_probabilities(loss_fn: nn.Module, preds: torch.Tensor) -> None:
    low, high = torch.stack([preds.detach().min(), preds.detach().max()]).float().tolist()
    if low < 0 or high > 1:
        raise DataError(
            f"{_name(loss_fn)} takes probabilities in [0, 1], but the model output ranges from {low:.4g} "
            f"to {high:.4g}: these look like logits; use nn.BCEWithLogitsLoss(), or end the model with "
            "nn.Sigmoid()"
        )


def _check_elementwise(loss_fn: nn.Module, preds: torch.Tensor, target: torch.Tensor) -> None:
    if preds.shape != target.shape:
        raise ShapeError(
            f"{_name(loss_fn)}: model output has shape {_shape(preds)} but target has shape "
            f"{_shape(target)}; an element-wise loss would broadcast them and train on wrong pairs. "
            "Make them equal (e.g. y.view(-1, 1) or output.squeeze(1))."
        )
    if isinstance(loss_fn, (nn.BCELoss, nn.BCEWithLogitsLoss)) and not target.is_floating_point():
        raise DataError(
            f"{_name(loss_fn)} needs float targets (0.0 / 1.0), got {target.dtype}; use y.float()"
        )


def _check_class_labels(
    loss_fn: nn.Module, preds: torch.Tensor, target: torch.Tensor, read_values: bool
) -> None:
    name = _name(loss_fn)
    if target.is_floating_point():
        if target.shape == preds.shape and isinstance(loss_fn, nn.CrossEntropyLoss):
            return  # class probabilities, a valid CrossEntropyLoss target
        raise DataError(
            f"{name} needs integer class labels (int64) of shape {_shape(preds)[:1] + _shape(preds)[2:]}"
            f", got {target.dtype} of shape {_shape(target)}; convert with y.long()"
        )
    if preds.dim() < 2 or target.dim() != preds.dim() - 1:
        raise ShapeError(
            f"{name}: model output {_shape(preds)} needs (N, C, ...) and labels (N, ...); got labels "
            f"of shape {_shape(target)}" + (" (use y.squeeze(1))" if target.dim() == preds.dim() else "")
        )
    taken = (torch.int64, torch.uint8) if target.dim() == 1 else (torch.int64,)  # torch's kernels
    if target.dtype not in taken:
        raise DataError(
            f"{name} needs int64 labels of shape {_shape(target)}, got {target.dtype}"
            f"{' (uint8 masks are taken only as int64)' if target.dtype == torch.uint8 else ''}; "
            "convert with y.long()"
        )
    if read_values:
        _check_label_range(loss_fn, preds, target)


def _check_label_range(loss_fn: nn.Module, preds: torch.Tensor, target: torch.Tensor) -> None:
    classes = preds.shape[1]
    ignore = getattr(loss_fn, "ignore_index", -100)
    valid = target[target != ignore]
    if valid.numel() == 0:
        return
    low, high = torch.stack([valid.min(), valid.max()]).tolist()
    if low < 0 or high >= classes:
        raise DataError(
            f"{_name(loss_fn)}: labels must lie in [0, {classes}) for a model with {classes} outputs; "
            f"found labels from {low} to {high}"
        )


def explain_loss_failure(loss_fn: Any, preds: Any, target: Any, exc: Exception) -> Exception:
    """An ember error explaining ``exc`` raised by ``loss_fn``, or ``exc`` itself when unexplained."""
    try:
        check_loss_inputs(loss_fn, preds, target, read_values=True)
    except (DataError, ShapeError) as explained:
        explained.__cause__ = exc
        return explained
    return exc
