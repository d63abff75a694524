"""The wire's shapes (docs/protocol.md §3-§4): each method's params, and conversions between
JSON objects and the engine's values (a push object to a ``SyncItem``, metrics to ``stats``).

Validation of params lives here (names, types, ranges; every message names the field); the
core validates what depends on its state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .durations import MAX_DURATION_MS
from .engine import Health
from .errors import InvalidParams
from .item import (
    MAX_DESTINATION_LENGTH,
    MAX_ID_LENGTH,
    MAX_RETRIES_LIMIT,
    MAX_UNIQUE_KEY_LENGTH,
    UNIQUE_POLICIES,
    ItemStatus,
    Priority,
    SyncItem,
)
from .metrics import Metrics
from .protocol import ANY, Param
from .protocol import check_params as check

__all__ = [
    "PARAMS",
    "complete_refs_from_params",
    "except_from_params",
    "health_to_wire",
    "item_from_params",
    "stats_to_wire",
]

_PRIORITIES = tuple(p.wire for p in Priority)
_STATUSES = tuple(s.value for s in ItemStatus)
_ID = Param(str, required=True)
# Every ``…Ms`` duration: at most MAX_DURATION_MS (100 years), so a huge value is refused
# here, naming its field, instead of failing later where the journal stores it.
_MS = MAX_DURATION_MS

PUSH = {
    "payload": Param(ANY, required=True),
    "id": Param(str),
    "priority": Param(str, choices=_PRIORITIES),
    "maxRetries": Param(int, minimum=0, maximum=MAX_RETRIES_LIMIT),
    "correlationId": Param(str, nullable=True),
    "metadata": Param(dict),
    "partitionKey": Param(str, nullable=True),
    "delayMs": Param(int, minimum=0, maximum=_MS),
    "ttlMs": Param(int, minimum=1, maximum=_MS),
    "destination": Param(str, nullable=True),
    "hold": Param(bool),
    "unique": Param(dict),
}
UNIQUE = {
    "key": Param(str, required=True),
    "policy": Param(str, required=True, choices=UNIQUE_POLICIES),
}
POP = {
    "timeoutMs": Param(int, minimum=0, maximum=_MS),
    "leaseMs": Param(int, minimum=1, maximum=_MS),
    "partition": Param(int, minimum=0),
    "destinations": Param(dict),
}
DESTINATIONS = {"except": Param(list, required=True)}
NONE: dict[str, Param] = {}

# Each method's params, checked before its handler runs (None: push's object is checked by
# ``item_from_params``, which also names the item of a batch).
PARAMS: Mapping[str, Mapping[str, Param] | None] = {
    "ping": NONE,
    "push": None,
    "pushBatch": {"items": Param(list, required=True)},
    "pop": POP,
    "popBatch": {**POP, "max": Param(int, minimum=1)},
    "complete": {"id": _ID, "leaseId": Param(str)},
    "completeBatch": {"items": Param(list, required=True)},
    "fail": {
        "id": _ID,
        "error": Param(str, nullable=True),
        "leaseId": Param(str),
        "dead": Param(bool),
        "retryAfterMs": Param(int, minimum=0, maximum=_MS),
        "charge": Param(bool),
    },
    "cancel": {"id": _ID},
    "release": {"id": _ID},
    "reject": {"id": _ID, "reason": Param(str, nullable=True)},
    "requeue": {"id": _ID},
    "extendLease": {
        "id": _ID,
        "leaseMs": Param(int, required=True, minimum=1, maximum=_MS),
        "leaseId": Param(str),
    },
    "get": {"id": _ID},
    "list": {
        "status": Param(str, choices=_STATUSES),
        "priority": Param(str, choices=_PRIORITIES),
        "limit": Param(int, minimum=1),
        "after": Param(str, nullable=True),
    },
    "purge": {"status": Param(str, required=True, choices=_STATUSES)},
    "stats": NONE,
    "health": NONE,
    "pause": NONE,
    "resume": NONE,
    "flush": NONE,
}


def item_from_params(where: str, params: Any, index: int | None = None) -> SyncItem:
    """A ``SyncItem`` from a push object (docs/protocol.md §3), or ``InvalidParams`` naming the
    field (``pushBatch: items[3]: "priority" ...``)."""
    if not isinstance(params, dict):
        raise InvalidParams(f"{where}: expected an object", field="items", index=index)
    check(where, params, PUSH)
    item_id = params.get("id")  # a str if present: checked above
    if item_id is not None and not 1 <= len(item_id) <= MAX_ID_LENGTH:
        raise InvalidParams(f'{where}: "id" must have 1 to {MAX_ID_LENGTH} characters', field="id")
    # Given to the constructor: an item generates an id only when the push names none.
    item = SyncItem(params["payload"], params.get("priority", "normal"), id=item_id)
    if "maxRetries" in params:
        item.max_retries = params["maxRetries"]
    item.correlation_id = params.get("correlationId")
    metadata = params.get("metadata")
    if metadata:
        for key, value in metadata.items():
            if not isinstance(value, str):
                raise InvalidParams(
                    f'{where}: "metadata" values must be strings (key "{key}" is not)',
                    field="metadata",
                )
        item.metadata = dict(metadata)
    item.partition_key = params.get("partitionKey")
    if "delayMs" in params:
        item.delay_ms = params["delayMs"]
    if "ttlMs" in params:
        item.ttl_ms = params["ttlMs"]
    destination = params.get("destination")
    if destination is not None:
        if not 1 <= len(destination) <= MAX_DESTINATION_LENGTH:
            raise InvalidParams(
                f'{where}: "destination" must have 1 to {MAX_DESTINATION_LENGTH} characters',
                field="destination",
            )
        item.destination = destination
    item.hold = params.get("hold", False)
    if "unique" in params:
        unique = params["unique"]
        check(f"{where}: unique", unique, UNIQUE)
        if not 1 <= len(unique["key"]) <= MAX_UNIQUE_KEY_LENGTH:
            raise InvalidParams(
                f'{where}: unique: "key" must have 1 to {MAX_UNIQUE_KEY_LENGTH} characters',
                field="unique",
            )
        item.unique = (unique["key"], unique["policy"])
    return item


COMPLETE_REF = {"id": _ID, "leaseId": Param(str)}
MAX_COMPLETE_BATCH = 1000


def complete_refs_from_params(params: dict[str, Any]) -> list[tuple[str, str | None]]:
    """``completeBatch``'s members as ``(id, leaseId)``; a bad member is ``InvalidParams``
    naming its index (nothing is completed)."""
    items = params["items"]
    if len(items) > MAX_COMPLETE_BATCH:
        raise InvalidParams(
            f'completeBatch: "items" holds at most {MAX_COMPLETE_BATCH} members', field="items"
        )
    refs: list[tuple[str, str | None]] = []
    for n, member in enumerate(items):
        # The plugin's member, {"id", "leaseId"} both strings, needs no more checking than
        # this: the general check below (and its message) is for anything else.
        if (
            type(member) is dict
            and len(member) == 2
            and type(lease_id := member.get("leaseId")) is str
            and type(item_id := member.get("id")) is str
        ):
            refs.append((item_id, lease_id))
            continue
        where = f"completeBatch: items[{n}]"
        if not isinstance(member, dict):
            raise InvalidParams(f"{where}: expected an object", field="items", index=n)
        check(where, member, COMPLETE_REF)
        refs.append((member["id"], member.get("leaseId")))
    return refs


def except_from_params(method: str, params: dict[str, Any]) -> frozenset[str] | None:
    """A pop's ``destinations`` (``{"except": [origin, ...]}``) as the origins it skips;
    None when absent (a plain pop)."""
    destinations = params.get("destinations")
    if destinations is None:
        return None
    check(f"{method}: destinations", destinations, DESTINATIONS)
    origins = destinations["except"]
    if not all(isinstance(origin, str) for origin in origins):
        raise InvalidParams(
            f'{method}: destinations: "except" must be a list of strings', field="destinations"
        )
    if "partition" in params:
        raise InvalidParams(
            f'{method}: "partition" cannot be combined with "destinations"', field="partition"
        )
    return frozenset(origins)


def health_to_wire(h: Health) -> dict[str, Any]:
    result: dict[str, Any] = {"healthy": h.healthy, "breaker": h.breaker, "paused": h.paused}
    if h.reason is not None:
        result["reason"] = h.reason
    return result


def stats_to_wire(m: Metrics, destinations: dict[str, Any]) -> dict[str, Any]:
    return {
        "totalEnqueued": m.total_enqueued,
        "totalDequeued": m.total_dequeued,
        "totalCompleted": m.total_completed,
        "totalFailed": m.total_failed,
        "totalRetries": m.total_retries,
        "totalCancelled": m.total_cancelled,
        "currentSize": m.current_size,
        "successRate": m.success_rate,
        "avgWaitMs": m.avg_wait_ms,
        "avgProcessingMs": m.avg_processing_ms,
        "waitMs": {"p50": m.wait_ms_p50, "p95": m.wait_ms_p95, "p99": m.wait_ms_p99},
        "processingMs": {
            "p50": m.processing_ms_p50,
            "p95": m.processing_ms_p95,
            "p99": m.processing_ms_p99,
        },
        "byStatus": m.by_status,
        "byPriority": m.by_priority,
        "throughput": {
            "enqueuePerSec": m.throughput.enqueue_per_sec,
            "dequeuePerSec": m.throughput.dequeue_per_sec,
        },
        "storage": m.storage or {"bytesOnDisk": 0, "journalBytes": 0, "lastSnapshotAt": None},
        "destinations": destinations,
    }
