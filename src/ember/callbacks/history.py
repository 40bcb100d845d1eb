"""History: the DataFrame ``fit`` returns (one row per epoch), its plot, and the callback that fills it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ember.callbacks.base import Callback
from ember.state import TrainState

__all__ = ["History", "HistoryRecorder"]

_NOT_PLOTTED = {"epoch", "lr", "seconds"}


class History(pd.DataFrame):
    """A pandas DataFrame with one row per epoch: ``epoch, loss, <metric>..., val_*, lr, seconds``.

    Example:
        >>> h = History([{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.25}])
        >>> h["loss"].tolist()
        [0.5, 0.25]
    """

    @property
    def _constructor(self) -> type[History]:
        return History

    def plot(  # type: ignore[override]
        self, metrics: Sequence[str] | None = None, path: str | Path | None = None
    ) -> Any:
        """Draw each metric (and its ``val_`` twin on the same axes) against the epoch.

        Args:
            metrics: base names to draw (default: every column except epoch, lr, seconds).
            path: write a PNG there when given.

        Returns:
            The matplotlib Figure (drawn without pyplot, so it works with no display).
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        names = (
            list(metrics)
            if metrics is not None
            else [c for c in self.columns if c not in _NOT_PLOTTED and not str(c).startswith("val_")]
        )
        figure = Figure(figsize=(4.5 * max(len(names), 1), 3.5), layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.subplots(1, max(len(names), 1), squeeze=False)[0]
        epochs = self["epoch"] if "epoch" in self.columns else range(1, len(self) + 1)
        for ax, name in zip(axes, names, strict=False):
            for column, style in ((name, "o-"), (f"val_{name}", "s--")):
                if column in self.columns:
                    ax.plot(epochs, self[column], style, label=column)
            ax.set_xlabel("epoch")
            ax.set_title(name)
            ax.legend()
            ax.grid(alpha=0.3)
        if path is not None:
            figure.savefig(path, dpi=100)
        return figure


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
