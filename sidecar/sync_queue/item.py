"""The item and its two enums: what a producer pushes and a consumer pops.

The fields are those of the wire contract (``docs/protocol.md`` §3) in snake_case. A ``SyncItem``
handed to or returned by the queue is always a copy: the queue's own items are never shared
with callers, so mutating a popped item cannot corrupt the queue.
"""

from __future__ import annotations

import itertools
import os
import time
from enum import Enum, IntEnum
from typing import Any

from .durations import Duration, to_ms
from .errors import InvalidParams

__all__ = ["ItemStatus", "Priority", "SyncItem", "new_id"]

MAX_ID_LENGTH = 128
MAX_RETRIES_LIMIT = 2**53 - 1  # I-JSON's largest exact integer (docs/protocol.md §1)


class Priority(IntEnum):
    """Pop order: lower value first. The value is the rank, the wire name is ``wire``."""

    CRITICAL = 0
    HIGH = 1
    NORMAL = 2
    LOW = 3
    BACKGROUND = 4

    # Enum's own __hash__ is Python code; the engine hashes these on every transition.
    __hash__ = int.__hash__

    @property
    def wire(self) -> str:
        return _PRIORITY_WIRE[self]

    @classmethod
    def parse(cls, value: str | Priority) -> Priority:
        if isinstance(value, Priority):
            return value
        try:
            return _PRIORITY_BY_WIRE[value]
        except (KeyError, TypeError):
            names = ", ".join(_PRIORITY_BY_WIRE)
            raise InvalidParams(
                f"priority: expected one of {names}, got {value!r}", field="priority"
            ) from None


_PRIORITY_WIRE = {p: p.name.lower() for p in Priority}
_PRIORITY_BY_WIRE = {name: p for p, name in _PRIORITY_WIRE.items()}


class ItemStatus(str, Enum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"  # retries exhausted: the dead-letter set
    CANCELLED = "cancelled"

    __hash__ = str.__hash__  # see Priority.__hash__

    @property
    def finished(self) -> bool:
        return self in _FINISHED

    @classmethod
    def parse(cls, value: str | ItemStatus) -> ItemStatus:
        if isinstance(value, ItemStatus):
            return value
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(s.value for s in cls)
            raise InvalidParams(
                f"status: expected one of {names}, got {value!r}", field="status"
            ) from None


_STATUSES = tuple(ItemStatus)
_STATUS_INDEX = {s: n for n, s in enumerate(_STATUSES)}
_PRIORITIES = tuple(Priority)
_FINISHED = frozenset({ItemStatus.COMPLETED, ItemStatus.FAILED, ItemStatus.CANCELLED})

# Generated ids are time-ordered and unique: 12 hex digits of milliseconds, then 16 hex digits
# of a counter that starts at a random point per process. The counter makes ids from the same
# millisecond unique and ordered within a process; the random start keeps two processes apart.
# (next() on itertools.count is atomic under the GIL, so this needs no lock.)
_id_counter = itertools.count(int.from_bytes(os.urandom(8), "big") >> 1)


def new_id() -> str:
    return f"{time.time_ns() // 1_000_000:012x}{next(_id_counter) & 0xFFFF_FFFF_FFFF_FFFF:016x}"


def check_id(value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_LENGTH:
        raise InvalidParams(
            f"id: expected a string of 1 to {MAX_ID_LENGTH} characters, got {value!r:.80}",
            field="id",
        )
    return value


class SyncItem:
    """One unit of work. Build it with :meth:`new` and the ``with_*`` methods.

    ``max_retries`` of ``None`` means "the queue's default" (``QueueConfig.max_retries``); the
    delay and time-to-live set by :meth:`with_delay` and :meth:`with_ttl` count from the moment
    the item is pushed.
    """

    __slots__ = (
        "_delay_ms",
        "_handed_at",
        "_partition",
        "_seq",
        "_token",
        "_ttl_ms",
        "_where",
        "attempts",
        "available_at",
        "correlation_id",
        "created_at",
        "expires_at",
        "id",
        "last_error",
        "lease_expires_at",
        "lease_id",
        "max_retries",
        "metadata",
        "partition_key",
        "payload",
        "priority",
        "status",
        "updated_at",
    )

    id: str
    payload: Any
    priority: Priority
    status: ItemStatus
    attempts: int
    max_retries: int | None
    correlation_id: str | None
    metadata: dict[str, str]
    partition_key: str | None
    created_at: int
    updated_at: int
    available_at: int
    lease_expires_at: int | None
    lease_id: str | None
    expires_at: int | None
    last_error: str | None
    # Engine bookkeeping, not part of the public item (see state.py).
    _delay_ms: int
    _ttl_ms: int | None
    _seq: int
    _token: int
    _where: int
    _handed_at: int
    _partition: int

    def __init__(
        self, payload: Any, priority: Priority | str = Priority.NORMAL, *, id: str | None = None
    ) -> None:
        now = time.time_ns() // 1_000_000
        self.id = new_id() if id is None else check_id(id)
        self.payload = payload
        self.priority = Priority.parse(priority)
        self.status = ItemStatus.PENDING
        self.attempts = 0
        self.max_retries = None
        self.correlation_id = None
        self.metadata = {}
        self.partition_key = None
        self.created_at = now
        self.updated_at = now
        self.available_at = now
        self.lease_expires_at = None
        self.lease_id = None
        self.expires_at = None
        self.last_error = None
        self._delay_ms = 0
        self._ttl_ms = None
        self._seq = 0
        self._token = 0
        self._where = 0
        self._handed_at = 0
        self._partition = 0

    @classmethod
    def new(cls, payload: Any, priority: Priority | str = Priority.NORMAL) -> SyncItem:
        return cls(payload, priority)

    # -- builders (they change this item and return it, like the seed's by-value builders) --

    def with_id(self, id: str) -> SyncItem:
        self.id = check_id(id)
        return self

    def with_max_retries(self, max_retries: int) -> SyncItem:
        if (
            isinstance(max_retries, bool)
            or not isinstance(max_retries, int)
            or not 0 <= max_retries <= MAX_RETRIES_LIMIT
        ):
            raise InvalidParams(
                f"max_retries: expected an integer 0-{MAX_RETRIES_LIMIT}, got {max_retries!r}",
                field="maxRetries",
            )
        self.max_retries = max_retries
        return self

    def with_correlation_id(self, correlation_id: str | None) -> SyncItem:
        if correlation_id is not None and not isinstance(correlation_id, str):
            raise InvalidParams("correlation_id: expected a string or None", field="correlationId")
        self.correlation_id = correlation_id
        return self

    def with_metadata(self, key: str, value: str) -> SyncItem:
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidParams("metadata: keys and values must be strings", field="metadata")
        self.metadata[key] = value
        return self

    def with_partition_key(self, partition_key: str | None) -> SyncItem:
        if partition_key is not None and not isinstance(partition_key, str):
            raise InvalidParams("partition_key: expected a string or None", field="partitionKey")
        self.partition_key = partition_key
        return self

    def with_delay(self, delay: Duration) -> SyncItem:
        self._delay_ms = to_ms(delay, "delay")
        return self

    def with_ttl(self, ttl: Duration) -> SyncItem:
        self._ttl_ms = to_ms(ttl, "ttl")
        return self

    # -- views --

    def copy(self) -> SyncItem:
        """A detached copy with the public fields (what callers of the queue receive)."""
        other = SyncItem.__new__(SyncItem)
        other.id = self.id
        other.payload = self.payload
        other.priority = self.priority
        other.status = self.status
        other.attempts = self.attempts
        other.max_retries = self.max_retries
        other.correlation_id = self.correlation_id
        other.metadata = dict(self.metadata)
        other.partition_key = self.partition_key
        other.created_at = self.created_at
        other.updated_at = self.updated_at
        other.available_at = self.available_at
        other.lease_expires_at = self.lease_expires_at
        other.lease_id = self.lease_id
        other.expires_at = self.expires_at
        other.last_error = self.last_error
        other._delay_ms = self._delay_ms
        other._ttl_ms = self._ttl_ms
        other._seq = 0
        other._token = 0
        other._where = 0
        other._handed_at = 0
        other._partition = 0
        return other

    def admitted(self, now: int, default_max_retries: int) -> SyncItem:
        """The queue's own copy of this item as pushed at ``now``: a fresh pending item with
        its delay and time-to-live resolved."""
        item = SyncItem.__new__(SyncItem)
        item.id = self.id
        item.payload = self.payload
        item.priority = self.priority
        item.status = ItemStatus.PENDING
        item.attempts = 0
        item.max_retries = default_max_retries if self.max_retries is None else self.max_retries
        item.correlation_id = self.correlation_id
        item.metadata = dict(self.metadata) if self.metadata else {}
        item.partition_key = self.partition_key
        item.created_at = item.updated_at = now
        item.available_at = now + self._delay_ms
        item.lease_expires_at = item.lease_id = item.last_error = None
        item.expires_at = None if self._ttl_ms is None else now + self._ttl_ms
        item._delay_ms = item._seq = item._token = item._where = item._handed_at = 0
        item._ttl_ms = None
        item._partition = 0
        return item

    def to_dict(self) -> dict[str, Any]:
        """The item as the wire shows it (camelCase, ms timestamps)."""
        return {
            "id": self.id,
            "payload": self.payload,
            "priority": _PRIORITY_WIRE[self.priority],
            "status": self.status.value,
            "attempts": self.attempts,
            "maxRetries": self.max_retries,
            "correlationId": self.correlation_id,
            "metadata": self.metadata,
            "partitionKey": self.partition_key,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "availableAt": self.available_at,
            "leaseExpiresAt": self.lease_expires_at,
            "leaseId": self.lease_id,
            "expiresAt": self.expires_at,
            "lastError": self.last_error,
        }

    # Records (journal and snapshots) are positional lists, in this order: about half the
    # size of a keyed object and faster to parse, which is most of the cost of recovery.
    RECORD_FIELDS = (
        "id", "payload", "priority", "status", "attempts", "maxRetries", "correlationId",
        "metadata", "partitionKey", "createdAt", "updatedAt", "availableAt", "leaseExpiresAt",
        "leaseId", "expiresAt", "lastError", "seq", "handedAt",
    )  # fmt: skip

    def to_record(self) -> list[Any]:
        """The item with the engine's bookkeeping, for the journal and snapshots."""
        return [
            self.id, self.payload, int(self.priority), _STATUS_INDEX[self.status],
            self.attempts, self.max_retries, self.correlation_id, self.metadata,
            self.partition_key, self.created_at, self.updated_at, self.available_at,
            self.lease_expires_at, self.lease_id, self.expires_at, self.last_error,
            self._seq, self._handed_at,
        ]  # fmt: skip

    @classmethod
    def from_record(cls, record: list[Any]) -> SyncItem:
        item = cls.__new__(cls)
        (
            item.id, item.payload, priority, status, item.attempts, item.max_retries,
            item.correlation_id, item.metadata, item.partition_key, item.created_at,
            item.updated_at, item.available_at, item.lease_expires_at, item.lease_id,
            item.expires_at, item.last_error, item._seq, item._handed_at,
        ) = record  # fmt: skip
        item.priority = _PRIORITIES[priority]
        item.status = _STATUSES[status]
        item._delay_ms = 0
        item._ttl_ms = None
        item._token = 0
        item._where = 0
        item._partition = 0  # set by the engine, from its partition count
        return item

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SyncItem):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"SyncItem(id={self.id!r}, priority={self.priority.wire}, "
            f"status={self.status.value}, attempts={self.attempts})"
        )
