"""ModelCheckpoint: keep the best and/or the last weights of a run as safetensors files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ember.callbacks.base import Callback
from ember.callbacks.monitor import Monitor
from ember.checkpoint.weights import save_weights
from ember.state import TrainState

__all__ = ["ModelCheckpoint"]


class ModelCheckpoint(Callback):
    """Save ``best.safetensors`` when ``monitor`` improves and ``last.safetensors`` every few epochs.

    Args:
        dirpath: the folder to write into (created when missing).
        monitor: the log entry deciding "best".
        mode: "min" or "max".
        save_best: keep the best epoch's weights.
        save_last: keep the latest epoch's weights.
        every_n_epochs: how often ``last`` is written.

    Example:
        >>> cb = ModelCheckpoint("runs/cnn", monitor="val_accuracy", mode="max")
    """

    def __init__(
        self,
        dirpath: str | Path,
        monitor: str = "val_loss",
        mode: str = "min",
        save_best: bool = True,
        save_last: bool = True,
        every_n_epochs: int = 1,
    ) -> None:
        self.dirpath = Path(dirpath)
        self.monitor = Monitor(monitor, mode)
        self.save_best = save_best
        self.save_last = save_last
        self.every_n_epochs = max(1, every_n_epochs)
        self.best_epoch: int | None = None

    @property
    def best_path(self) -> Path:
        """Where the best weights are written."""
        return self.dirpath / "best.safetensors"

    @property
    def last_path(self) -> Path:
        """Where the latest weights are written."""
        return self.dirpath / "last.safetensors"

    def on_epoch_end(self, state: TrainState) -> None:
        """Write best and/or last weights (main process only)."""
        if self.save_best and self.monitor.update(self.monitor.value(state.logs)):
            self.best_epoch = state.epoch
            if state.model.is_main:
                save_weights(state.model.net, self.best_path)
        if self.save_last and state.epoch % self.every_n_epochs == 0 and state.model.is_main:
            save_weights(state.model.net, self.last_path)

    def state_dict(self) -> dict[str, Any]:
        """The best value and its epoch."""
        return {**self.monitor.state_dict(), "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the best value and its epoch."""
        self.monitor.load_state_dict(state)
        self.best_epoch = state["best_epoch"]
