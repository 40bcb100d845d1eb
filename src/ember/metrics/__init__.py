"""Metrics with device-side state: built-ins, adapters for functions and torchmetrics, the epoch Meter."""

from ember.metrics.adapters import FunctionMetric, TorchMetricsMetric, resolve_metrics
from ember.metrics.base import Metric
from ember.metrics.classification import AUC, Accuracy
from ember.metrics.direction import direction
from ember.metrics.meter import Meter
from ember.metrics.regression import MAE, MSE, RMSE

__all__ = [
    "AUC",
    "MAE",
    "MSE",
    "RMSE",
    "Accuracy",
    "FunctionMetric",
    "Meter",
    "Metric",
    "TorchMetricsMetric",
    "direction",
    "resolve_metrics",
]
