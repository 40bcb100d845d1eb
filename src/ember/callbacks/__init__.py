"""ember.callbacks: hooks into the fit loop (history, progress, early stopping, checkpoints, CSV)."""

from ember.callbacks.base import Callback, CallbackList
from ember.callbacks.csv_logger import CSVLogger
from ember.callbacks.early_stopping import EarlyStopping
from ember.callbacks.history import History, HistoryRecorder
from ember.callbacks.model_checkpoint import ModelCheckpoint
from ember.callbacks.monitor import Monitor
from ember.callbacks.progress import ProgressBar
from ember.callbacks.tensorboard import TensorBoardLogger

__all__ = [
    "CSVLogger",
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "History",
    "HistoryRecorder",
    "ModelCheckpoint",
    "Monitor",
    "ProgressBar",
    "TensorBoardLogger",
]
