"""Monitor: the one definition of "did the monitored value improve?" shared by callbacks and the
plateau scheduler.

NaN and infinite values never improve. ``mode="auto"`` (the default) takes the direction from the
compiled metric objects or the name (``ember.metrics.direction``): "max" for accuracy, AUC, F1 and
other scores, "min" for losses and errors; a name that says neither is refused with a request for
``mode=``, never guessed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from ember.errors import ConfigError
from ember.metrics import Metric, direction
from ember.metrics.direction import VALIDATION_PREFIX

__all__ = ["MODES", "Monitor", "metrics_of"]

MODES = ("auto", "min", "max")


class Monitor:
    """Tracks the best value of one log entry.

    Args:
        key: the log entry, e.g. "val_loss".
        mode: "auto" (from the metric or the name, see :meth:`resolve`), "min" (lower is better)
            or "max".
        min_delta: the smallest change that counts as an improvement.

    Example:
        >>> m = Monitor("val_loss")
        >>> m.update(1.0), m.update(float("nan")), m.update(0.5), m.best, m.mode
        (True, False, True, 0.5, 'min')
    """

    def __init__(self, key: str, mode: str = "auto", min_delta: float = 0.0) -> None:
        if mode not in MODES:
            raise ConfigError(f"mode must be 'auto', 'min' or 'max', got {mode!r} (monitor {key!r})")
        if not isinstance(key, str) or not key:
            raise ConfigError(f"monitor must be a history column name such as 'val_loss', got {key!r}")
        self.key = key
        self.requested = mode
        self._mode = direction(key) if mode == "auto" else mode
        self.min_delta = abs(min_delta)
        self.best: float | None = None

    @property
    def mode(self) -> str:
        """ "min" or "max"; an error asking for ``mode=`` when "auto" could not tell."""
        if self._mode is None:
            raise ConfigError(
                f"cannot tell whether a higher or a lower {self.key!r} is better; "
                f"pass mode='min' or mode='max' (monitor {self.key!r})"
            )
        return self._mode

    def resolve(self, metrics: Iterable[Metric]) -> str:
        """Settle an "auto" mode with the compiled metric objects (their ``higher_is_better``
        wins over the name); returns the mode, or raises ConfigError when it stays unknown."""
        if self.requested == "auto":
            metrics = list(metrics)
            self._mode = direction(self.key, metrics)
            names = ["loss", *(m.name for m in metrics)]
            columns = names + [VALIDATION_PREFIX + n for n in names]
            if self._mode is None and self.key not in columns:
                raise ConfigError(
                    f"monitor {self.key!r} is none of the columns the compiled loss and metrics log "
                    f"({', '.join(columns)}): check the spelling, or pass mode='min' or mode='max' "
                    "when a callback of yours adds it"
                )
        return self.mode

    def waits(self, logs: dict[str, float], validating: bool) -> bool:
        """True for a ``val_*`` monitor after an epoch that a fit with validation data
        (``validating``) did not validate (``fit(validation_freq=k)``): nothing to compare, so
        the epoch does not count."""
        skipped = validating and not any(key.startswith("val_") for key in logs)
        return skipped and self.key.startswith("val_")

    def value(self, logs: dict[str, float]) -> float:
        """The monitored value in ``logs``; an error naming the available keys when absent."""
        if self.key not in logs:
            raise ConfigError(
                f"monitor {self.key!r} is not in the logs; available: {', '.join(sorted(logs))}"
                " (val_* entries need validation_data)"
            )
        return float(logs[self.key])

    def improves(self, value: float) -> bool:
        """Whether ``value`` beats the best so far by more than ``min_delta``."""
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, value: float) -> bool:
        """Record ``value``; True when it improved (and is now the best)."""
        if self.improves(value):
            self.best = value
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        """The best value so far."""
        return {"best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the best value."""
        self.best = state["best"]


def metrics_of(model: Any) -> list[Metric]:
    """The compiled metric objects of ``model`` (none before compile)."""
    return list(getattr(model, "metrics", []) or [])
