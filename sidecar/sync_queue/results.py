"""What the queue's calls return besides items and ids (the core makes them; the threaded
``SyncQueue`` and the stdio server's ``methods.py`` hand them on)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .item import Item

__all__ = ["FailResult", "Page", "PushBatchResult", "PushResult"]


@dataclass(frozen=True)
class PushResult:
    """What one push did. ``unique`` (only when the push had a unique key): ``added``,
    ``kept`` (nothing added: ``id`` is the live item's), ``replaced`` (``replaced`` names
    the item cancelled) or ``appended`` (queued behind the live ones)."""

    id: str
    unique: str | None = None
    replaced: str | None = None
    index: int = 0  # the member of a batch it answers

    def to_wire(self) -> dict[str, str]:
        result = {"id": self.id}
        if self.unique is not None:
            result["unique"] = self.unique
        if self.replaced is not None:
            result["replaced"] = self.replaced
        return result


@dataclass(frozen=True)
class PushBatchResult:
    ids: list[str]  # added, in order
    duplicates: list[str]  # skipped: already retained, or repeated in the batch
    unique: list[PushResult] = field(default_factory=list)  # members with a unique key


@dataclass(frozen=True, eq=False)
class FailResult:
    """What ``mark_failed`` did. It stands for the seed's ``bool`` (``can_retry``): truthy,
    and equal to ``True``, when the item will be retried."""

    retry: bool
    available_at: int | None  # when the item is due again, if it will be retried

    def __bool__(self) -> bool:
        return self.retry

    def __eq__(self, other: object) -> bool:
        if isinstance(other, bool):
            return self.retry == other
        if isinstance(other, FailResult):
            return (self.retry, self.available_at) == (other.retry, other.available_at)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.retry)


@dataclass(frozen=True)
class Page:
    items: list[Item]
    next: str | None  # pass as ``after`` for the next page; None on the last page
