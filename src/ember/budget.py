"""Budget: how long a fit call trains and when it validates (``fit``'s ``max_steps``,
``steps_per_epoch``, ``max_time``, ``validation_freq`` and ``validate_every``); EpochPlan: what
the loop does between an epoch's steps (refreshes, the budget, validations inside the epoch).

``max_steps`` counts optimizer updates (with ``accumulate=k``, one per k batches, as Lightning and
the Hugging Face Trainer count); ``steps_per_epoch`` counts batches (an epoch's length, as in
Keras); ``max_time`` is seconds of this call. A budget running out ends the epoch at that step
boundary exactly as a callback's ``should_stop`` does: the epoch is validated and logged over the
batches it trained, and callbacks (checkpoints) see a normal end. Layer 1: knows the TrainState.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ember.arguments import check_count
from ember.errors import ConfigError
from ember.state import TrainState

__all__ = ["Budget", "EpochPlan"]


@dataclass
class Budget:
    """The limits and validation schedule of one ``fit`` call.

    Attributes:
        max_steps: stop after this many optimizer updates in this call (a resumed call counts from
            the original call's start); None: no limit.
        steps_per_epoch: batches per epoch (None: a whole pass over the data).
        max_time: stop at the first step boundary after this many seconds of this call (with
            several processes, checked at epoch ends, on process 0's clock).
        validation_freq: validate after every ``validation_freq``-th epoch (and after the last).
        validate_every: also validate every this many steps inside epochs (a history row with the
            step; None: at epoch ends only).

    Example:
        >>> budget = Budget(max_steps=10, validation_freq=2)
        >>> budget.validates_epoch(3, last=False), budget.validates_epoch(4, last=False)
        (False, True)
    """

    max_steps: int | None = None
    steps_per_epoch: int | None = None
    max_time: float | None = None
    validation_freq: int = 1
    validate_every: int | None = None
    started: float = field(default_factory=lambda: time.monotonic())

    def __post_init__(self) -> None:
        check_count("max_steps", self.max_steps, 1, allow_none=True)
        check_count("steps_per_epoch", self.steps_per_epoch, 1, allow_none=True)
        check_count("validation_freq", self.validation_freq, 1)
        check_count("validate_every", self.validate_every, 1, allow_none=True)
        if self.max_time is not None and (
            isinstance(self.max_time, bool)
            or not isinstance(self.max_time, numbers.Real)
            or not math.isfinite(self.max_time)
            or self.max_time <= 0
        ):
            raise ConfigError(f"max_time is seconds (a positive number), got {self.max_time!r}")

    def epoch_length(self, batches: int | None) -> int | None:
        """The batches of an epoch over data of ``batches`` per pass (None: unknown length)."""
        if self.steps_per_epoch is None:
            return batches
        if batches is not None and self.steps_per_epoch > batches:
            raise ConfigError(
                f"steps_per_epoch={self.steps_per_epoch}, but the training data has {batches} batches "
                "per pass; an epoch takes at most one pass over data with a length (streams without "
                "one continue across epochs)"
            )
        return self.steps_per_epoch

    @property
    def limited(self) -> bool:
        """Whether a step or time budget is set."""
        return self.max_steps is not None or self.max_time is not None

    def spent(self, state: TrainState, clock: bool = True) -> bool:
        """Whether the update budget (and with ``clock``, the time budget) is used up."""
        if self.max_steps is not None and state.updates - state.fit_start_updates >= self.max_steps:
            return True
        return clock and self.max_time is not None and time.monotonic() - self.started >= self.max_time

    def validates_epoch(self, epoch: int, last: bool) -> bool:
        """Whether the epoch (1-based, counted across calls) ends with validation."""
        return last or epoch % self.validation_freq == 0

    def validates_step(self, state: TrainState) -> bool:
        """Whether to validate after this step (inside an epoch; its end validates by epoch)."""
        every = self.validate_every
        return every is not None and state.step % every == 0 and state.batch != state.steps_per_epoch


@dataclass
class EpochPlan:
    """What an epoch does between its steps besides training.

    Attributes:
        refresh_every: seconds between refreshes of the running values (``on_refresh``).
        budget: the fit's limits (a spent budget ends the epoch as ``should_stop`` does) and
            validations inside the epoch.
        validate: runs a validation pass and returns its ``val_*`` values (None: no validation data).
    """

    refresh_every: float = 1.0
    budget: Budget = field(default_factory=Budget)
    validate: Callable[[], dict[str, float]] | None = None

    def __post_init__(self) -> None:
        # read once: the loop checks these after every step
        self.limited = self.budget.limited
        self.cap = self.budget.steps_per_epoch
        self.validates_steps = self.validate is not None and self.budget.validate_every is not None

    def ends_epoch(self, state: TrainState, serial: bool) -> bool:
        """True when the epoch ends at this step boundary: a stop, a spent budget (which sets
        ``should_stop``), or ``steps_per_epoch`` batches done."""
        if self.limited and self.budget.spent(state, clock=serial):
            state.should_stop = True
        return state.should_stop or state.progress.batch == self.cap

    def due(self, state: TrainState) -> bool:
        """Whether a validation inside the epoch is due after the step just done. It runs before the
        next batch trains, so when no batch follows (data without a length ended), the epoch's own
        validation covers it; and a checkpoint of this step resumes with it still to do."""
        return self.validates_steps and self.budget.validates_step(state)

    def run_validation(self, state: TrainState, cbs: Any) -> None:
        """Validate now and hand the values to ``on_validation_end`` of ``cbs`` (a CallbackList)."""
        if self.validate is not None:
            cbs.call("on_validation_end", state, self.validate())
