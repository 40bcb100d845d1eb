"""Argument checks shared by ``compile``, ``fit``, the callbacks and ``seed_everything``.

Each check raises a ConfigError that names the argument, what it got and what is allowed, so a
value that would train wrongly without a word (a negative ``grad_clip``, ``epochs=-1``, a loss
class instead of a loss object) is refused before the first step. Layer 0: imports ember.errors only.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from ember.errors import ConfigError

__all__ = ["arguments_of", "check_count", "check_not_class", "check_positive"]


def check_count(name: str, value: Any, minimum: int, allow_none: bool = False) -> None:
    """A ConfigError naming ``name`` unless ``value`` is an int >= ``minimum`` (or None when allowed).

    Example:
        >>> check_count("epochs", 3, 1)
    """
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        allowed = f"an int >= {minimum}" + (" or None" if allow_none else "")
        raise ConfigError(f"{name} must be {allowed}, got {value!r}")


def check_positive(name: str, value: Any, allow_none: bool = True) -> None:
    """A ConfigError naming ``name`` unless ``value`` is a finite number > 0 (or None when allowed).

    Example:
        >>> check_positive("grad_clip", 1.0)
    """
    if value is None and allow_none:
        return
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value <= 0:
        raise ConfigError(
            f"{name} must be a finite number > 0{' or None' if allow_none else ''}, got {value!r}"
        )


def check_not_class(name: str, value: Any) -> None:
    """A ConfigError when ``value`` is a class where an object is expected (``loss=nn.MSELoss``).

    Example:
        >>> check_not_class("loss", len)
    """
    if isinstance(value, type):
        raise ConfigError(
            f"{name}={value.__name__} is the class; pass an object: {name}={value.__name__}(...)"
        )


def arguments_of(given: dict[str, Any], leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """A method's arguments as called (``locals()`` at its start), without ``self`` and the names in
    ``leave_out``: what ``Model`` keeps as ``compile_arguments`` / ``fit_arguments`` for trackers.

    Example:
        >>> arguments_of({"self": None, "epochs": 3, "data": [1]}, leave_out=("data",))
        {'epochs': 3}
    """
    return {key: value for key, value in given.items() if key != "self" and key not in leave_out}
