"""Which way is better for a logged value: lower for losses and errors, higher for scores.

Monitors (``EarlyStopping``, ``ModelCheckpoint``) and the plateau-scheduler check use this when their
mode is "auto". A metric object's own declaration wins (``Metric.higher_is_better``, which the
torchmetrics adapter reads from torchmetrics); otherwise the words of the name decide, and a name
whose words say nothing (or say both) gives None, so callers ask for an explicit mode.
Layer 2: knows ember.metrics.base only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ember.metrics.base import Metric

__all__ = ["VALIDATION_PREFIX", "direction"]

VALIDATION_PREFIX = "val_"

_LOWER_IS_BETTER = frozenset(
    {
        "loss",
        "losses",
        "mae",
        "mse",
        "rmse",
        "msle",
        "rmsle",
        "mape",
        "smape",
        "error",
        "errors",
        "err",
        "nll",
        "perplexity",
        "ppl",
        "wer",
        "cer",
        "ter",
        "fpr",
        "fnr",
        "distance",
        "divergence",
        "kl",
        "brier",
        "logloss",
        "hamming",
    }
)
_HIGHER_IS_BETTER = frozenset(
    {
        "accuracy",
        "acc",
        "auc",
        "auroc",
        "roc",
        "precision",
        "recall",
        "f1",
        "fbeta",
        "iou",
        "jaccard",
        "dice",
        "r2",
        "map",
        "ap",
        "mcc",
        "kappa",
        "specificity",
        "sensitivity",
        "bleu",
        "rouge",
        "psnr",
        "ssim",
        "ndcg",
        "mrr",
        "hit",
        "hits",
        "tpr",
        "top1",
        "top5",
        "correct",
    }
)
_LAST_WORD_WINS = frozenset({"loss", "error", "err"})  # "dice_loss", "top1_error"


def _words(name: str) -> list[str]:
    return [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]


def _by_name(name: str) -> str | None:
    words = _words(name)
    if not words:
        return None
    if words[-1] in _LAST_WORD_WINS:
        return "min"
    lower = any(w in _LOWER_IS_BETTER for w in words)
    higher = any(w in _HIGHER_IS_BETTER for w in words)
    if lower == higher:  # neither, or both ("accuracy_error_rate")
        return None
    return "min" if lower else "max"


def direction(key: str, metrics: Iterable[Metric] = ()) -> str | None:
    """ "min" when a lower ``key`` is better, "max" when a higher one is, None when unknown.

    Args:
        key: a history column, e.g. "val_accuracy" or "loss" (a ``val_`` prefix is ignored).
        metrics: the compiled metric objects; one named like ``key`` that declares
            ``higher_is_better`` decides.

    Example:
        >>> direction("val_accuracy"), direction("loss"), direction("val_rmse"), direction("lr")
        ('max', 'min', 'min', None)
    """
    name = key.removeprefix(VALIDATION_PREFIX)
    for metric in metrics:
        declared = getattr(metric, "higher_is_better", None)
        if metric.name == name and declared is not None:
            return "max" if declared else "min"
    return _by_name(name)
