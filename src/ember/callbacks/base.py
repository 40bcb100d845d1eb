"""Callback and CallbackList: the hooks the fit loop calls, in call order.

A callback overrides only the hooks it needs; CallbackList calls a hook only on the callbacks that
override it, so an unused hook costs nothing per batch. Hooks receive the TrainState and nothing
that forces a device sync.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ember.state import TrainState

__all__ = ["HOOKS", "Callback", "CallbackList"]

HOOKS = (
    "on_fit_start",
    "on_epoch_start",
    "on_train_batch_end",
    "on_refresh",
    "on_validation_end",
    "on_epoch_end",
    "on_fit_end",
    "on_exception",
)


class Callback:
    """Base class; hooks are called in this order.

    1. ``on_fit_start(state)``: once, before the first epoch of a ``fit`` call.
    2. ``on_epoch_start(state)``: before each epoch's first batch.
    3. ``on_train_batch_end(state)``: after every optimizer step (keep it cheap; reading values
       with ``state.read_running()`` costs a device sync). ``state.should_stop = True`` here ends
       the epoch at this step (validated and logged over the batches done) and the fit.
    4. ``on_refresh(state)``: a few times a second at most, after ``state.running`` was refreshed
       with one device read (progress displays).
    5. ``on_validation_end(state, logs)``: after a validation inside an epoch (``fit(validate_every=n)``),
       with its ``val_*`` values; the epoch-end validation is in ``on_epoch_end``'s logs instead.
    6. ``on_epoch_end(state)``: after training and validation of an epoch; ``state.logs`` is complete.
       Set ``state.should_stop = True`` to end training here.
    7. ``on_fit_end(state)``: once, after the last epoch (not after an exception).
    8. ``on_exception(state, exc)``: instead of ``on_fit_end`` when training raised (also Ctrl-C).

    Attributes:
        refresh_interval: seconds between ``on_refresh`` calls this callback wants (None: it needs none).
        order: callbacks run in ascending ``order``, then in list order (checkpointing uses 100 so
            it sees the others' updated states).
    """

    refresh_interval: float | None = None
    order: int = 0

    def on_fit_start(self, state: TrainState) -> None:
        """Called once before training starts."""

    def on_epoch_start(self, state: TrainState) -> None:
        """Called before each epoch."""

    def on_train_batch_end(self, state: TrainState) -> None:
        """Called after each training step."""

    def on_refresh(self, state: TrainState) -> None:
        """Called when ``state.running`` was refreshed."""

    def on_validation_end(self, state: TrainState, logs: dict[str, float]) -> None:
        """Called after a validation inside an epoch with its ``val_*`` values."""

    def on_epoch_end(self, state: TrainState) -> None:
        """Called after each epoch with complete ``state.logs``."""

    def on_fit_end(self, state: TrainState) -> None:
        """Called once after training finished normally."""

    def on_exception(self, state: TrainState, exc: BaseException) -> None:
        """Called when training raised ``exc``; the exception is re-raised afterwards."""

    def state_dict(self) -> dict[str, Any]:
        """What this callback needs to continue after a resume."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""


class CallbackList:
    """Dispatches each hook to the callbacks that override it.

    Example:
        >>> cbs = CallbackList([Callback()])
        >>> cbs.wants("on_train_batch_end")
        False
    """

    def __init__(self, callbacks: Iterable[Callback]) -> None:
        self.callbacks = sorted(callbacks, key=lambda cb: getattr(cb, "order", 0))
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be ember.callbacks.Callback objects, got {cb!r}")
        self._by_hook = {
            hook: [getattr(cb, hook) for cb in self.callbacks if _overrides(cb, hook)] for hook in HOOKS
        }
        intervals = [cb.refresh_interval for cb in self.callbacks if cb.refresh_interval is not None]
        self.refresh_interval: float | None = min(intervals) if intervals else None

    def wants(self, hook: str) -> bool:
        """True when some callback overrides ``hook``."""
        return bool(self._by_hook[hook])

    def call(self, hook: str, state: TrainState, *args: Any) -> None:
        """Call ``hook`` on every callback that overrides it, in list order."""
        for method in self._by_hook[hook]:
            method(state, *args)


def _overrides(cb: Callback, hook: str) -> bool:
    return getattr(type(cb), hook) is not getattr(Callback, hook)
