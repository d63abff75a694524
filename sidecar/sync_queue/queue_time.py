"""``QueueTime``: the queue's clock, shared by both drivers through ``Engine``.

The queue's time is the clock's monotonic reading plus an offset: a wall clock that is set
(NTP stepping it, a user changing it) cannot stretch or cut a lease or a delay. When the wall
clock parts from it by more than ``REBASE_TOLERANCE_MS`` the queue re-bases onto the wall
clock with a journaled ``Rebase`` record, which keeps every deadline's remaining time.
"""

from __future__ import annotations

from .clock import Clock
from .core import QueueCore
from .ops import Rebase

__all__ = ["ALIGNED_MS", "REBASE_TOLERANCE_MS", "QueueTime"]

# How far the wall clock may drift from the queue's (monotonic) time before the queue re-bases
# onto it. Both clocks are slewed alike by NTP, so they part only when the wall clock is set.
REBASE_TOLERANCE_MS = 1000
# A clock whose monotonic reading is aligned with its wall clock (SystemClock) reads the two
# this close: then the queue uses the monotonic reading as it is (see ``QueueTime.anchor``).
ALIGNED_MS = 2


class QueueTime:
    """The queue's time: the clock's monotonic reading plus an offset set by ``anchor``."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._offset = 0

    def now(self, last_t: int) -> int:
        """The queue's time, never before the last record's (no re-base)."""
        now = self.clock.monotonic_ms() + self._offset
        return now if now > last_t else last_t

    def for_change(self, core: QueueCore) -> int:
        """The queue's time for a call that may change the queue: if the wall clock was set
        (it parted from the queue's time by more than ``REBASE_TOLERANCE_MS``), re-base onto
        it first: every deadline moves by the same amount, so each keeps the real time it had
        left; retention does not count the jump; timestamps follow the corrected clock."""
        clock = self.clock
        wall = clock.now_ms()
        mono = clock.monotonic_ms()
        now = mono + self._offset
        last = core.state.last_t
        if now < last:
            now = last
        if -REBASE_TOLERANCE_MS <= wall - now <= REBASE_TOLERANCE_MS:
            return now
        core.rebase(Rebase(wall, wall - now, wall - now))
        self.anchor(wall, mono)
        return wall

    def start(self, core: QueueCore) -> None:
        """Anchor on the wall clock, re-basing the recovered state on it.

        The wall clock behind the last recorded time (it had run ahead, or runs behind now):
        every deadline moves back with the queue's time, so each keeps the time it had left,
        and retention keeps what it had left too. The wall clock ahead (the queue was closed
        for a while, or the clock runs ahead now; the two cannot be told apart): deadlines
        stay, so what came due while closed is due now, but retention does not count the gap
        (README, Semantics: time the queue did not measure never drops an item).
        """
        wall = self.clock.now_ms()
        mono = self.clock.monotonic_ms()
        state = core.state
        last = state.last_t
        finished = len(state.items) - state.live_count
        if last and wall < last:
            core.rebase(Rebase(wall, wall - last, wall - last))
        elif last and wall > last and finished:
            core.rebase(Rebase(wall, 0, wall - last))
        self.anchor(max(wall, core.state.last_t), mono)

    def reanchor(self, last_t: int) -> None:
        """After a rollback: a refused ``Rebase`` may have moved the anchor."""
        self.anchor(max(self.clock.now_ms(), last_t), self.clock.monotonic_ms())

    def anchor(self, now: int, mono: int) -> None:
        """From here on the queue's time is ``now`` plus the monotonic time elapsed since
        ``mono``. If the two readings agree to ``ALIGNED_MS`` the monotonic one is used as it
        is: two clocks floored to ms apart could put the queue's time a ms ahead of the wall
        clock (a lease ending after the wall clock says it should)."""
        offset = now - mono
        self._offset = 0 if abs(offset) <= ALIGNED_MS else offset
