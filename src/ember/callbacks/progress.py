"""ProgressBar: a live tqdm bar in terminals and notebooks, one plain line per epoch otherwise.

In a Jupyter notebook the bar is a NotebookBar: one line per epoch below the cell, redrawn in place.

The bar is refreshed from ``on_refresh`` (at most ~10 times a second, from one device read), never
per batch, so it adds no host sync to the training steps. Values are fitted to the terminal's width,
never cut: while an epoch runs the bar shows the running values in full when they fit on its line,
else in compact form (short names, 3 significant digits), else the compact values that fit followed
by ``...``; at epoch end the epoch's values stay on the bar's line when they fit in full, and are
otherwise printed in full below the bar, training values first and validation values from a new
line, each line wrapped between values at the terminal's width.
"""

from __future__ import annotations

import sys
from types import MappingProxyType
from typing import Any, TextIO

from tqdm import tqdm
from tqdm.utils import disp_len

from ember.callbacks.base import Callback
from ember.callbacks.history import format_logs
from ember.callbacks.notebook_bar import NotebookBar, in_notebook
from ember.state import TrainState

__all__ = ["ProgressBar", "compact_logs", "default_progress", "running_postfix", "wrap_logs"]

_SHORT_WORDS = MappingProxyType({"accuracy": "acc", "precision": "prec", "recall": "rec"})
_SKIPPED = ("lr", "seconds")  # shown by the bar itself (elapsed) or not a training value
_SEPARATOR = 2  # tqdm writes ", " between the rate and the postfix
_SLACK = 4  # the time and rate fields may widen a little before the next refresh fits the values again
_MORE = "..."


def _interactive(stream: TextIO) -> bool:
    if in_notebook():
        return True
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def short_name(name: str) -> str:
    """``val_accuracy`` -> ``val_acc``: the long words of a metric name shortened, for the live bar.

    Example:
        >>> short_name("val_binary_precision")
        'val_binary_prec'
    """
    return "_".join(_SHORT_WORDS.get(word, word) for word in name.split("_"))


def compact_logs(logs: dict[str, float]) -> list[str]:
    """``["loss=0.123", "val_acc=0.95"]``: short names and 3 significant digits (lr, seconds left out).

    Example:
        >>> compact_logs({"loss": 0.123456, "accuracy": 0.95, "lr": 0.001})
        ['loss=0.123', 'acc=0.95']
    """
    return [f"{short_name(key)}={value:.3g}" for key, value in logs.items() if key not in _SKIPPED]


def running_postfix(logs: dict[str, float], room: int | None) -> str:
    """The running values in at most ``room`` characters (None: no limit).

    In full (``format_logs``) when they fit, else compact (``compact_logs``), else the compact values
    that fit, in order, followed by ``...``; a value is never cut.

    Example:
        >>> running_postfix({"loss": 0.5, "accuracy": 0.25}, room=20)
        'loss=0.5 acc=0.25'
    """
    full = format_logs(logs, _SKIPPED)
    if room is None or disp_len(full) <= room:
        return full
    entries = compact_logs(logs)
    shown: list[str] = []
    for number, entry in enumerate(entries):
        last = number == len(entries) - 1
        if disp_len(" ".join([*shown, entry] if last else [*shown, entry, _MORE])) > room:
            return " ".join([*shown, _MORE]) if room >= disp_len(_MORE) else ""
        shown.append(entry)
    return " ".join(shown)


def wrap_logs(logs: dict[str, float], width: int, indent: str = "  ") -> list[str]:
    """The epoch's values in full (``name: value``) as lines of at most ``width`` characters.

    Training values come first and validation values (``val_...``) start a new line; lines break
    between values only (a value longer than the line gets a line of its own, uncut).

    Example:
        >>> wrap_logs({"loss": 0.5, "accuracy": 0.25, "val_loss": 0.75}, width=40)
        ['  loss: 0.5000 - accuracy: 0.2500', '  val_loss: 0.7500']
    """
    lines: list[str] = []
    for validation in (False, True):
        parts = [
            format_logs({key: value}, _SKIPPED)
            for key, value in logs.items()
            if key.startswith("val_") == validation and key not in _SKIPPED
        ]
        line = ""
        for part in parts:
            joined = f"{line} - {part}" if line else indent + part
            if line and disp_len(joined) > width:
                lines.append(line)
                joined = indent + part
            line = joined
        if line:
            lines.append(line)
    return lines


class ProgressBar(Callback):
    """Show training progress.

    Args:
        verbose: 1: a live bar when the output is a terminal or notebook, else one line per epoch;
            2: one line per epoch always.
        stream: where the bar goes (default stderr); epoch lines go to stdout, and the epoch's values
            that do not fit on the bar's line go to ``stream`` below the bar.
        interval: seconds between bar refreshes.
        ncols: the width the bar and its values are fitted to (default: the terminal's, followed
            when it changes; none in notebooks and for streams that are not terminals).

    Example:
        >>> bar = ProgressBar(verbose=2)
    """

    def __init__(
        self,
        verbose: int = 1,
        stream: TextIO | None = None,
        interval: float = 0.1,
        ncols: int | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self._in_cell = stream is None and in_notebook()  # a bar redrawn in place below the cell
        self.live = verbose == 1 and _interactive(self.stream)
        self.refresh_interval = interval if self.live else None
        self.ncols = ncols
        self._bar: Any = None

    def on_epoch_start(self, state: TrainState) -> None:
        """Open this epoch's bar."""
        if not (self.live and state.model.is_main):
            return
        desc = f"Epoch {state.epoch}/{state.epochs}"
        if self._in_cell:
            self._bar = NotebookBar(state.steps_per_epoch, desc)
            return
        self._bar = tqdm(
            total=state.steps_per_epoch,
            desc=desc,
            file=self.stream,
            unit="step",
            leave=True,
            ncols=self.ncols,
            dynamic_ncols=self.ncols is None,
        )

    def _room(self) -> tuple[int | None, int | None]:
        """``(line width, characters left for the values)`` of the bar now (None: no limit)."""
        shown = self._bar.format_dict
        width = shown["ncols"]
        if not width:
            return None, None
        # without a width tqdm draws a 10-character bar: the shortest bar the values leave
        bare = disp_len(self._bar.format_meter(**{**shown, "ncols": None, "postfix": None}))
        return width, width - bare - _SEPARATOR - _SLACK

    def on_refresh(self, state: TrainState) -> None:
        """Advance the bar and show the running values that fit."""
        if self._bar is None:
            return
        self._bar.update(state.batch - self._bar.n)
        self._bar.set_postfix_str(running_postfix(state.running, self._room()[1]), refresh=False)
        self._bar.refresh()

    def on_epoch_end(self, state: TrainState) -> None:
        """Close the bar with the epoch's values (below it when they do not fit), or print the epoch line."""
        if not state.model.is_main:
            return
        if self._bar is not None:
            self._close_bar(state)
            return
        seconds = state.logs.get("seconds", float("nan"))
        print(
            f"epoch {state.epoch}/{state.epochs} - {seconds:.1f}s - {format_logs(state.logs)}",
            flush=True,
        )

    def _close_bar(self, state: TrainState) -> None:
        self._bar.update(state.batch - self._bar.n)
        width, room = self._room()
        full = format_logs(state.logs, _SKIPPED)
        fits = room is None or disp_len(full) <= room
        self._bar.set_postfix_str(full if fits else "", refresh=False)
        self._bar.close()
        self._bar = None
        if not fits and width is not None:
            self.stream.write("\n".join(wrap_logs(state.logs, width)) + "\n")
            self.stream.flush()

    def on_exception(self, state: TrainState, exc: BaseException) -> None:
        """Close an open bar so the traceback is readable."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def default_progress(verbose: int, callbacks: list[Callback]) -> list[Callback]:
    """The progress bar ``fit(verbose=...)`` adds: none for ``verbose=0`` or when ``callbacks``
    already hold a ProgressBar (one the user configured, e.g. with ``ncols=``)."""
    if verbose and not any(isinstance(cb, ProgressBar) for cb in callbacks):
        return [ProgressBar(verbose=verbose)]
    return []
