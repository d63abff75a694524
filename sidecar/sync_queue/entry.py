"""``Entry``: the engine's own item, private to it (``state.py`` writes it, nobody else).

It holds ``Item``'s fields, mutable, plus the state machine's bookkeeping: the item's push
order (``_seq``), its current heap token and index (``_token``, ``_where``), its partition, and
``_handed_at`` (when it was handed out; once finished, its measured finish time). Its codecs
(the journal's and snapshots' positional record, the public view) are generated from the one
field table, ``item.FIELDS`` (see ``item.py``), with the two bookkeeping fields records keep.
"""

from __future__ import annotations

from typing import Any

from .item import (
    FIELDS,
    Field,
    Item,
    ItemStatus,
    Priority,
    SyncItem,
    compile_codec,
    from_record_lines,
    item_to_dict,
    to_record_source,
)

__all__ = ["BLOCKED", "DELAYED", "NONE", "READY", "RECORD_FIELDS", "Entry"]

# Where a pending entry is scheduled (``Entry._where``, state.py's indexes): nowhere (not
# pending, or just picked), the ready heap, the delayed heap, or behind the head of its
# partition key's line.
NONE, READY, DELAYED, BLOCKED = 0, 1, 2, 3

# A record: the public fields, then the bookkeeping a replay cannot recompute. Positional
# lists, about half the size of a keyed object and faster to parse (most of recovery's cost).
# Fields added later come after the bookkeeping, so a record written before them (shorter
# by ``ADDED_LATER``) still reads: ``from_record`` pads it with their default, None. They
# are written only when one is set (``to_record`` below).
ADDED_LATER = ("destination", "unique_key")
_BASE = tuple(f for f in FIELDS if f.attr not in ADDED_LATER)
RECORD_FIELDS: tuple[Field, ...] = (
    *_BASE,
    Field("_seq", "seq", "plain"),
    Field("_handed_at", "handedAt", "plain"),
    *(f for f in FIELDS if f.attr in ADDED_LATER),
)
OLD_RECORD_LENGTH = len(RECORD_FIELDS) - len(ADDED_LATER)


_HELD, _PENDING = ItemStatus.HELD, ItemStatus.PENDING


class Entry:
    """See the module docstring. Build one with :meth:`admit` or :meth:`from_record`."""

    # The public fields (asserted below to be Item's, in any order) and the bookkeeping.
    __slots__ = (
        "_handed_at",
        "_partition",
        "_seq",
        "_token",
        "_where",
        "attempts",
        "available_at",
        "correlation_id",
        "created_at",
        "destination",
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
        "unique_key",
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
    destination: str | None
    unique_key: str | None
    _seq: int  # push order (requeue moves it to the back)
    _token: int  # the current heap entry's token (state.py: lazy deletion)
    _where: int  # where a pending item is scheduled (state.py: NONE, READY, ...)
    _handed_at: int
    _partition: int

    @classmethod
    def admit(cls, spec: SyncItem, now: int, default_max_retries: int) -> Entry:
        """The queue's own entry for ``spec`` pushed at ``now``: a fresh pending item with
        its delay and time-to-live resolved."""
        e = cls.__new__(cls)
        e.id = spec.id
        e.payload = spec.payload
        e.priority = spec.priority
        e.status = _HELD if spec.hold else _PENDING
        e.attempts = 0
        e.max_retries = default_max_retries if spec.max_retries is None else spec.max_retries
        e.correlation_id = spec.correlation_id
        e.metadata = dict(spec.metadata) if spec.metadata else {}
        e.partition_key = spec.partition_key
        e.created_at = e.updated_at = now
        e.available_at = now + spec.delay_ms
        e.lease_expires_at = e.lease_id = e.last_error = None
        e.expires_at = None if spec.ttl_ms is None else now + spec.ttl_ms
        e.destination = spec.destination
        e.unique_key = None if spec.unique is None else spec.unique[0]
        e._seq = e._token = e._where = e._handed_at = e._partition = 0
        return e

    # Generated below from the field table.
    def to_record(self) -> list[Any]:
        """The entry as a journal or snapshot record."""
        raise NotImplementedError

    @classmethod
    def from_record(cls, record: list[Any]) -> Entry:
        """An entry from ``to_record``'s list; its partition is set by the engine."""
        raise NotImplementedError

    def view(self) -> Item:
        """A read-only snapshot for a caller (its metadata a copy)."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """The entry as the wire shows an item (what ``view().to_dict()`` gives)."""
        return item_to_dict(self)

    def __repr__(self) -> str:
        return f"Entry(id={self.id!r}, status={self.status.value}, seq={self._seq})"


assert {f.attr for f in RECORD_FIELDS} <= set(Entry.__slots__)
assert {f.attr for f in FIELDS} == set(Entry.__slots__) - {"_partition", "_token", "_where"} - {
    "_seq",
    "_handed_at",
}, "Entry holds exactly Item's fields and its bookkeeping"


def _view_source(var: str) -> str:
    parts = (f"dict({var}.{f.attr})" if f.kind == "mapping" else f"{var}.{f.attr}" for f in FIELDS)
    return f"_new_tuple(Item, ({', '.join(parts)}))"


# An entry that uses none of the fields added later is written as before them: an older
# version reads such a record, and the journal does not grow by their nulls.
Entry.to_record = compile_codec(  # type: ignore[method-assign]
    "to_record",
    "e",
    [
        f"if {' and '.join(f'e.{attr} is None' for attr in ADDED_LATER)}:",
        f"    return {to_record_source('e', RECORD_FIELDS[:OLD_RECORD_LENGTH])}",
        f"return {to_record_source('e', RECORD_FIELDS)}",
    ],
    {},
)
_unpack_old = from_record_lines("e", "record", RECORD_FIELDS[:OLD_RECORD_LENGTH])[:1]
Entry.from_record = classmethod(  # type: ignore[method-assign, assignment]
    compile_codec(
        "from_record",
        "cls, record",
        [
            "e = _new(cls)",
            # The common record uses no field added later: unpacked without a copy.
            "if len(record) == _OLD:",
            *(f"    {line}" for line in _unpack_old),
            f"    {' = '.join(f'e.{attr}' for attr in ADDED_LATER)} = None",
            "else:",
            *(f"    {line}" for line in from_record_lines("e", "record", RECORD_FIELDS)[:1]),
            *from_record_lines("e", "record", RECORD_FIELDS)[1:],
            "e._token = e._where = e._partition = 0",
            "return e",
        ],
        {"_new": object.__new__, "_OLD": OLD_RECORD_LENGTH},
    )
)
Entry.view = compile_codec(  # type: ignore[method-assign]
    "view", "e", [f"return {_view_source('e')}"], {"_new_tuple": tuple.__new__, "Item": Item}
)
