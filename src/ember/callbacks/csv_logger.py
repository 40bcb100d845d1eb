"""CSVLogger: one CSV row per epoch, flushed as it is written, so a crash keeps every finished epoch."""

from __future__ import annotations

import csv
from pathlib import Path

from ember.callbacks.base import Callback
from ember.state import TrainState

__all__ = ["CSVLogger"]


class CSVLogger(Callback):
    """Write ``epoch`` and the epoch logs to ``path``.

    Args:
        path: the CSV file (parent folders are created).
        append: None (default): keep the rows of epochs already trained when fit continues or resumes
            (rows of later epochs, written before an interruption, are dropped), start afresh otherwise;
            True: always keep every existing row; False: always start afresh.

    Example:
        >>> logger = CSVLogger("logs/history.csv")
    """

    def __init__(self, path: str | Path, append: bool | None = None) -> None:
        self.path = Path(path)
        self.append = append
        self._columns: list[str] | None = None

    def on_fit_start(self, state: TrainState) -> None:
        """Create the folder; start a new file unless appending."""
        if not state.model.is_main:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keep = self.append if self.append is not None else state.epochs_done > 0
        rows: list[dict[str, str]] = []
        if keep and self.path.exists() and self.path.stat().st_size:
            with self.path.open(newline="") as handle:
                reader = csv.DictReader(handle)
                self._columns = list(reader.fieldnames or []) or None
                rows = [r for r in reader if self.append or int(r["epoch"]) <= state.epochs_done]
        else:
            self._columns = None
        with self.path.open("w", newline="") as handle:
            if self._columns:
                writer = csv.DictWriter(handle, fieldnames=self._columns)
                writer.writeheader()
                writer.writerows(rows)

    def on_epoch_end(self, state: TrainState) -> None:
        """Append this epoch's row (the header first); a row with a new column (``batches`` of an
        epoch stopped early, ``compile_seconds``) rewrites the file with the wider header."""
        if not state.model.is_main:
            return
        row = {"epoch": state.epoch, **state.logs}
        if self._columns is not None and not set(row) <= set(self._columns):
            self._widen([*self._columns, *(k for k in row if k not in self._columns)])
        with self.path.open("a", newline="") as handle:
            if self._columns is None:
                self._columns = list(row)
                csv.writer(handle).writerow(self._columns)
            writer = csv.DictWriter(handle, fieldnames=self._columns, extrasaction="ignore")
            writer.writerow(row)

    def _widen(self, columns: list[str]) -> None:
        """Rewrite the file under ``columns`` (old rows get empty cells in the new ones)."""
        with self.path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        with self.path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        self._columns = columns
