"""Metrics with device-side state: built-ins, adapters for functions and torchmetrics, the epoch Meter,
and the pieces for models with several outputs and losses (``structured``, ``outputs``)."""

from ember.metrics.adapters import FunctionMetric, TorchMetricsMetric, resolve_metrics
from ember.metrics.base import Metric
from ember.metrics.classification import AUC, Accuracy
from ember.metrics.direction import direction
from ember.metrics.meter import Meter
from ember.metrics.outputs import OutputMetric, configure_output_accuracy, resolve_output_metrics
from ember.metrics.regression import MAE, MSE, RMSE
from ember.metrics.structured import LossComponent, StructuredLoss, as_structured_loss, loss_component_metrics

__all__ = [
    "AUC",
    "MAE",
    "MSE",
    "RMSE",
    "Accuracy",
    "FunctionMetric",
    "LossComponent",
    "Meter",
    "Metric",
    "OutputMetric",
    "StructuredLoss",
    "TorchMetricsMetric",
    "as_structured_loss",
    "configure_output_accuracy",
    "direction",
    "loss_component_metrics",
    "resolve_metrics",
    "resolve_output_metrics",
]
