"""Where the queue gets the time from.

Every point in time inside the queue is an integer of milliseconds since the Unix epoch, as on
the wire. A clock gives two readings: the wall clock (``now_ms``), which the user or NTP may
move in either direction at any moment, and a monotonic clock (``monotonic_ms``), which only
measures elapsed time. The queue runs on the monotonic one and follows the wall clock only by
re-basing (``queue_time.py``), so a wrong wall clock cannot stretch a lease, a delay or a
backoff. The clock is injected so tests move time by hand instead of sleeping.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

__all__ = ["WALL_OFFSET_ENV", "Clock", "ManualClock", "SystemClock", "clock_from_env"]

# Tests only: the sidecar's wall clock runs this many ms off the system's (either sign), so an
# end-to-end test can run a session with a wrong clock without touching the machine's.
WALL_OFFSET_ENV = "SYNC_QUEUE_TEST_WALL_OFFSET_MS"


class Clock(Protocol):
    def now_ms(self) -> int:
        """The wall clock: integer milliseconds since the Unix epoch (may jump either way)."""
        ...

    def monotonic_ms(self) -> int:
        """Elapsed time in integer milliseconds from an arbitrary origin; never goes back."""
        ...


def _suspend_counting_monotonic() -> Callable[[], int]:
    """A monotonic clock in ns that keeps counting while the machine sleeps.

    A laptop's lid closed for an hour is an hour of real time: a lease or a delay must run
    out across it. ``time.monotonic`` stops during suspend on Linux (CLOCK_MONOTONIC) and
    macOS (mach_absolute_time); the queue would then take the hour as the wall clock being
    set forward and shift every deadline by it. So: CLOCK_BOOTTIME on Linux, Apple's
    CLOCK_MONOTONIC (which counts sleep), GetTickCount64 on Windows (counts sleep).
    """
    if sys.platform.startswith("linux") and hasattr(time, "CLOCK_BOOTTIME"):
        return functools.partial(time.clock_gettime_ns, time.CLOCK_BOOTTIME)
    if sys.platform == "darwin":
        return functools.partial(time.clock_gettime_ns, time.CLOCK_MONOTONIC)
    if sys.platform == "win32":
        import ctypes

        tick_count = ctypes.windll.kernel32.GetTickCount64
        tick_count.restype = ctypes.c_ulonglong
        return lambda: int(tick_count()) * 1_000_000
    return time.monotonic_ns


class SystemClock:
    """The operating system's wall clock, and a monotonic clock that counts suspend.

    The monotonic reading is aligned with the wall clock when the clock is made (the wall
    clock read first, so it is never ahead): until the wall clock is set the two agree to the
    ms, and the queue then runs on the monotonic reading as it is (``queue.py``,
    ``_set_anchor``), never a ms ahead of the wall clock from rounding two clocks apart.
    """

    def __init__(self, wall_offset_ms: int = 0) -> None:
        self.wall_offset_ms = wall_offset_ms
        monotonic_ns = _suspend_counting_monotonic()
        wall_ns = time.time_ns
        align_ns = wall_ns() - monotonic_ns() + wall_offset_ms * 1_000_000
        # Closures, not methods: read on every call of the queue, so every lookup counts.
        self.monotonic_ms: Callable[[], int] = lambda: (monotonic_ns() + align_ns) // 1_000_000
        self.now_ms: Callable[[], int] = (
            (lambda: wall_ns() // 1_000_000 + wall_offset_ms)
            if wall_offset_ms
            else (lambda: wall_ns() // 1_000_000)
        )


def clock_from_env(environ: Mapping[str, str]) -> SystemClock:
    """The sidecar's clock: the system's, moved by ``$SYNC_QUEUE_TEST_WALL_OFFSET_MS`` if set.

    Raises ``ValueError`` naming the variable if it is not an integer."""
    raw = environ.get(WALL_OFFSET_ENV)
    if raw is None:
        return SystemClock()
    try:
        return SystemClock(int(raw))
    except ValueError:
        raise ValueError(f"{WALL_OFFSET_ENV}: expected an integer of ms, got {raw!r}") from None


class ManualClock:
    """A clock that moves only when told to: for tests and simulations.

    ``advance`` is real time passing (both readings move); ``jump`` and ``set`` move only the
    wall clock, as a user or a bad NTP server does.
    """

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now = start_ms
        self._mono = 0
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        return self._now

    def monotonic_ms(self) -> int:
        return self._mono

    def advance(self, ms: float) -> int:
        """Let ``ms`` milliseconds of real time pass and return the new wall time."""
        with self._lock:
            self._now += int(ms)
            self._mono += int(ms)
            return self._now

    def jump(self, ms: int) -> int:
        """Move only the wall clock by ``ms`` (either sign); no real time passes."""
        with self._lock:
            self._now += ms
            return self._now

    def set(self, now_ms: int) -> None:
        """Set only the wall clock; no real time passes."""
        with self._lock:
            self._now = now_ms
