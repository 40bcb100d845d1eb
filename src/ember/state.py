"""TrainState: what the fit loop tells callbacks, and the one channel callbacks use to talk back.

The counters live in a :class:`Progress` (what a checkpoint stores, with ``state_dict``); the rest of
TrainState is the live context of a fit call. The loop writes the counters and logs; callbacks read
them and may set ``should_stop``. Nothing here
imports torch or the rest of ember, so every layer can use it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["Progress", "TrainState"]


def _no_running_logs() -> dict[str, float]:
    return {}


@dataclass
class Progress:
    """Where training stands, counted across ``fit`` calls: the counters a checkpoint stores.

    Attributes:
        epoch: the current epoch, 1-based; ``epochs_done`` the number of finished epochs.
        step: training steps (batches) taken since the model was created (across ``fit`` calls).
        updates: optimizer updates since the model was created: ``step`` without gradient
            accumulation; with ``compile(accumulate=k)``, one per window of k steps.
        batch: batches done in the current epoch.
        fit_start_epoch: ``epochs_done`` when the current ``fit`` call began (a resumed call keeps
            the original one's, so ``epochs`` means the same in both); ``fit_start_updates`` the
            same for ``updates`` (``max_steps``).

    Example:
        >>> p = Progress(epoch=2, step=17)
        >>> q = Progress(); q.load_state_dict(p.state_dict()); q == p
        True
    """

    epoch: int = 0
    epochs_done: int = 0
    step: int = 0
    updates: int = 0
    batch: int = 0
    fit_start_epoch: int = 0
    fit_start_updates: int = 0

    def state_dict(self) -> dict[str, int]:
        """The counters as plain ints."""
        return {f.name: int(getattr(self, f.name)) for f in fields(self)}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Restore the counters of :meth:`state_dict` (one saved before ``updates`` was counted
        had one update per step, and started its fit calls at update 0)."""
        older = {"updates": state["step"], "fit_start_updates": 0}
        for f in fields(self):
            setattr(self, f.name, int(state[f.name] if f.name in state else older[f.name]))


def _counter(name: str, doc: str) -> property:
    """A TrainState attribute that reads and writes the counter ``name`` of its Progress."""

    def read(state: TrainState) -> int:
        return getattr(state.progress, name)

    def write(state: TrainState, value: int) -> None:
        setattr(state.progress, name, value)

    return property(read, write, doc=doc)


@dataclass
class TrainState:
    """The live context of a ``fit`` call, shared by the loop and the callbacks.

    Attributes:
        model: the ``ember.Model`` being trained (callbacks use ``model.net`` and ``model.save``).
        progress: the counters (a :class:`Progress`); ``epoch``, ``epochs_done``, ``step``,
            ``updates``, ``batch``, ``fit_start_epoch`` and ``fit_start_updates`` read and write them.
        epochs: the epoch number ``fit`` stops after (1-based, counted across ``fit`` calls).
        steps_per_epoch: batches per epoch, or None when the data has no length.
        logs: the last finished epoch's values (``loss``, metrics, ``val_*``, ``lr``, ``seconds``).
        running: the running values of the current epoch as of the last refresh.
        should_stop: set by a callback to end training: set in ``on_epoch_end``, after that epoch;
            set during an epoch (``on_train_batch_end``, ``on_refresh``), at the next step boundary:
            that epoch is validated and logged over the batches it trained (its history row has a
            ``batches`` column). With several processes, set it on every process at the same step:
            from ``on_train_batch_end`` on a condition of the step number (refresh times differ
            between processes, so ``on_refresh`` is for one process only).
        validating: the fit call has validation data (an epoch's logs lack ``val_*`` columns only
            when ``fit(validation_freq=k)`` skipped it).
        read_running: reads the running epoch values now (one device-to-host copy); costs a sync.
        train_data, train_meter, callbacks: what a full checkpoint needs from the running fit (the
            batches and their position, the running epoch sums, every callback's state).
        interrupted: the name of a signal (SIGINT, SIGTERM) received during fit; the loop stops at
            the next step boundary.
    """

    model: Any = None
    progress: Progress = field(default_factory=Progress)
    epochs: int = 0
    steps_per_epoch: int | None = None
    logs: dict[str, float] = field(default_factory=dict)
    running: dict[str, float] = field(default_factory=dict)
    should_stop: bool = False
    validating: bool = False
    read_running: Callable[[], dict[str, float]] = _no_running_logs
    train_data: Any = None
    train_meter: Any = None
    callbacks: list[Any] = field(default_factory=list)
    interrupted: str | None = None

    epoch = _counter("epoch", "The current epoch, 1-based.")
    epochs_done = _counter("epochs_done", "The number of finished epochs.")
    step = _counter("step", "Training steps (batches) taken since the model was created.")
    updates = _counter("updates", "Optimizer updates since the model was created.")
    batch = _counter("batch", "Batches done in the current epoch.")
    fit_start_epoch = _counter("fit_start_epoch", "``epochs_done`` when the current ``fit`` call began.")
    fit_start_updates = _counter("fit_start_updates", "``updates`` when the current ``fit`` call began.")
