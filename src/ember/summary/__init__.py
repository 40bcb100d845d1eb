"""summary(): the model table (layers, output shapes, parameters, FLOPs, memory), without side effects:
``trace`` runs the forward pass, ``table`` renders the result."""

from ember.summary.table import LayerRow, ModelSummary
from ember.summary.trace import summary

__all__ = ["LayerRow", "ModelSummary", "summary"]
