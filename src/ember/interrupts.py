"""Ctrl-C and SIGTERM during fit: remember the signal, stop at the next step boundary.

A signal handler only sets ``state.interrupted``; the loop raises KeyboardInterrupt (SIGINT) or
SystemExit (SIGTERM) between steps, so callbacks (a final checkpoint) see a consistent state, never a
half-applied optimizer step. A second signal acts at once. Knows the standard library and TrainState.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from ember.state import TrainState

__all__ = ["raise_if_interrupted", "trap_signals"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _exception(name: str) -> BaseException:
    if name == "SIGINT":
        return KeyboardInterrupt()
    return SystemExit(128 + signal.Signals[name].value)


def raise_if_interrupted(state: TrainState) -> None:
    """Raise the exception for a signal received since the last step."""
    if state.interrupted is not None:
        raise _exception(state.interrupted)


@contextlib.contextmanager
def trap_signals(state: TrainState) -> Iterator[None]:
    """Within the block, SIGINT/SIGTERM set ``state.interrupted`` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if state.interrupted is not None:  # a second signal: do not wait for the step to end
            raise _exception(name)
        state.interrupted = name

    previous = {sig: signal.signal(sig, handler) for sig in _SIGNALS}
    state.interrupted = None
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
