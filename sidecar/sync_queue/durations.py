"""Durations: the Python API takes ``datetime.timedelta`` or seconds; the engine uses ms.

The engine's unit is the integer millisecond, as on the wire. A conversion to it never goes
through a float multiplication (``2.007 * 1000`` is ``2007.0000000000002``, which rounded up
is a 2008 ms lease): an ``int`` and a ``timedelta`` (integer microseconds inside) are
converted with integer arithmetic, a ``float`` is first rounded to whole microseconds. So
``timedelta(milliseconds=n)``, the form the sidecar passes the wire's ``…Ms`` integers in,
is exactly ``n`` ms for every ``n``.
"""

from __future__ import annotations

import math
from datetime import timedelta

from .errors import InvalidParams

__all__ = ["MAX_DURATION_MS", "Duration", "to_ms", "to_seconds"]

Duration = timedelta | float | int

# The longest duration (lease, delay, TTL, timeout, any config duration) accepted: 100 years.
# A point in time plus it stays far inside I-JSON's exact integers (2^53 - 1, docs/protocol.md
# §1) and inside what the journal can store; "forever" is better said without a TTL.
MAX_DURATION_MS = 36_525 * 24 * 3600 * 1000


def to_seconds(value: Duration, name: str) -> float:
    """Normalise a duration to seconds, refusing what is not a finite, non-negative duration."""
    return _to_us(value, name) / 1_000_000


def to_ms(value: Duration, name: str) -> int:
    """A duration in whole milliseconds (rounded up, so a tiny positive delay still delays)."""
    us = _to_us(value, name)
    return -(-us // 1000)  # integer ceiling


def _to_us(value: Duration, name: str) -> int:
    """The duration in whole microseconds (a float rounded to the nearest one, but never a
    positive duration down to zero), checked against ``0..MAX_DURATION_MS``."""
    if isinstance(value, bool) or not isinstance(value, timedelta | float | int):
        raise InvalidParams(
            f"{name}: expected a duration (timedelta or seconds), got {type(value).__name__}",
            field=name,
        )
    if isinstance(value, timedelta):
        us = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    elif isinstance(value, int):
        us = value * 1_000_000
    else:
        if not math.isfinite(value) or value < 0:
            raise InvalidParams(
                f"{name}: must be a finite, non-negative duration, got {value!r}", field=name
            )
        if value > MAX_DURATION_MS / 1000:
            raise _too_long(name, value)
        us = max(round(value * 1_000_000), 1 if value > 0 else 0)
    if us < 0:
        raise InvalidParams(
            f"{name}: must be a finite, non-negative duration, got {value!r}", field=name
        )
    if us > MAX_DURATION_MS * 1000:
        raise _too_long(name, value)
    return us


def _too_long(name: str, value: Duration) -> InvalidParams:
    return InvalidParams(
        f"{name}: must be at most {MAX_DURATION_MS // 1000} seconds (100 years), got {value!r}",
        field=name,
    )
