"""Whole training steps as CUDA graphs: the capture (``capture``) and the graph halves of the meter
and the device loader (``adapters``). Layer 3."""

from ember.graphs.adapters import GraphMeter, LazyBatch
from ember.graphs.capture import CapturedGraph, StepGraph, step_graph_for

__all__ = ["CapturedGraph", "GraphMeter", "LazyBatch", "StepGraph", "step_graph_for"]
