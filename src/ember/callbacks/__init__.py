"""ember.callbacks: hooks into the fit loop (history, progress, early stopping, checkpoints, CSV,
TensorBoard, MLflow and Weights & Biases).

``History`` (a pandas DataFrame) loads on first use, so importing ember does not import pandas.
"""

from typing import Any

from ember.callbacks.base import Callback, CallbackList
from ember.callbacks.csv_logger import CSVLogger
from ember.callbacks.early_stopping import EarlyStopping
from ember.callbacks.history import HistoryRecorder
from ember.callbacks.mlflow_logger import MLflowLogger
from ember.callbacks.model_checkpoint import ModelCheckpoint
from ember.callbacks.monitor import Monitor
from ember.callbacks.progress import ProgressBar
from ember.callbacks.tensorboard import TensorBoardLogger
from ember.callbacks.wandb_logger import WandbLogger

__all__ = [
    "CSVLogger",
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "History",
    "HistoryRecorder",
    "MLflowLogger",
    "ModelCheckpoint",
    "Monitor",
    "ProgressBar",
    "TensorBoardLogger",
    "WandbLogger",
]


def __getattr__(name: str) -> Any:
    """``History`` on first use (its module imports pandas)."""
    if name == "History":
        from ember.callbacks.frame import History

        return History
    raise AttributeError(f"module 'ember.callbacks' has no attribute {name!r}")
