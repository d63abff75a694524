"""Legality: the one table of legal transitions, and the checks of records read back from disk.

``FROM_STATUS`` says which statuses an item may have for each operation that names it. The
core (``core.py``) refuses requests against it before it builds a record, adding only what a
request alone knows (lease ids, capacity, deduplication); :func:`check_op` refuses records
read back from disk against it (journal replay, compaction), with the rest of the state
machine's own rules: field types and ranges (:func:`check_item` for pushed items).

Why replay checks: a record's checksum says it is what was written, not that it makes sense.
Without this, an impossible record (``cancel`` of an unknown id, ``complete`` of a pending
item, a duplicate push) crashes replay with a ``KeyError`` or is applied silently into a
state the live queue could never reach. The live path does not pay for it: the core checked
the request before it made the record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .entry import BLOCKED, Entry
from .item import MAX_DESTINATION_LENGTH, MAX_ID_LENGTH, MAX_UNIQUE_KEY_LENGTH, ItemStatus
from .ops import (
    BreakerProbe,
    Cancel,
    Complete,
    Drop,
    Expire,
    ExtendLease,
    Fail,
    LeaseExpired,
    Op,
    Pop,
    Purge,
    Push,
    Rebase,
    Reject,
    Release,
    Requeue,
    SetPaused,
)

if TYPE_CHECKING:
    from .state import QueueState

__all__ = [
    "FINISHED",
    "FROM_STATUS",
    "LIVE",
    "MAX_CLOCK_MS",
    "MAX_TIME_MS",
    "RECALLABLE",
    "check_item",
    "check_op",
    "check_time",
]

PENDING = ItemStatus.PENDING
PROCESSING = ItemStatus.PROCESSING
HELD = ItemStatus.HELD

# Limits of the times in records read back from disk (ms since the epoch). A clock reading
# (a record's ``t``, an item's createdAt/updatedAt) is at most the end of year 9999, the
# last time any clock or datetime shows. A time computed from one (a due time, a lease or
# time-to-live end) may be further out, up to what the journal's JSON integers hold: the
# live queue accepts long delays, and replay must never refuse what it wrote.
MAX_CLOCK_MS = 253_402_300_799_999
MAX_TIME_MS = 2**64 - 1

FINISHED = frozenset({ItemStatus.COMPLETED, ItemStatus.FAILED, ItemStatus.CANCELLED})
LIVE = frozenset({HELD, PENDING, PROCESSING})
# What unique work's "replace" may recall (a processing item is out of reach).
RECALLABLE = frozenset({HELD, PENDING})

# The one table of legal transitions (see the module docstring).
FROM_STATUS: dict[type[Any], frozenset[ItemStatus]] = {
    Pop: frozenset({PENDING}),
    Complete: frozenset({PROCESSING}),
    Fail: frozenset({PROCESSING}),
    LeaseExpired: frozenset({PROCESSING}),
    ExtendLease: frozenset({PROCESSING}),
    Cancel: LIVE,
    Release: frozenset({HELD}),
    Reject: frozenset({HELD}),
    Push: RECALLABLE,  # the items a push's "replaced" cancels
    Expire: RECALLABLE,  # a time-to-live counts while an item waits, held or pending
    Requeue: frozenset({ItemStatus.FAILED, ItemStatus.CANCELLED}),
    Purge: FINISHED,
    Drop: FINISHED,
}


def check_time(name: str, value: object, limit: int = MAX_TIME_MS) -> None:
    if type(value) is not int or not 0 <= value <= limit:
        raise ValueError(f"{name} {value!r:.40} is out of range (0..{limit} ms)")


def _optional(name: str, value: object, kind: type) -> None:
    if value is not None and type(value) is not kind:
        raise ValueError(f"{name}: expected {kind.__name__} or null, got {value!r:.40}")


def check_item(item: Entry) -> None:
    """Raise ``ValueError`` if an item record read from disk cannot be a queue item.

    One expression for the common (valid) case: replaying a journal of a million pushes
    runs this a million times. Only a failure goes through :func:`_explain_item`.
    """
    i = item
    s = i.status
    if not (
        type(i.id) is str
        and 0 < len(i.id) <= MAX_ID_LENGTH
        and type(i.created_at) is int
        and 0 <= i.created_at <= MAX_CLOCK_MS
        and type(i.updated_at) is int
        and 0 <= i.updated_at <= MAX_CLOCK_MS
        and type(i.available_at) is int
        and 0 <= i.available_at <= MAX_TIME_MS
        and (
            i.expires_at is None or (type(i.expires_at) is int and 0 <= i.expires_at <= MAX_TIME_MS)
        )
        and type(i.attempts) is int
        and i.attempts >= 0
        and (i.max_retries is None or (type(i.max_retries) is int and i.max_retries >= 0))
        and (i.correlation_id is None or type(i.correlation_id) is str)
        and (i.partition_key is None or type(i.partition_key) is str)
        and (i.last_error is None or type(i.last_error) is str)
        and (
            i.destination is None
            or (type(i.destination) is str and 0 < len(i.destination) <= MAX_DESTINATION_LENGTH)
        )
        and (
            i.unique_key is None
            or (type(i.unique_key) is str and 0 < len(i.unique_key) <= MAX_UNIQUE_KEY_LENGTH)
        )
        and type(i.metadata) is dict
        and type(i._seq) is int
        and type(i._handed_at) is int
        and (
            (s is not PROCESSING and i.lease_id is None and i.lease_expires_at is None)
            or (
                s is PROCESSING
                and type(i.lease_id) is str
                and type(i.lease_expires_at) is int
                and 0 <= i.lease_expires_at <= MAX_TIME_MS
            )
        )
    ):
        _explain_item(item)
        raise ValueError(f"item {item.id!r:.140} is not a valid item")  # pragma: no cover


def _explain_item(item: Entry) -> None:
    """Raise the ``ValueError`` that says what is wrong with ``item``."""
    if type(item.id) is not str or not 1 <= len(item.id) <= MAX_ID_LENGTH:
        raise ValueError(f"item id {item.id!r:.140} is not a string of 1..{MAX_ID_LENGTH}")
    where = f"item {item.id!r:.140}"
    check_time(f"{where}: created_at", item.created_at, MAX_CLOCK_MS)
    check_time(f"{where}: updated_at", item.updated_at, MAX_CLOCK_MS)
    check_time(f"{where}: available_at", item.available_at)
    for name in ("lease_expires_at", "expires_at"):
        if getattr(item, name) is not None:
            check_time(f"{where}: {name}", getattr(item, name))
    if type(item.attempts) is not int or item.attempts < 0:
        raise ValueError(f"{where}: attempts {item.attempts!r:.40}")
    if item.max_retries is not None and (type(item.max_retries) is not int or item.max_retries < 0):
        raise ValueError(f"{where}: maxRetries {item.max_retries!r:.40}")
    for name in (
        "correlation_id",
        "partition_key",
        "lease_id",
        "last_error",
        "destination",
        "unique_key",
    ):
        _optional(f"{where}: {name}", getattr(item, name), str)
    for name, limit in (
        ("destination", MAX_DESTINATION_LENGTH),
        ("unique_key", MAX_UNIQUE_KEY_LENGTH),
    ):
        value = getattr(item, name)
        if value is not None and not 0 < len(value) <= limit:
            raise ValueError(f"{where}: {name} is not a string of 1..{limit}")
    if type(item.metadata) is not dict:
        raise ValueError(f"{where}: metadata is not an object")
    if type(item._seq) is not int or type(item._handed_at) is not int:
        raise ValueError(f"{where}: bookkeeping fields are not integers")
    processing = item.status is PROCESSING
    if processing != (item.lease_expires_at is not None) or processing != (
        item.lease_id is not None
    ):
        raise ValueError(f"{where}: {item.status.value} with a lease that does not match")


def check_op(state: QueueState, op: Op) -> None:
    """Raise ``ValueError`` naming the problem if ``op`` cannot follow ``state``."""
    t = op.t
    if type(t) is not int or not 0 <= t <= MAX_CLOCK_MS:
        check_time("t", t, MAX_CLOCK_MS)
    _CHECKERS[type(op)](state, op)


def _existing(state: QueueState, item_id: str, allowed: Iterable[ItemStatus], what: str) -> Entry:
    item = state.items.get(item_id) if type(item_id) is str else None
    if item is None:
        raise ValueError(f"{what} of unknown item {item_id!r:.140}")
    if item.status not in allowed:
        raise ValueError(f"{what} of item {item_id!r:.140}, which is {item.status.value}")
    return item


def _check_push(state: QueueState, op: Push) -> None:
    items = state.items
    seen: set[str] = set()
    replaced = _check_replaced(state, op)
    for n, item in enumerate(op.items):
        check_item(item)
        if item.status is not PENDING and item.status is not HELD:
            raise ValueError(f"push of item {item.id!r:.140} that is not a new pending item")
        old = items.get(item.id)
        if (old is not None and old.status not in FINISHED) or item.id in seen:
            raise ValueError(f"duplicate push of item {item.id!r:.140}")
        for target in replaced.get(n, ()):
            if target not in seen:  # an item of this push is checked as it is pushed
                _existing(state, target, FROM_STATUS[Push], "replace")
        seen.add(item.id)


def _check_replaced(state: QueueState, op: Push) -> dict[int, list[str]]:
    """``op.replaced`` by item index; each target named once, each index an item's."""
    by_index: dict[int, list[str]] = {}
    for pair in op.replaced:
        index, target = pair
        if type(index) is not int or not 0 <= index < len(op.items) or type(target) is not str:
            raise ValueError(f"push: replaced entry {pair!r:.80} names no item")
        by_index.setdefault(index, []).append(target)
    _distinct(tuple(target for _, target in op.replaced), "replace")
    return by_index


def _check_pop(state: QueueState, op: Pop) -> None:
    check_time("lease_ms", op.lease_ms)
    if op.lease_ms < 1:
        raise ValueError("lease_ms 0 is not a lease")
    check_time("lease end", op.t + op.lease_ms)
    for item_id in _distinct(op.ids, "pop"):
        item = _existing(state, item_id, FROM_STATUS[Pop], "pop")
        if item._where == BLOCKED:
            raise ValueError(f"pop of item {item_id!r:.140}, which waits behind its line")


def _check_complete(state: QueueState, op: Complete) -> None:
    _existing(state, op.id, FROM_STATUS[Complete], "complete")


def _check_fail(state: QueueState, op: Fail | LeaseExpired) -> None:
    check_time("retry_at", op.retry_at)
    if not (op.error is None or type(op.error) is str):
        raise ValueError(f"error {op.error!r:.40} is not a string")
    if isinstance(op, Fail) and (
        type(op.dead) is not bool or type(op.charge) is not bool or (op.dead and not op.charge)
    ):
        raise ValueError(f"fail: dead {op.dead!r:.20} / charge {op.charge!r:.20} do not agree")
    _existing(state, op.id, FROM_STATUS[type(op)], "fail")


def _check_cancel(state: QueueState, op: Cancel) -> None:
    _existing(state, op.id, FROM_STATUS[Cancel], "cancel")


def _check_release(state: QueueState, op: Release) -> None:
    _existing(state, op.id, FROM_STATUS[Release], "release")


def _check_reject(state: QueueState, op: Reject) -> None:
    if type(op.error) is not str:
        raise ValueError(f"reject: error {op.error!r:.40} is not a string")
    _existing(state, op.id, FROM_STATUS[Reject], "reject")


def _distinct(ids: tuple[str, ...], what: str) -> tuple[str, ...]:
    if not all(type(i) is str for i in ids):
        raise ValueError(f"{what}: an id is not a string")
    if len(set(ids)) != len(ids):
        raise ValueError(f"{what} names the same item twice")
    return ids


def _check_each(
    state: QueueState, ids: tuple[str, ...], allowed: Iterable[ItemStatus], what: str
) -> None:
    for item_id in _distinct(ids, what):
        _existing(state, item_id, allowed, what)


def _check_expire(state: QueueState, op: Expire) -> None:
    _check_each(state, op.ids, FROM_STATUS[Expire], "expire")


def _check_requeue(state: QueueState, op: Requeue) -> None:
    _existing(state, op.id, FROM_STATUS[Requeue], "requeue")


def _check_extend_lease(state: QueueState, op: ExtendLease) -> None:
    check_time("expires_at", op.expires_at)
    _existing(state, op.id, FROM_STATUS[ExtendLease], "extendLease")


def _check_purge(state: QueueState, op: Purge) -> None:
    if type(op.status) is not str or op.status not in {s.value for s in FROM_STATUS[Purge]}:
        raise ValueError(f"purge of status {op.status!r:.40}")


def _check_drop(state: QueueState, op: Drop) -> None:
    _check_each(state, op.ids, FROM_STATUS[Drop], "drop")


def _check_set_paused(state: QueueState, op: SetPaused) -> None:
    if type(op.paused) is not bool:
        raise ValueError(f"paused {op.paused!r:.40} is not a boolean")


def _check_nothing(state: QueueState, op: Op) -> None:
    pass


def _check_rebase(state: QueueState, op: Rebase) -> None:
    # The one record whose time may go back (``check`` only bounds ``t``); its shifts
    # may be negative, never larger than the whole range of clock readings.
    for name in ("shift", "retention_shift"):
        value = getattr(op, name)
        if type(value) is not int or abs(value) > MAX_CLOCK_MS:
            raise ValueError(f"rebase {name} {value!r:.40} is out of range")


_CHECKERS: dict[type[Any], Callable[[QueueState, Any], None]] = {
    Push: _check_push,
    Pop: _check_pop,
    Complete: _check_complete,
    Fail: _check_fail,
    LeaseExpired: _check_fail,
    Cancel: _check_cancel,
    Release: _check_release,
    Reject: _check_reject,
    Expire: _check_expire,
    Requeue: _check_requeue,
    ExtendLease: _check_extend_lease,
    Purge: _check_purge,
    Drop: _check_drop,
    SetPaused: _check_set_paused,
    BreakerProbe: _check_nothing,
    Rebase: _check_rebase,
}
