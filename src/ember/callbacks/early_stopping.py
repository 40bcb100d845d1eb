"""EarlyStopping: stop when a monitored value stops improving, optionally restoring the best weights."""

from __future__ import annotations

from typing import Any

import torch

from ember.arguments import check_count
from ember.callbacks.base import Callback
from ember.callbacks.monitor import Monitor, metrics_of
from ember.state import TrainState

__all__ = ["EarlyStopping"]


class EarlyStopping(Callback):
    """Stop training after ``patience`` epochs without improvement of ``monitor``.

    Args:
        monitor: the log entry to watch.
        mode: "auto" (default: "max" for accuracy, AUC, F1 and other scores, "min" for losses and
            errors; a metric object's ``higher_is_better`` wins; an unknown name raises ConfigError
            at the start of fit asking for a mode), "min" or "max".
        patience: epochs without improvement tolerated before stopping.
        min_delta: the smallest change that counts as an improvement.
        restore_best_weights: load the weights of the best epoch when training ends.

    Example:
        >>> EarlyStopping("val_accuracy", patience=2).monitor.mode
        'max'
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str = "auto",
        patience: int = 0,
        min_delta: float = 0.0,
        restore_best_weights: bool = False,
    ) -> None:
        check_count("EarlyStopping(patience=...)", patience, 0)
        self.monitor = Monitor(monitor, mode, min_delta)
        self.patience = patience
        self.restore_best_weights = restore_best_weights
        self.wait = 0
        self.stopped_epoch: int | None = None
        self.best_epoch: int | None = None
        self._best_weights: dict[str, torch.Tensor] | None = None

    def on_fit_start(self, state: TrainState) -> None:
        """Settle ``mode="auto"`` with the compiled metrics (before any training)."""
        self.monitor.resolve(metrics_of(state.model))

    def on_epoch_end(self, state: TrainState) -> None:
        """Count epochs without improvement (validated ones, for a ``val_*`` monitor); ask the
        loop to stop when patience runs out."""
        if self.monitor.waits(state.logs, state.validating):
            return
        if self.monitor.update(self.monitor.value(state.logs)):
            self.wait = 0
            self.best_epoch = state.epoch
            if self.restore_best_weights:
                net = state.model.net
                self._best_weights = {k: v.detach().clone() for k, v in net.state_dict().items()}
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = state.epoch
            state.should_stop = True

    def on_fit_end(self, state: TrainState) -> None:
        """Restore the best weights when asked to."""
        if self.restore_best_weights and self._best_weights is not None:
            state.model.net.load_state_dict(self._best_weights)

    def state_dict(self) -> dict[str, Any]:
        """Counter, best value and epochs."""
        return {
            **self.monitor.state_dict(),
            "wait": self.wait,
            "best_epoch": self.best_epoch,
            "stopped_epoch": self.stopped_epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore counter, best value and epochs."""
        self.monitor.load_state_dict(state)
        self.wait = int(state["wait"])
        self.best_epoch, self.stopped_epoch = state["best_epoch"], state["stopped_epoch"]
