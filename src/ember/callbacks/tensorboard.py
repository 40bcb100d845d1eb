"""TensorBoardLogger: epoch values and running step values as TensorBoard scalars (optional
dependency ``tensorboard``).

Two event streams under ``log_dir``: the epochs (``log_dir`` itself, step = epoch) and the steps
(``log_dir/steps``, step = global training step). A resumed or continued fit purges each stream
after the point it continues from, so no curve doubles. Knows torch.utils.tensorboard (imported
when a fit starts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ember.callbacks.base import Callback
from ember.errors import ConfigError
from ember.state import TrainState

__all__ = ["TensorBoardLogger", "epoch_tag"]


def epoch_tag(key: str) -> str:
    """The tag of an epoch column: ``loss/train`` and ``loss/val`` for ``loss`` and ``val_loss``
    (so a metric's two curves share a chart), the column's name otherwise (``lr``, ``seconds``).

    Example:
        >>> epoch_tag("val_accuracy"), epoch_tag("accuracy"), epoch_tag("lr")
        ('accuracy/val', 'accuracy/train', 'lr')
    """
    if key.startswith("val_"):
        return f"{key[4:]}/val"
    return key if key in _NOT_METRICS else f"{key}/train"


_NOT_METRICS = {"lr", "seconds", "batches", "compile_seconds", "step", "epoch"}


class TensorBoardLogger(Callback):
    """Write each epoch's values and, at every progress refresh, the running training values.

    Epoch values go to ``log_dir`` at step = epoch: a metric's training and validation values as
    ``<name>/train`` and ``<name>/val`` (TensorBoard's Custom Scalars tab also shows each pair on
    one chart), ``lr`` and ``seconds`` as they are. Running values go to ``log_dir/steps`` at
    step = global step as ``running/<name>``; validations inside epochs (``fit(validate_every=n)``)
    as ``validation/<name>``. Process 0 only.

    Example:
        >>> logger = TensorBoardLogger("runs/cnn")  # then: tensorboard --logdir runs
    """

    refresh_interval = 1.0  # running values at least once a second

    def __init__(self, log_dir: str | Path) -> None:
        self.log_dir = Path(log_dir)
        self._epochs: Any = None
        self._steps: Any = None
        self._layout_written = False

    def on_fit_start(self, state: TrainState) -> None:
        """Open both writers, purging events after the epoch and step training continues from."""
        if not state.model.is_main:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ConfigError(
                "TensorBoardLogger needs tensorboard: pip install 'ember[tensorboard]'"
            ) from exc
        self._epochs = SummaryWriter(str(self.log_dir), purge_step=state.epochs_done + 1)
        self._steps = SummaryWriter(str(self.log_dir / "steps"), purge_step=state.step + 1)
        self._layout_written = False

    def on_refresh(self, state: TrainState) -> None:
        """The running training values at the global step."""
        if self._steps is not None:
            for key, value in state.running.items():
                self._steps.add_scalar(f"running/{key}", value, state.step)

    def on_validation_end(self, state: TrainState, logs: dict[str, float]) -> None:
        """A validation inside an epoch, at the step it followed."""
        if self._steps is not None:
            for key, value in logs.items():
                self._steps.add_scalar(f"validation/{key}", value, state.step)
            self._steps.flush()

    def on_epoch_end(self, state: TrainState) -> None:
        """One scalar per epoch column, at step = epoch; the Custom Scalars layout once."""
        if self._epochs is None:
            return
        if not self._layout_written:
            self._epochs.add_custom_scalars(_layout(state.logs))
            self._layout_written = True
        for key, value in state.logs.items():
            self._epochs.add_scalar(epoch_tag(key), value, state.epoch)
        self._epochs.flush()
        self._steps.flush()

    def on_fit_end(self, state: TrainState) -> None:
        """Close the writers."""
        self._close()

    def on_exception(self, state: TrainState, exc: BaseException) -> None:
        """Close the writers (what was written stays)."""
        self._close()

    def _close(self) -> None:
        for writer in (self._epochs, self._steps):
            if writer is not None:
                writer.close()
        self._epochs = self._steps = None


def _layout(logs: dict[str, float]) -> dict[str, Any]:
    """Custom Scalars: one multiline chart per metric with its training and validation curves."""
    names = [key for key in logs if not key.startswith("val_") and key not in _NOT_METRICS]
    charts = {name: ["Multiline", [f"{name}/train", f"{name}/val"]] for name in names}
    return {"train and validation": charts}
