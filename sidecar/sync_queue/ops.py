"""Operation records: every change to the queue, as data.

The engine changes state only by applying one of these (``QueueState.apply``). Each record
carries everything that is not a function of the state before it (the time, generated ids,
the jittered retry time, which items a pop handed out), so applying the same records to the
same state gives the same state: live, on replay from the journal, and in compaction.

Records are encoded as one JSON object each: ``{"op": <name>, "t": <ms>, ...}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import orjson

from .item import SyncItem

__all__ = [
    "BreakerProbe",
    "Cancel",
    "Complete",
    "Drop",
    "Expire",
    "ExtendLease",
    "Fail",
    "LeaseExpired",
    "Op",
    "Pop",
    "Purge",
    "Push",
    "Requeue",
    "SetPaused",
    "decode_op",
    "encode_op",
]


class Push(NamedTuple):
    t: int
    items: tuple[SyncItem, ...]  # validated, times resolved, ids unique


class Pop(NamedTuple):
    t: int
    ids: tuple[str, ...]  # the items handed out, in order
    lease_ms: int


class Complete(NamedTuple):
    t: int
    id: str


class Fail(NamedTuple):
    t: int
    id: str
    error: str | None
    retry_at: int  # when the item is due again if it has retries left (jitter already drawn)


class LeaseExpired(NamedTuple):
    """A lease ran out (or the process restarted): a failed attempt, not seen by the breaker."""

    t: int
    id: str
    error: str
    retry_at: int


class Cancel(NamedTuple):
    t: int
    id: str


class Expire(NamedTuple):
    """Pending items past their time-to-live become cancelled with ``last_error="expired"``."""

    t: int
    ids: tuple[str, ...]


class Requeue(NamedTuple):
    t: int
    id: str


class ExtendLease(NamedTuple):
    t: int
    id: str
    expires_at: int


class Purge(NamedTuple):
    t: int
    status: str


class Drop(NamedTuple):
    """Retention: finished items older than ``retention_period`` are forgotten."""

    t: int
    ids: tuple[str, ...]


class SetPaused(NamedTuple):
    t: int
    paused: bool


class BreakerProbe(NamedTuple):
    """The breaker's cool-down ended: it goes from open to half-open."""

    t: int


Op = (
    Push
    | Pop
    | Complete
    | Fail
    | LeaseExpired
    | Cancel
    | Expire
    | Requeue
    | ExtendLease
    | Purge
    | Drop
    | SetPaused
    | BreakerProbe
)

_NAMES: dict[type[Any], str] = {
    Push: "push",
    Pop: "pop",
    Complete: "complete",
    Fail: "fail",
    LeaseExpired: "leaseExpired",
    Cancel: "cancel",
    Expire: "expire",
    Requeue: "requeue",
    ExtendLease: "extendLease",
    Purge: "purge",
    Drop: "drop",
    SetPaused: "setPaused",
    BreakerProbe: "breakerProbe",
}
_TYPES = {name: cls for cls, name in _NAMES.items()}


def encode_op(op: Op) -> bytes:
    record: dict[str, Any] = op._asdict()
    if isinstance(op, Push):
        record["items"] = [item.to_record() for item in op.items]
    record["op"] = _NAMES[type(op)]
    return orjson.dumps(record)


def _is_int(v: Any) -> bool:
    return type(v) is int


def _is_ids(v: Any) -> bool:
    return type(v) is list and all(type(x) is str for x in v)


# The JSON type of every field but ``items`` (checked by ``QueueState.check``). Only records
# read back from disk are decoded, so these checks cost the live path nothing.
_FIELD_TYPES: dict[str, Callable[[Any], bool]] = {
    "t": _is_int,
    "id": lambda v: type(v) is str,
    "ids": _is_ids,
    "lease_ms": _is_int,
    "retry_at": _is_int,
    "expires_at": _is_int,
    "error": lambda v: v is None or type(v) is str,
    "status": lambda v: type(v) is str,
    "paused": lambda v: type(v) is bool,
    "items": lambda v: type(v) is list,
}


def decode_op(data: bytes) -> Op:
    """Decode one record; ``ValueError`` (or ``KeyError``/``TypeError``) if it is not one."""
    record = orjson.loads(data)
    if type(record) is not dict:
        raise ValueError("not a JSON object")
    name = record.pop("op", None)
    cls = _TYPES.get(name) if type(name) is str else None
    if cls is None:
        raise ValueError(f"unknown operation {name!r:.40}")
    for key, value in record.items():
        valid = _FIELD_TYPES.get(key)
        if valid is None or not valid(value):
            raise ValueError(f"{name}: field {key!r:.40} is unknown or of the wrong type")
    if cls is Push:
        record["items"] = tuple(SyncItem.from_record(r) for r in record["items"])
    elif "ids" in record:
        record["ids"] = tuple(record["ids"])
    op: Op = cls(**record)
    return op
