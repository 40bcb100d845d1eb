"""TensorBoardLogger: every epoch's logs as TensorBoard scalars (optional dependency ``tensorboard``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ember.callbacks.base import Callback
from ember.errors import ConfigError
from ember.state import TrainState

__all__ = ["TensorBoardLogger"]


class TensorBoardLogger(Callback):
    """Write ``loss``, metrics, ``val_*``, ``lr`` and ``seconds`` per epoch to ``log_dir`` (process 0).

    A resumed or continued fit drops events after the epoch it starts from, so curves never double.

    Example:
        >>> logger = TensorBoardLogger("runs/cnn")  # then: tensorboard --logdir runs
    """

    def __init__(self, log_dir: str | Path) -> None:
        self.log_dir = Path(log_dir)
        self._writer: Any = None

    def on_fit_start(self, state: TrainState) -> None:
        """Open the event writer (purging events after the epoch training continues from)."""
        if not state.model.is_main:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ConfigError(
                "TensorBoardLogger needs tensorboard: pip install 'ember[tensorboard]'"
            ) from exc
        self._writer = SummaryWriter(str(self.log_dir), purge_step=state.epochs_done + 1)

    def on_epoch_end(self, state: TrainState) -> None:
        """One scalar per log entry, at step = epoch."""
        if self._writer is None:
            return
        for key, value in state.logs.items():
            self._writer.add_scalar(key, value, state.epoch)
        self._writer.flush()

    def on_fit_end(self, state: TrainState) -> None:
        """Close the writer."""
        self._close()

    def on_exception(self, state: TrainState, exc: BaseException) -> None:
        """Close the writer (what was written stays)."""
        self._close()

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
