"""Regression metrics: mean absolute error, mean squared error, root mean squared error.

Element-wise over all outputs; predictions and targets must have the same number of elements.
With per-sample weights ``w``, a sample's error is the mean over its non-batch elements and the value
is ``sum(w * sample error) / sum(w)`` (computed as ``sum(w * summed error) / (sum(w) * elements per
sample)``); RMSE is the root of the weighted MSE.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ember.errors import ShapeError
from ember.metrics.base import Metric

__all__ = ["MAE", "MSE", "RMSE"]


class _ErrorSum(Metric):
    """Sum of a per-element error and the number of elements (weighted: the weight sum times the
    elements per sample); ``compute`` is their ratio."""

    update_in_place = True
    higher_is_better = False

    def __init__(self, name: str, error: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__(name)
        self._error = error
        self.add_state("error")
        self.add_state("count", kind="count")
        self.add_weight_state("count")

    def update(self, preds: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> None:
        """Add the batch's summed error (weighted per sample by ``weight``, shape (N,), when given)."""
        if preds.numel() != target.numel():
            raise ShapeError(
                f"{self.name}: predictions {tuple(preds.shape)} and targets {tuple(target.shape)} "
                "have different numbers of elements"
            )
        diff = preds.detach().reshape(-1) - target.reshape(-1)
        if weight is None:
            self._tensors["error"].add_(self._error(diff).sum())
            self._counts["count"] += diff.numel()
        else:
            self.check_weight(weight, preds)
            self.add_weighted("error", "count", self._error(diff), weight)

    def compute(self) -> torch.Tensor:
        """The mean error over every element seen (weighted: over the weighted samples)."""
        return self.ratio("error", "count")


class MAE(_ErrorSum):
    """Mean absolute error. Example: ``Model.compile(..., metrics=["mae"])``."""

    def __init__(self, name: str = "mae") -> None:
        super().__init__(name, torch.abs)


class MSE(_ErrorSum):
    """Mean squared error."""

    def __init__(self, name: str = "mse") -> None:
        super().__init__(name, torch.square)


class RMSE(_ErrorSum):
    """Root of the epoch's mean squared error (not the mean of batch roots)."""

    def __init__(self, name: str = "rmse") -> None:
        super().__init__(name, torch.square)

    def compute(self) -> torch.Tensor:
        """sqrt(MSE)."""
        return super().compute().sqrt()
