"""The item by role, and its two enums.

- ``SyncItem``: what a producer pushes, built with ``SyncItem.new(...).with_*(...)`` (the push
  spec: payload and options; the queue stamps the rest when it admits it).
- ``Item``: what ``get``, ``pop`` and ``list`` return: a read-only snapshot of one item, never
  shared with the queue (its metadata is a copy), so a caller cannot corrupt the queue.
- The engine's own mutable entry (``entry.Entry``, private to the engine).

``Item``'s declaration is the one field table: its fields, in order, are the wire's fields
(``docs/protocol.md`` §3; the wire name is the camelCase of the attribute) and the journal's
and snapshots' positional records (followed by the entry's bookkeeping). ``FIELDS`` is derived
from it, and every codec (``to_dict``, the entry's records and views) is generated from
``FIELDS`` once, at import, as straight-line code: a loop over the table per item would cost
recovery and every reply its speed.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import Callable
from enum import Enum, IntEnum
from typing import Any, NamedTuple

from .durations import Duration, to_ms
from .errors import InvalidParams

__all__ = [
    "FIELDS",
    "UNIQUE_POLICIES",
    "Field",
    "Item",
    "ItemStatus",
    "Priority",
    "SyncItem",
    "new_id",
]

MAX_ID_LENGTH = 128
MAX_DESTINATION_LENGTH = 255
MAX_UNIQUE_KEY_LENGTH = 1024
UNIQUE_POLICIES = ("keep", "replace", "append")
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
    # Awaiting approval: never handed out until released (last: records store the index).
    HELD = "held"

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


class Item(NamedTuple):
    """One queue item as the queue showed it when it was read: ``get``, ``pop`` and ``list``
    return these. Read-only; timestamps are ms since the epoch. The field order here is the
    wire's and the records' (see the module docstring)."""

    id: str
    payload: Any
    priority: Priority
    status: ItemStatus
    attempts: int
    max_retries: int | None  # the queue's default was resolved when it was pushed
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
    # Issue 12 (added last: records of older versions end before them, see entry.py).
    destination: str | None  # the origin an outbox dispatcher sends it to; None: the app's
    unique_key: str | None  # the unique-work key it was pushed with

    def to_dict(self) -> dict[str, Any]:
        """The item as the wire shows it (camelCase, ms timestamps)."""
        return item_to_dict(self)

    def __repr__(self) -> str:
        return (
            f"Item(id={self.id!r}, priority={self.priority.wire}, "
            f"status={self.status.value}, attempts={self.attempts})"
        )


class Field(NamedTuple):
    attr: str  # the Python attribute
    name: str  # on the wire and in records (camelCase)
    kind: str  # "plain"; "priority"/"status": an enum; "mapping": copied into a view


def _camel(attr: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), attr.lstrip("_"))


_KINDS = {"priority": "priority", "status": "status", "metadata": "mapping"}
FIELDS: tuple[Field, ...] = tuple(
    Field(attr, _camel(attr), _KINDS.get(attr, "plain")) for attr in Item._fields
)
# How each kind of field is written: on the wire, in a record, and read back from a record.
# (a status by dict lookup: an enum's ``.value`` is a descriptor call, once per item shown)
_TO_WIRE = {"priority": "_PRIORITY_WIRE[{}]", "status": "_STATUS_WIRE[{}]"}
_TO_RECORD = {"priority": "int({})", "status": "_STATUS_INDEX[{}]"}
_FROM_RECORD = {"priority": "_PRIORITIES[{}]", "status": "_STATUSES[{}]"}
CODEC_NAMES: dict[str, Any] = {
    "_PRIORITY_WIRE": _PRIORITY_WIRE,
    "_PRIORITIES": _PRIORITIES,
    "_STATUS_INDEX": _STATUS_INDEX,
    "_STATUS_WIRE": {s: s.value for s in ItemStatus},
    "_STATUSES": _STATUSES,
}


def compile_codec(name: str, args: str, lines: list[str], names: dict[str, Any]) -> Any:
    """Generate one function from lines of source (see the module docstring)."""
    source = f"def {name}({args}):\n" + "".join(f"    {line}\n" for line in lines)
    namespace = {**CODEC_NAMES, **names}
    exec(compile(source, f"<sync_queue codec {name}>", "exec"), namespace)
    function: Callable[..., Any] = namespace[name]
    return function


def to_wire_source(var: str, fields: tuple[Field, ...]) -> str:
    """A dict display of ``fields`` of the object ``var`` in their wire form."""
    parts = (f'"{f.name}": {_TO_WIRE.get(f.kind, "{}").format(f"{var}.{f.attr}")}' for f in fields)
    return "{" + ", ".join(parts) + "}"


def to_record_source(var: str, fields: tuple[Field, ...]) -> str:
    parts = (_TO_RECORD.get(f.kind, "{}").format(f"{var}.{f.attr}") for f in fields)
    return "[" + ", ".join(parts) + "]"


def from_record_lines(var: str, record: str, fields: tuple[Field, ...]) -> list[str]:
    """Unpack ``record`` into ``var``'s attributes (a wrong length raises ValueError)."""
    lines = [f"({', '.join(f'{var}.{f.attr}' for f in fields)},) = {record}"]
    for f in fields:
        if f.kind in _FROM_RECORD:
            lines.append(f"{var}.{f.attr} = {_FROM_RECORD[f.kind].format(f'{var}.{f.attr}')}")
    return lines


item_to_dict: Callable[[Any], dict[str, Any]] = compile_codec(
    "item_to_dict", "i", [f"return {to_wire_source('i', FIELDS)}"], {}
)


class SyncItem:
    """What a producer pushes: build it with :meth:`new` and the ``with_*`` methods.

    ``max_retries`` of ``None`` means "the queue's default" (``QueueConfig.max_retries``); the
    delay and time-to-live (ms; :meth:`with_delay` and :meth:`with_ttl` take a ``timedelta``
    or seconds) count from the moment the item is pushed.
    """

    __slots__ = (
        "correlation_id",
        "delay_ms",
        "destination",
        "hold",
        "id",
        "max_retries",
        "metadata",
        "partition_key",
        "payload",
        "priority",
        "ttl_ms",
        "unique",
    )

    def __init__(
        self, payload: Any, priority: Priority | str = Priority.NORMAL, *, id: str | None = None
    ) -> None:
        self.id: str = new_id() if id is None else check_id(id)
        self.payload: Any = payload
        self.priority: Priority = Priority.parse(priority)
        self.max_retries: int | None = None
        self.correlation_id: str | None = None
        self.metadata: dict[str, str] = {}
        self.partition_key: str | None = None
        self.delay_ms = 0
        self.ttl_ms: int | None = None
        self.destination: str | None = None
        self.hold = False
        self.unique: tuple[str, str] | None = None  # (key, policy)

    @classmethod
    def new(cls, payload: Any, priority: Priority | str = Priority.NORMAL) -> SyncItem:
        return cls(payload, priority)

    # -- builders (they change this spec and return it, like the seed's by-value builders) --

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
        self.delay_ms = to_ms(delay, "delay")
        return self

    def with_ttl(self, ttl: Duration) -> SyncItem:
        self.ttl_ms = to_ms(ttl, "ttl")
        return self

    def with_destination(self, destination: str | None) -> SyncItem:
        """Only pops that ask for destinations (an outbox dispatcher) hand it out."""
        if destination is not None and (
            not isinstance(destination, str) or not 1 <= len(destination) <= MAX_DESTINATION_LENGTH
        ):
            raise InvalidParams(
                f"destination: expected a string of 1 to {MAX_DESTINATION_LENGTH} characters "
                f"or None, got {destination!r:.80}",
                field="destination",
            )
        self.destination = destination
        return self

    def with_hold(self, hold: bool = True) -> SyncItem:
        """Pushed ``held``: never handed out until ``release`` (``reject`` cancels it)."""
        if not isinstance(hold, bool):
            raise InvalidParams(f"hold: expected a boolean, got {hold!r:.40}", field="hold")
        self.hold = hold
        return self

    def with_unique(self, key: str, policy: str = "keep") -> SyncItem:
        """Unique work: with a live item under ``key``, ``keep`` adds nothing, ``replace``
        cancels a held/pending one, ``append`` queues behind it (docs/protocol.md §3)."""
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_UNIQUE_KEY_LENGTH:
            raise InvalidParams(
                f"unique.key: expected a string of 1 to {MAX_UNIQUE_KEY_LENGTH} characters, "
                f"got {key!r:.80}",
                field="unique",
            )
        if policy not in UNIQUE_POLICIES:
            raise InvalidParams(
                f"unique.policy: expected one of {', '.join(UNIQUE_POLICIES)}, got {policy!r:.40}",
                field="unique",
            )
        self.unique = (key, policy)
        return self

    def __repr__(self) -> str:
        return f"SyncItem(id={self.id!r}, priority={self.priority.wire})"
