"""Per-destination bookkeeping: how many items of each origin are in each status, and the
last error an attempt at that origin reported (``stats.destinations``, docs/protocol.md §6).

Items with a destination belong to an outbox dispatcher (issue 12): the counts let it and a UI
show each host's backlog, and the last error says why a host is behind. The counts are derived
(rebuilt when a snapshot is loaded); the last error is not, so snapshots keep it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from .errors import InvalidParams
from .item import ItemStatus

__all__ = ["DestinationStats", "Destinations", "check_except"]


class DestinationStats:
    __slots__ = ("counts", "last_error", "last_error_at")

    def __init__(self) -> None:
        self.counts = dict.fromkeys(ItemStatus, 0)
        self.last_error: str | None = None
        self.last_error_at: int | None = None

    def to_wire(self) -> dict[str, Any]:
        counts = self.counts
        return {
            "pending": counts[ItemStatus.PENDING],
            "processing": counts[ItemStatus.PROCESSING],
            "held": counts[ItemStatus.HELD],
            "failed": counts[ItemStatus.FAILED],
            "completed": counts[ItemStatus.COMPLETED],
            "cancelled": counts[ItemStatus.CANCELLED],
            "lastError": self.last_error,
            "lastErrorAt": self.last_error_at,
        }

    def empty(self) -> bool:
        return self.last_error_at is None and not any(self.counts.values())


class Destinations(dict[str, DestinationStats]):
    """Origin -> its stats. An origin is listed while it has retained items or an error."""

    def count(self, origin: str, status: ItemStatus, delta: int) -> None:
        stats = self.get(origin)
        if stats is None:
            stats = self[origin] = DestinationStats()
        counts = stats.counts
        counts[status] += delta
        # Empty only if this count just reached 0 (checked first: it rarely has).
        if delta < 0 and not counts[status] and stats.empty():
            del self[origin]

    def move(self, origin: str, old: ItemStatus, new: ItemStatus) -> None:
        """One item of ``origin`` (counted already) changes status: one lookup, and no
        emptiness check (its count stays, so its entry stays). Every pop and completion of an
        outbox item comes here."""
        counts = self[origin].counts
        counts[old] -= 1
        counts[new] += 1

    def error(self, origin: str, error: str | None, t: int) -> None:
        stats = self.get(origin)
        if stats is None:
            stats = self[origin] = DestinationStats()
        stats.last_error = error if error is not None else "failed"
        stats.last_error_at = t

    def to_record(self) -> dict[str, list[Any]]:
        """What a snapshot keeps: the last errors (the counts are rebuilt from the items)."""
        return {
            origin: [s.last_error, s.last_error_at]
            for origin, s in self.items()
            if s.last_error_at is not None
        }

    def load_record(self, record: object) -> None:
        if type(record) is not dict:
            raise ValueError("header field destinations is not an object")
        for origin, pair in record.items():
            if not (
                type(pair) is list
                and len(pair) == 2
                and type(pair[0]) is str
                and type(pair[1]) is int
                and pair[1] >= 0
            ):
                raise ValueError(f"header field destinations[{origin!r:.80}] is {pair!r:.80}")
            self.error(origin, pair[0], pair[1])

    def to_wire(self) -> dict[str, dict[str, Any]]:
        return {origin: stats.to_wire() for origin, stats in sorted(self.items())}


def check_except(
    except_destinations: Collection[str] | None, partition: int | None
) -> frozenset[str] | None:
    """The origins a destination pop skips, checked; None for a plain pop."""
    if except_destinations is None:
        return None
    if partition is not None:
        raise InvalidParams(
            "partition: a pop for destinations takes no partition", field="partition"
        )
    if isinstance(except_destinations, str) or not all(
        isinstance(origin, str) for origin in except_destinations
    ):
        raise InvalidParams("destinations.except: expected a list of strings", field="destinations")
    return frozenset(except_destinations)
