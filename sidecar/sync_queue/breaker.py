"""The circuit breaker around the consumers' downstream (not around the disk).

States: ``closed`` (normal) -> ``open`` after ``threshold`` consecutive ``fail`` calls ->
``halfOpen`` once the cool-down has passed (the engine records that as a ``BreakerProbe``
operation) -> ``closed`` on the next success, or ``open`` again on the next failure.
While open nothing is handed out; while half-open one probe item at a time is.

Expired leases do not count (docs/protocol.md §7): a consumer that crashed says nothing about
the downstream. A success while open (an item handed out before the breaker opened) resets
the failure count but keeps the breaker open until its cool-down ends.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

__all__ = ["BreakerChanged", "BreakerState", "CircuitBreaker"]

BreakerState = Literal["closed", "open", "halfOpen"]


class BreakerChanged(NamedTuple):
    """An event: the breaker moved to ``state``."""

    state: BreakerState
    reason: str


class CircuitBreaker:
    __slots__ = (
        "consecutive_failures",
        "cooldown_ms",
        "opened_at",
        "probe_id",
        "state",
        "threshold",
    )

    def __init__(self, threshold: int, cooldown_ms: int) -> None:
        self.threshold = threshold
        self.cooldown_ms = cooldown_ms
        self.state: BreakerState = "closed"
        self.consecutive_failures = 0
        self.opened_at = 0
        self.probe_id: str | None = None  # the item handed out while half-open

    def probe_due(self, now: int) -> bool:
        return self.state == "open" and now >= self.opened_at + self.cooldown_ms

    def reopens_at(self) -> int | None:
        return self.opened_at + self.cooldown_ms if self.state == "open" else None

    def may_hand_out(self) -> int:
        """How many items pop may hand out now (0, 1 for the probe, or unbounded as -1)."""
        if self.state == "closed":
            return -1
        if self.state == "halfOpen" and self.probe_id is None:
            return 1
        return 0

    def on_success(self) -> BreakerChanged | None:
        self.consecutive_failures = 0
        if self.state == "halfOpen":
            self.state = "closed"
            self.probe_id = None
            return BreakerChanged("closed", "a probe succeeded")
        return None

    def on_failure(self, t: int) -> BreakerChanged | None:
        self.consecutive_failures += 1
        if self.state == "halfOpen":
            return self._open(t, "the probe failed")
        if self.state == "closed" and self.consecutive_failures >= self.threshold:
            return self._open(t, f"{self.consecutive_failures} consecutive failures")
        return None

    def on_half_open(self) -> BreakerChanged:
        self.state = "halfOpen"
        self.probe_id = None
        return BreakerChanged("halfOpen", "cool-down ended; letting one probe through")

    def on_probe_lost(self, item_id: str) -> None:
        """The probe's lease expired or it was cancelled: let another probe through."""
        if self.probe_id == item_id:
            self.probe_id = None

    def _open(self, t: int, reason: str) -> BreakerChanged:
        self.state = "open"
        self.opened_at = t
        self.probe_id = None
        return BreakerChanged("open", reason)

    def to_record(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "failures": self.consecutive_failures,
            "openedAt": self.opened_at,
            "probeId": self.probe_id,
        }

    def load_record(self, record: dict[str, Any]) -> None:
        self.state = record["state"]
        self.consecutive_failures = record["failures"]
        self.opened_at = record["openedAt"]
        self.probe_id = record["probeId"]
