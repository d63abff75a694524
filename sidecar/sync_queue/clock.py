"""Where the queue gets the time from.

Every point in time inside the queue is an integer of milliseconds since the Unix epoch, as on
the wire. The clock is injected so tests of leases, delays and backoff move time by hand
instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    def now_ms(self) -> int:
        """The current time in integer milliseconds since the Unix epoch."""
        ...


class SystemClock:
    """The wall clock. The queue itself keeps its own timestamps from going backwards."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that moves only when told to: for tests and simulations."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now = start_ms
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        return self._now

    def advance(self, ms: float) -> int:
        """Move time forward by ``ms`` milliseconds and return the new time."""
        with self._lock:
            self._now += int(ms)
            return self._now

    def set(self, now_ms: int) -> None:
        with self._lock:
            self._now = now_ms
