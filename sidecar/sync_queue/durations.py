"""Durations: the Python API takes ``datetime.timedelta`` or seconds; the engine uses ms."""

from __future__ import annotations

import math
from datetime import timedelta

from .errors import InvalidParams

__all__ = ["Duration", "to_ms", "to_seconds"]

Duration = timedelta | float | int


def to_seconds(value: Duration, name: str) -> float:
    """Normalise a duration to seconds, refusing what is not a finite, non-negative duration."""
    if isinstance(value, bool) or not isinstance(value, timedelta | float | int):
        raise InvalidParams(
            f"{name}: expected a duration (timedelta or seconds), got {type(value).__name__}",
            field=name,
        )
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidParams(
            f"{name}: must be a finite, non-negative duration, got {value!r}", field=name
        )
    return seconds


def to_ms(value: Duration, name: str) -> int:
    """A duration in whole milliseconds (rounded up, so a tiny positive delay still delays)."""
    return math.ceil(to_seconds(value, name) * 1000)
