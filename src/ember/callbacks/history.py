"""HistoryRecorder: the callback that keeps each epoch's logs as rows, and builds the History
(``ember.callbacks.frame``, which loads pandas) from them when asked."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ember.callbacks.base import Callback
from ember.state import TrainState

if TYPE_CHECKING:
    from ember.callbacks.frame import History

__all__ = ["HistoryRecorder", "format_logs"]


class HistoryRecorder(Callback):
    """Appends each epoch's logs to a list of rows owned by the model (so ``fit`` calls continue)."""

    def __init__(self, rows: list[dict[str, float]]) -> None:
        self.rows = rows

    def on_validation_end(self, state: TrainState, logs: dict[str, float]) -> None:
        """Store a validation inside an epoch as a row of its own, with the step it followed."""
        self.rows.append({"epoch": state.epoch, "step": state.step, **logs})

    def on_epoch_end(self, state: TrainState) -> None:
        """Store ``epoch`` and the epoch's logs."""
        self.rows.append({"epoch": state.epoch, **state.logs})

    def history(self) -> History:
        """The rows as a History (integer epochs and steps; columns ``epoch``, ``step`` when
        validations ran inside epochs, training values, ``val_*``, then ``lr``, ``seconds``...)."""
        from ember.callbacks.frame import History  # pandas loads with the first History

        seen = list(dict.fromkeys(key for row in self.rows for key in row))
        frame = History(self.rows, columns=sorted(seen, key=_column_group))  # a stable sort
        for column in ("epoch", "step"):
            if column in frame.columns and not frame[column].isna().any():
                frame[column] = frame[column].astype(int)
        return frame


_LEADING = ("epoch", "step")
_TRAILING = ("compile_seconds", "lr", "seconds", "batches")  # after the values, in log order


def _column_group(column: str) -> int:
    """Where a column goes: the counters, training values, validation values, the rest."""
    if column in _LEADING:
        return _LEADING.index(column)
    if column in _TRAILING:
        return 4
    return 3 if column.startswith("val_") else 2


def format_logs(logs: dict[str, float], skip: Sequence[str] = ("lr", "seconds", "step")) -> str:
    """``loss: 0.1234 - accuracy: 0.9500`` (4 significant decimals, NaN shown as nan)."""
    parts = []
    for key, value in logs.items():
        if key in skip:
            continue
        parts.append(f"{key}: {value:.4f}" if math.isfinite(value) else f"{key}: {value}")
    return " - ".join(parts)


def __getattr__(name: str) -> Any:
    """``History`` from its old place (it lives in ``ember.callbacks.frame``, which loads pandas)."""
    if name == "History":
        from ember.callbacks.frame import History

        return History
    raise AttributeError(f"module 'ember.callbacks.history' has no attribute {name!r}")
