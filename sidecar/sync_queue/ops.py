"""Operation records: every change to the queue, as data.

The engine changes state only by applying one of these (``QueueState.apply``). Each record
carries everything that is not a function of the state before it (the time, generated ids,
the jittered retry time, which items a pop handed out), so applying the same records to the
same state gives the same state: live, on replay from the journal, and in compaction.

Records are encoded as one JSON object each: ``{"op": <name>, "t": <ms>, ...}``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from .entry import Entry

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
    "Rebase",
    "Reject",
    "Release",
    "Requeue",
    "SetPaused",
    "decode_op",
    "encode_op",
]


class Push(NamedTuple):
    t: int
    items: tuple[Entry, ...]  # validated, times resolved, ids unique
    # Unique work's "replace": ``(index, id)``: before ``items[index]`` is added, the held or
    # pending item ``id`` is cancelled (lastError "replaced"). One record: atomic.
    replaced: tuple[tuple[int, str], ...] = ()


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
    dead: bool = False  # to the dead letters at once, whatever retries are left
    charge: bool = True  # False: the attempt does not count; back to pending at retry_at


class LeaseExpired(NamedTuple):
    """A lease ran out (or the process restarted): a failed attempt, not seen by the breaker."""

    t: int
    id: str
    error: str
    retry_at: int


class Cancel(NamedTuple):
    t: int
    id: str


class Release(NamedTuple):
    """A held item becomes pending, keeping its place in line."""

    t: int
    id: str


class Reject(NamedTuple):
    """A held item becomes cancelled, with ``error`` as its lastError."""

    t: int
    id: str
    error: str


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


class Rebase(NamedTuple):
    """The queue's clock was re-based onto the wall clock: from now on its time is ``t``.

    ``t`` may be earlier than the time of the record before it (the wall clock had run ahead),
    so this is the one record whose time may go backwards. ``shift`` is added to every stored
    deadline (``availableAt``, lease expiry, TTL expiry, the breaker's opening time), so each
    keeps the time it had left. ``retention_shift`` is time the queue did not measure itself
    (the wall clock set, or the time it was closed): retention does not count it (it is added
    to the state's ``unmeasured``). ``createdAt``/``updatedAt`` later than ``t`` become ``t``.
    With both zero it only records the queue's time (written on close).
    """

    t: int
    shift: int
    retention_shift: int


Op = (
    Push
    | Pop
    | Complete
    | Fail
    | LeaseExpired
    | Cancel
    | Release
    | Reject
    | Expire
    | Requeue
    | ExtendLease
    | Purge
    | Drop
    | SetPaused
    | BreakerProbe
    | Rebase
)

_NAMES: dict[type[Any], str] = {
    Push: "push",
    Pop: "pop",
    Complete: "complete",
    Fail: "fail",
    LeaseExpired: "leaseExpired",
    Cancel: "cancel",
    Release: "release",
    Reject: "reject",
    Expire: "expire",
    Requeue: "requeue",
    ExtendLease: "extendLease",
    Purge: "purge",
    Drop: "drop",
    SetPaused: "setPaused",
    BreakerProbe: "breakerProbe",
    Rebase: "rebase",
}
_TYPES = {name: cls for cls, name in _NAMES.items()}


def encode_op(op: Op) -> bytes:
    if type(op) is Complete:  # one per completed item: the same bytes, built directly
        return orjson.dumps({"t": op.t, "id": op.id, "op": "complete"})
    record: dict[str, Any] = op._asdict()
    if isinstance(op, Push):
        record["items"] = [item.to_record() for item in op.items]
        if not op.replaced:  # fields added later are written only when used: older
            del record["replaced"]  # versions read what does not use them
    elif isinstance(op, Fail):
        if not op.dead:
            del record["dead"]
        if op.charge:
            del record["charge"]
    record["op"] = _NAMES[type(op)]
    return orjson.dumps(record)


def decode_op(data: bytes) -> Op:
    """Decode one record; ``ValueError`` (or ``KeyError``/``TypeError``) if it is not one.

    Only the shape is checked here (an object naming a known operation, with exactly its
    fields; lists where lists belong). The field types and whether the operation can
    follow the state are ``QueueState.check``'s job, beside the state machine.
    """
    record = orjson.loads(data)
    if type(record) is not dict:
        raise ValueError("not a JSON object")
    name = record.pop("op", None)
    cls = _TYPES.get(name) if type(name) is str else None
    if cls is None:
        raise ValueError(f"unknown operation {name!r:.40}")
    if cls is Push:
        items = record.get("items")
        if type(items) is not list:
            raise ValueError("push: items is not a list")
        record["items"] = tuple(map(Entry.from_record, items))
        if "replaced" in record:
            replaced = record["replaced"]
            if type(replaced) is not list or not all(
                type(pair) is list and len(pair) == 2 for pair in replaced
            ):
                raise ValueError("push: replaced is not a list of [index, id] pairs")
            record["replaced"] = tuple(tuple(pair) for pair in replaced)
    elif "ids" in record:
        if type(record["ids"]) is not list:
            raise ValueError(f"{name}: ids is not a list")
        record["ids"] = tuple(record["ids"])
    try:
        op: Op = cls(**record)
    except TypeError as exc:  # a field missing or unknown
        raise ValueError(f"{name}: {exc}") from None
    return op
