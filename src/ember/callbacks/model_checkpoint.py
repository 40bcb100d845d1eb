"""ModelCheckpoint: full training-state checkpoints every few steps and/or epochs, the best one, a
final one on Ctrl-C or SIGTERM, with ``keep_last`` rotation. ``fit(resume=...)`` continues from them.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ember.arguments import check_count
from ember.callbacks.base import Callback
from ember.callbacks.monitor import Monitor, metrics_of
from ember.checkpoint.format import list_checkpoints
from ember.state import TrainState

__all__ = ["ModelCheckpoint"]


class ModelCheckpoint(Callback):
    """Save the full training state into ``dirpath``.

    Args:
        dirpath: the folder of checkpoints (``epoch0003-step000001200/`` ..., and ``best/``).
        every_n_steps: also save after every n-th optimizer step (mid-epoch), None: never.
        every_n_epochs: save after every n-th epoch, None: never.
        save_best: keep the checkpoint of the best ``monitor`` value in ``best/``.
        monitor, mode: what "best" means (NaN never is); ``mode="auto"`` (default) takes the
            direction from the metric or its name, as in ``EarlyStopping``.
        keep_last: how many step/epoch checkpoints to keep (oldest deleted first; ``best`` kept).
        save_on_interrupt: save when fit is stopped by Ctrl-C or SIGTERM (at a step boundary).

    Saving runs after every other callback of the epoch, so their states are saved up to date.

    Example:
        >>> cb = ModelCheckpoint("runs/cnn", every_n_steps=500, save_best=True, monitor="val_accuracy")
        >>> cb.monitor.mode
        'max'
    """

    order = 100  # after the other callbacks: their epoch-end state belongs in the checkpoint

    def __init__(
        self,
        dirpath: str | Path,
        every_n_steps: int | None = None,
        every_n_epochs: int | None = 1,
        save_best: bool = False,
        monitor: str = "val_loss",
        mode: str = "auto",
        keep_last: int | None = 2,
        save_on_interrupt: bool = True,
    ) -> None:
        check_count("ModelCheckpoint(every_n_steps=...)", every_n_steps, 1, allow_none=True)
        check_count("ModelCheckpoint(every_n_epochs=...)", every_n_epochs, 1, allow_none=True)
        check_count("ModelCheckpoint(keep_last=...)", keep_last, 1, allow_none=True)
        self.dirpath = Path(dirpath)
        self.every_n_steps = every_n_steps
        self.every_n_epochs = every_n_epochs
        self.save_best = save_best
        self.monitor = Monitor(monitor, mode)
        self.keep_last = keep_last
        self.save_on_interrupt = save_on_interrupt
        self.best_epoch: int | None = None

    @property
    def best_path(self) -> Path:
        """The checkpoint of the best epoch."""
        return self.dirpath / "best"

    @property
    def last_path(self) -> Path | None:
        """The newest step/epoch checkpoint, or None."""
        found = self._rotating()
        return found[-1] if found else None

    def latest(self) -> Path | None:
        """The newest complete checkpoint (for ``resume="latest"``)."""
        return self.last_path or (
            self.best_path if self.best_path in list_checkpoints(self.dirpath) else None
        )

    def _rotating(self) -> list[Path]:
        # sizes only: this runs at every save, and hashing every kept checkpoint each time would cost
        # a full read of them; resuming verifies hashes (resolve_resume, then loading)
        return [p for p in list_checkpoints(self.dirpath, verify=False) if p.name != "best"]

    def _save(self, state: TrainState) -> None:
        state.model.save(self.dirpath / f"epoch{state.epoch:04d}-step{state.step:09d}")  # collective
        if self.keep_last is not None and state.model.runtime.tidies_checkpoints:
            for old in self._rotating()[: -self.keep_last or None]:
                shutil.rmtree(old, ignore_errors=True)

    def on_fit_start(self, state: TrainState) -> None:
        """Settle ``mode="auto"`` of a ``save_best`` monitor with the compiled metrics."""
        if self.save_best:
            self.monitor.resolve(metrics_of(state.model))

    def on_train_batch_end(self, state: TrainState) -> None:
        """Save every ``every_n_steps`` steps."""
        if self.every_n_steps and state.step % self.every_n_steps == 0:
            self._save(state)

    def on_epoch_end(self, state: TrainState) -> None:
        """Save the best and every ``every_n_epochs`` epochs."""
        waits = self.monitor.waits(state.logs, state.validating)
        if self.save_best and not waits and self.monitor.update(self.monitor.value(state.logs)):
            self.best_epoch = state.epoch
            state.model.save(self.best_path)  # every process takes part; process 0 writes
        if self.every_n_epochs and state.epoch % self.every_n_epochs == 0:
            self._save(state)

    def on_exception(self, state: TrainState, exc: BaseException) -> None:
        """On Ctrl-C or SIGTERM, save where training stopped (one process only: with several,
        processes may stop at different steps, so rely on ``every_n_steps`` checkpoints)."""
        interrupted = isinstance(exc, (KeyboardInterrupt, SystemExit)) and state.step
        if self.save_on_interrupt and interrupted and state.model.runtime.world_size == 1:
            self._save(state)

    def state_dict(self) -> dict[str, Any]:
        """The best value and its epoch."""
        return {**self.monitor.state_dict(), "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the best value and its epoch."""
        self.monitor.load_state_dict(state)
        self.best_epoch = state["best_epoch"]
