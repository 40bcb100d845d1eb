"""ember: the everyday PyTorch workflow in a few calls.

``Model(net).compile(...).fit(...)`` trains any ``nn.Module`` with exact epoch metrics and near-zero
overhead; ``summary`` prints the model table; weights are saved as safetensors.
"""

from typing import Any

from ember.checkpoint import (
    LoadReport,
    consolidate,
    export,
    load_checkpoint,
    load_exported,
    load_weights,
    save_checkpoint,
    save_weights,
)
from ember.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    EmberError,
    NonFiniteLossError,
    ShapeError,
)
from ember.loop import StepContext, StepOutput
from ember.model import Model
from ember.seed import seed_everything
from ember.spawn import LaunchError, launch
from ember.summary import ModelSummary, summary

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``History`` on first use (a pandas DataFrame: pandas loads with it, not with ember)."""
    if name == "History":
        from ember.callbacks.frame import History

        return History
    raise AttributeError(f"module 'ember' has no attribute {name!r}")


__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "EmberError",
    "History",
    "LaunchError",
    "LoadReport",
    "Model",
    "ModelSummary",
    "NonFiniteLossError",
    "ShapeError",
    "StepContext",
    "StepOutput",
    "__version__",
    "consolidate",
    "export",
    "launch",
    "load_checkpoint",
    "load_exported",
    "load_weights",
    "save_checkpoint",
    "save_weights",
    "seed_everything",
    "summary",
]
