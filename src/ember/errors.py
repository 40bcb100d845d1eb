"""ember's exception types.

Every error ember raises for bad input or a failed operation is one of these, with a message that names
the cause (shapes, file and line, key, epoch and step). This module imports nothing from ember.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "EmberError",
    "NonFiniteLossError",
    "ShapeError",
]


class EmberError(Exception):
    """Base class of every error ember raises on purpose."""


class ConfigError(EmberError, ValueError):
    """A call was made with options that cannot work together (e.g. ``fit`` before ``compile``)."""


class DataError(EmberError, ValueError):
    """Training or evaluation data is malformed: lengths, dtypes, files, lines."""


class ShapeError(EmberError, ValueError):
    """Model output and target do not fit the loss (the message shows both shapes)."""


class NonFiniteLossError(EmberError, FloatingPointError):
    """The training loss became NaN or infinite (the message names epoch and step)."""

    def __init__(self, message: str, epoch: int, step: int) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.step = step


class CheckpointError(EmberError, OSError):
    """A checkpoint or weights file is missing, incomplete, altered or does not fit the model."""
