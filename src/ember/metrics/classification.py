"""Classification metrics: accuracy (binary and multiclass) and exact binary ROC AUC.

Device-side statistics only; shapes decide binary vs multiclass, never a host read of the values.
Both take optional per-sample weights: weighted accuracy is ``sum(w * correct) / sum(w)``, weighted
AUC the weighted Mann-Whitney statistic.
"""

from __future__ import annotations

from typing import Any

import torch

from ember.errors import ShapeError
from ember.metrics.base import Metric, _acc_dtype

__all__ = ["AUC", "Accuracy"]


class Accuracy(Metric):
    """Fraction of correct predictions.

    Multiclass when predictions have a class dimension of size > 1 (dim 1): the argmax is compared
    with integer targets (or with the argmax of one-hot / probability targets). Binary when predictions
    are ``(N,)`` or ``(N, 1)``: positive when the probability is > ``threshold`` (default 0.5) or, for
    logits, when the logit is > 0. With per-sample weights ``w`` the value is
    ``sum(w * correct) / sum(w)``, a sample's ``correct`` being its mean over non-batch positions.

    Args:
        from_logits: binary outputs are logits (True), probabilities (False), or None: ``compile`` sets it
            from the loss (``BCEWithLogitsLoss`` -> True, ``BCELoss`` -> False); still None, a batch whose
            outputs all lie in [0, 1] is read as probabilities (decided on the device, no sync).
        threshold: the probability threshold for binary outputs.
        name: the log column.

    Example:
        >>> m = Accuracy()
        >>> m.update(torch.tensor([[2.0, 0.1], [0.3, 1.0]]), torch.tensor([0, 0]))
        >>> float(m.compute())
        0.5
    """

    update_in_place = True
    higher_is_better = True

    def __init__(
        self, from_logits: bool | None = None, threshold: float = 0.5, name: str = "accuracy"
    ) -> None:
        super().__init__(name)
        self.from_logits = from_logits
        self.threshold = threshold
        self.add_state("correct")
        self.add_state("total", kind="count")
        self.add_weight_state("total")

    def update(self, preds: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> None:
        """Count correct predictions of one batch (weighted by ``weight``, shape (N,), when given)."""
        if preds.dim() >= 2 and preds.shape[1] > 1:
            predicted = preds.argmax(1)  # an integer result: autograd records nothing
            if target.shape == preds.shape and target.is_floating_point():
                target = target.argmax(1)
        else:
            preds = preds.detach()  # the threshold may read min and max
            predicted = preds > self._binary_threshold(preds)
            target = target > 0.5 if target.is_floating_point() else target.bool()
        if predicted.shape != target.shape:  # one comparison in the common case
            if predicted.numel() != target.numel():
                raise ShapeError(
                    f"{self.name}: predictions {tuple(preds.shape)} do not match targets "
                    f"{tuple(target.shape)}"
                )
            predicted = predicted.reshape(-1)  # views cost a dispatch each: only when needed
            target = target.reshape(-1)
        if weight is None:
            self._tensors["correct"].add_((predicted == target).sum())
            self._counts["total"] += predicted.numel()
        else:
            self.check_weight(weight, preds)
            correct = (predicted == target).to(self._tensors["correct"].dtype)
            self.add_weighted("correct", "total", correct, weight)

    def _binary_threshold(self, preds: torch.Tensor) -> torch.Tensor | float:
        if self.from_logits is True:
            return 0.0
        if self.from_logits is False:
            return self.threshold
        looks_like_probs = (preds.min() >= 0) & (preds.max() <= 1)
        return torch.where(looks_like_probs, self.threshold, 0.0)

    def compute(self) -> torch.Tensor:
        """Correct / total, or weighted correct / sum of weights (NaN before any update)."""
        return self.ratio("correct", "total")


class AUC(Metric):
    """Exact area under the ROC curve for binary targets (ties get average ranks).

    Keeps every score and target of the epoch on the device and ranks them in ``compute``.
    Scores: ``(N,)``, ``(N, 1)``, or ``(N, 2)`` logits/probabilities (column 1 vs column 0).
    With per-sample weights, each (positive, negative) pair counts ``w_pos * w_neg`` (half when
    the scores tie), divided by ``sum(w_pos) * sum(w_neg)``; unweighted batches weigh 1.
    """

    higher_is_better = True

    def __init__(self, name: str = "auc") -> None:
        super().__init__(name)
        self._scores: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []
        self._weights: list[torch.Tensor | None] = []  # None: an unweighted batch

    def reset(self) -> None:
        """Forget the stored scores."""
        self._scores, self._targets, self._weights = [], [], []

    def update(self, preds: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> None:
        """Store one batch's scores and targets (and per-sample weights, shape (N,), when given)."""
        preds = preds.detach()
        if weight is not None:
            self.check_weight(weight, preds)
        if preds.dim() == 2 and preds.shape[1] == 2:
            preds = preds[:, 1] - preds[:, 0]
        if preds.numel() != target.numel():
            raise ShapeError(
                f"{self.name}: scores {tuple(preds.shape)} do not match targets {tuple(target.shape)}"
            )
        self._scores.append(preds.reshape(-1).float())
        self._targets.append(target.detach().reshape(-1) > 0.5)
        if weight is None:
            self._weights.append(None)
        else:  # one weight per score: a sample's weight for each of its scores
            n = weight.shape[0]
            per_sample = preds.numel() // n if n else 0
            weight = weight.detach().to(_acc_dtype(weight.device))
            self._weights.append(weight.unsqueeze(1).expand(n, per_sample).reshape(-1))

    def compute(self) -> torch.Tensor:
        """Mann-Whitney AUC over everything stored (NaN when one class is absent)."""
        if not self._scores:
            return torch.tensor(float("nan"))
        scores, positive = torch.cat(self._scores), torch.cat(self._targets)
        weights = self._all_weights()
        if weights is None:
            return _rank_auc(scores, positive)
        return _weighted_auc(scores, positive, weights)

    def _all_weights(self) -> torch.Tensor | None:
        """Every stored score's weight (1 for unweighted batches), or None when no batch had weights."""
        if all(w is None for w in self._weights):
            return None
        dtype = _acc_dtype(self._scores[0].device)
        pairs = zip(self._scores, self._weights, strict=True)
        return torch.cat([torch.ones_like(s, dtype=dtype) if w is None else w.to(dtype) for s, w in pairs])

    def state_vector(self) -> torch.Tensor | None:
        """None: scores are gathered, not summed."""
        return None

    def synchronize(self, gather: Any) -> AUC:
        """A copy holding the scores, targets and weights of every process."""
        parts = gather({k: v.cpu() for k, v in self.state_dict().items()})
        merged = {k: torch.cat([p[k] for p in parts]) for k in ("scores", "targets")}
        if any("weights" in p for p in parts):  # a process without weights weighs its scores 1
            merged["weights"] = torch.cat(
                [p.get("weights", torch.ones_like(p["scores"], dtype=torch.float64)) for p in parts]
            )
        other = AUC(self.name)
        other._device = self._device
        other.load_state_dict(merged)
        return other

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        """The stored scores and targets, and their weights when some batch had weights."""
        if not self._scores:
            return {"scores": torch.zeros(0), "targets": torch.zeros(0, dtype=torch.bool)}
        state = {"scores": torch.cat(self._scores), "targets": torch.cat(self._targets)}
        weights = self._all_weights()
        if weights is not None:
            state["weights"] = weights
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor | int]) -> None:
        """Restore stored scores, targets and (when saved) weights."""
        scores = torch.as_tensor(state["scores"]).to(self._device)
        self._scores = [scores] if scores.numel() else []
        self._targets = [torch.as_tensor(state["targets"]).to(self._device)] if scores.numel() else []
        weights = state.get("weights")
        if weights is None or not scores.numel():
            self._weights = [None] if scores.numel() else []
        else:
            self._weights = [torch.as_tensor(weights).to(self._device, _acc_dtype(self._device))]


def _rank_auc(scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Mann-Whitney AUC from average ranks (NaN when one class is absent)."""
    _, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    ranks = (ends - (counts.double() - 1) / 2)[inverse]
    n_pos = positive.sum().double()
    n_neg = positive.numel() - n_pos
    return (ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _weighted_auc(scores: torch.Tensor, positive: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted Mann-Whitney AUC: ``sum over pairs w_pos * w_neg * ([s_pos > s_neg] + [tie] / 2)``
    over ``sum(w_pos) * sum(w_neg)``, from per-score-value weight sums (NaN when one side weighs 0)."""
    _, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    w = weights.double()
    pos = torch.zeros(counts.numel(), dtype=w.dtype, device=w.device).index_add_(0, inverse, w * positive)
    neg = torch.zeros_like(pos).index_add_(0, inverse, w * ~positive)
    below = neg.cumsum(0) - neg  # negative weight at strictly lower scores
    return (pos * (below + neg / 2)).sum() / (pos.sum() * neg.sum())
