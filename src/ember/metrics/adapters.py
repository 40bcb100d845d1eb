"""Turn what users pass as ``metrics=`` into ember Metric objects.

Accepted: built-in names, ember ``Metric`` objects, torchmetrics metrics (used as they are), and plain
functions ``f(y_pred, y_true) -> number`` (computed per batch on CPU copies and sample-weighted; each
call costs a host sync, which built-in metrics avoid). Per-sample weights reach only metrics that
can take them exactly: a function or torchmetrics metric given weights raises ConfigError, because
its per-batch value cannot be re-weighted per sample after the fact.
"""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ember.arguments import check_not_class
from ember.errors import ConfigError
from ember.metrics.base import Metric
from ember.metrics.classification import AUC, Accuracy
from ember.metrics.regression import MAE, MSE, RMSE

__all__ = ["BUILTIN_METRICS", "FunctionMetric", "TorchMetricsMetric", "resolve_metrics"]

BUILTIN_METRICS: dict[str, Callable[[str], Metric]] = {
    "accuracy": lambda name: Accuracy(name=name),
    "acc": lambda name: Accuracy(name=name),
    "mae": lambda name: MAE(name=name),
    "mse": lambda name: MSE(name=name),
    "rmse": lambda name: RMSE(name=name),
    "auc": lambda name: AUC(name=name),
}


class FunctionMetric(Metric):
    """A plain ``f(y_pred, y_true) -> number`` averaged over samples (weights = batch sizes).

    ``f`` receives detached CPU tensors, so functions built on sklearn or numpy work unchanged.
    """

    host_sync = True

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], Any], name: str) -> None:
        super().__init__(name)
        self.fn = fn
        self._sum = 0.0
        self.add_state("count", kind="count")

    def clone(self) -> Metric:
        """A copy with its own sum and count that shares ``fn`` (a function is not copied)."""
        other = copy.copy(self)
        other._counts = dict(self._counts)
        other._tensors = {}
        return other

    def reset(self) -> None:
        """Zero the running sum."""
        super().reset()
        self._sum = 0.0

    def update(self, preds: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> None:
        """Call ``fn`` on CPU copies and add ``value * batch size``; ConfigError with ``weight``."""
        if weight is not None:
            raise _unweightable(self.name, "a plain function f(y_pred, y_true)")
        value = self.fn(preds.detach().cpu(), target.detach().cpu())
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"metric {self.name!r} returned {type(value).__name__}, not a number") from exc
        n = len(target) if target.dim() else 1
        self._sum += number * n
        self._counts["count"] += n

    def compute(self) -> torch.Tensor:
        """The sample-weighted mean of the per-batch values."""
        count = self._counts["count"]
        return torch.tensor(self._sum / count if count else float("nan"), dtype=torch.float64)

    def state_vector(self) -> torch.Tensor | None:
        """The running sum and count, for a cross-process sum."""
        return torch.tensor([self._sum, float(self._counts["count"])], dtype=torch.float64)

    def with_state_vector(self, vector: torch.Tensor) -> Metric:
        """A copy holding a summed state vector."""
        other = copy.copy(self)
        other._sum, other._counts = float(vector[0]), {"count": round(float(vector[1]))}
        return other

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        """The running sum and count."""
        return {"sum": torch.tensor(self._sum, dtype=torch.float64), "count": self._counts["count"]}

    def load_state_dict(self, state: dict[str, torch.Tensor | int]) -> None:
        """Restore the running sum and count."""
        self._sum = float(state["sum"])
        self._counts["count"] = int(state["count"])


class TorchMetricsMetric(Metric):
    """A torchmetrics ``Metric`` used as it is (its own state, its own reset/update/compute)."""

    def __init__(self, metric: Any, name: str) -> None:
        super().__init__(name)
        self.metric = metric

    @property
    def higher_is_better(self) -> bool | None:  # type: ignore[override]
        """What the torchmetrics class declares."""
        return getattr(self.metric, "higher_is_better", None)

    def clone(self) -> Metric:
        """A copy around ``metric.clone()`` (torchmetrics' own deep copy)."""
        other = copy.copy(self)
        other.metric = self.metric.clone()
        return other

    def reset(self) -> None:
        """Reset the torchmetrics object."""
        self.metric.reset()

    def to(self, device: torch.device) -> Metric:
        """Move the torchmetrics object's state."""
        self.metric.to(device)
        return self

    def update(self, preds: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> None:
        """Forward to ``metric.update``; ConfigError with ``weight``."""
        if weight is not None:
            raise _unweightable(self.name, f"a torchmetrics {type(self.metric).__name__}")
        self.metric.update(preds.detach(), target)

    def compute(self) -> torch.Tensor:
        """Forward to ``metric.compute`` (torchmetrics synchronises processes itself)."""
        return torch.as_tensor(self.metric.compute())

    def state_vector(self) -> torch.Tensor | None:
        """None: torchmetrics synchronises its own state."""
        return None

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        """The torchmetrics metric states (tensor states only)."""
        return {k: v for k, v in self.metric.metric_state.items() if isinstance(v, torch.Tensor)}

    def load_state_dict(self, state: dict[str, torch.Tensor | int]) -> None:
        """Restore tensor states."""
        for key, value in state.items():
            setattr(self.metric, key, torch.as_tensor(value))


def _unweightable(name: str, kind: str) -> ConfigError:
    """The error for sample weights given to a metric that cannot apply them per sample."""
    return ConfigError(
        f"metric {name!r} is {kind}, which cannot apply per-sample weights (sample weights or "
        f"class_weight); use a built-in metric ({', '.join(sorted(BUILTIN_METRICS))}), an ember Metric "
        "whose update takes weight=, or train without sample weights"
    )


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _is_torchmetrics(obj: Any) -> bool:
    module = sys.modules.get("torchmetrics")  # a torchmetrics object implies the module is loaded
    return module is not None and isinstance(obj, module.Metric)


def _resolve_one(spec: Any, name: str | None) -> Metric:
    check_not_class("metrics", spec)
    if isinstance(spec, Metric):
        if name is not None:
            spec.name = name
        return spec
    if isinstance(spec, str):
        factory = BUILTIN_METRICS.get(spec.lower())
        if factory is None:
            raise ConfigError(
                f"unknown metric {spec!r}; built-in metrics are {', '.join(sorted(BUILTIN_METRICS))}"
            )
        return factory(name or spec.lower())
    if _is_torchmetrics(spec):
        return TorchMetricsMetric(spec, name or _snake(type(spec).__name__))
    if callable(spec):
        return FunctionMetric(spec, name or getattr(spec, "__name__", type(spec).__name__))
    raise ConfigError(f"metric {spec!r} is not a name, an ember Metric, a torchmetrics metric or a function")


def resolve_metrics(specs: Sequence[Any] | Mapping[str, Any] | None) -> list[Metric]:
    """Metric objects for ``compile(metrics=...)``: a list of specs, or a dict of name -> spec.

    Example:
        >>> [m.name for m in resolve_metrics(["accuracy", "mae"])]
        ['accuracy', 'mae']
    """
    if specs is None:
        return []
    if isinstance(specs, (str, Metric)) or (callable(specs) and not isinstance(specs, Mapping)):
        specs = [specs]
    pairs = specs.items() if isinstance(specs, Mapping) else ((None, s) for s in specs)
    metrics = [_resolve_one(spec, name) for name, spec in pairs]
    names = [m.name for m in metrics]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates or {"loss", "lr", "epoch", "seconds"} & set(names):
        raise ConfigError(f"metric names must be unique and not reserved; got {names}")
    return metrics
