"""ProgressBar: a live tqdm bar in terminals and notebooks, one plain line per epoch otherwise.

The bar is refreshed from ``on_refresh`` (at most ~10 times a second, from one device read), never
per batch, so it adds no host sync to the training steps.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from ember.callbacks.base import Callback
from ember.callbacks.history import format_logs
from ember.state import TrainState

__all__ = ["ProgressBar"]


def _interactive(stream: TextIO) -> bool:
    if "ipykernel" in sys.modules:
        return True
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class ProgressBar(Callback):
    """Show training progress.

    Args:
        verbose: 1: a live bar when the output is a terminal or notebook, else one line per epoch;
            2: one line per epoch always.
        stream: where the bar goes (default stderr); epoch lines go to stdout.
        interval: seconds between bar refreshes.

    Example:
        >>> bar = ProgressBar(verbose=2)
    """

    def __init__(self, verbose: int = 1, stream: TextIO | None = None, interval: float = 0.1) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.live = verbose == 1 and _interactive(self.stream)
        self.refresh_interval = interval if self.live else None
        self._bar: Any = None

    def on_epoch_start(self, state: TrainState) -> None:
        """Open this epoch's bar."""
        if not (self.live and state.model.is_main):
            return
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=state.steps_per_epoch,
            desc=f"Epoch {state.epoch}/{state.epochs}",
            file=self.stream,
            unit="step",
            leave=True,
            dynamic_ncols=True,
        )

    def on_refresh(self, state: TrainState) -> None:
        """Advance the bar and show the running values."""
        if self._bar is None:
            return
        self._bar.update(state.batch - self._bar.n)
        self._bar.set_postfix_str(format_logs(state.running), refresh=False)
        self._bar.refresh()

    def on_epoch_end(self, state: TrainState) -> None:
        """Close the bar with the epoch's values, or print the epoch line."""
        if not state.model.is_main:
            return
        if self._bar is not None:
            self._bar.update(state.batch - self._bar.n)
            self._bar.set_postfix_str(format_logs(state.logs), refresh=False)
            self._bar.close()
            self._bar = None
            return
        seconds = state.logs.get("seconds", float("nan"))
        print(
            f"epoch {state.epoch}/{state.epochs} - {seconds:.1f}s - {format_logs(state.logs)}",
            flush=True,
        )

    def on_exception(self, state: TrainState, exc: BaseException) -> None:
        """Close an open bar so the traceback is readable."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
