"""Monitor: the one definition of "did the monitored value improve?" shared by callbacks.

NaN and infinite values never improve; ``mode`` is explicit ("min" or "max").
"""

from __future__ import annotations

import math
from typing import Any

from ember.errors import ConfigError

__all__ = ["Monitor"]


class Monitor:
    """Tracks the best value of one log entry.

    Args:
        key: the log entry, e.g. "val_loss".
        mode: "min" (lower is better) or "max".
        min_delta: the smallest change that counts as an improvement.

    Example:
        >>> m = Monitor("val_loss", "min")
        >>> m.update(1.0), m.update(float("nan")), m.update(0.5), m.best
        (True, False, True, 0.5)
    """

    def __init__(self, key: str, mode: str = "min", min_delta: float = 0.0) -> None:
        if mode not in ("min", "max"):
            raise ConfigError(f"mode must be 'min' or 'max', got {mode!r} (monitor {key!r})")
        self.key = key
        self.mode = mode
        self.min_delta = abs(min_delta)
        self.best: float | None = None

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
