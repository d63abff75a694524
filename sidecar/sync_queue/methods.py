"""The method table: JSON-RPC params -> queue calls -> JSON results (docs/protocol.md §4).

Validation of params lives here (names, types, ranges; every message names the field); the
queue validates what depends on its state. Everything runs on the server's thread: the
queue is opened without its maintenance thread and this dispatcher's ``tick`` drives
maintenance, long polls and notifications, so every event reaches the wire in order.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from . import __version__
from .breaker import BreakerChanged
from .durations import MAX_DURATION_MS
from .errors import InvalidParams, PersistenceError, ShuttingDown
from .item import MAX_ID_LENGTH, MAX_RETRIES_LIMIT, ItemStatus, Priority, SyncItem
from .metrics import Metrics
from .protocol import ANY, CallInfo, Dispatcher, MethodNotFound, Param, ServerLink, Waiting
from .protocol import check_params as check
from .queue import MAX_LIST_LIMIT, SyncQueue
from .state import Event, ItemFailed

__all__ = ["PROTOCOL_VERSION", "QueueDispatcher", "stats_to_wire"]

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
NOTIFY_WINDOW_S = 0.1  # itemsAvailable: at most once per 100 ms
MAX_POP_BATCH = 1000

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
}
POP = {
    "timeoutMs": Param(int, minimum=0, maximum=_MS),
    "leaseMs": Param(int, minimum=1, maximum=_MS),
    "partition": Param(int, minimum=0),
}
POP_BATCH = {**POP, "max": Param(int, minimum=1)}
NONE: dict[str, Param] = {}
READ_ONLY = frozenset({"ping", "get", "list", "stats", "health"})
# A flush still folding when the server stops: what was acknowledged is durable anyway.
_FLUSH_CUT_SHORT = ShuttingDown(
    "the sidecar stopped before the flush's compaction finished; every change acknowledged "
    "before it is durable, but may not be compacted into a snapshot"
)


@dataclass
class _Waiter:
    waiting: Waiting
    n: int | None  # None: a single pop (answered with an item or null)
    lease_ms: int | None
    partition: int | None


class QueueDispatcher(Dispatcher):
    """Serves one ``SyncQueue`` over the protocol."""

    read_only_methods = READ_ONLY

    def __init__(
        self, queue: SyncQueue, *, data_dir: str | None, recovered: dict[str, Any]
    ) -> None:
        self.queue = queue
        self._data_dir = data_dir
        self._recovered = recovered
        self._link: ServerLink | None = None
        self._waiters: deque[_Waiter] = deque()
        self._flushes: deque[tuple[Future[None], Waiting]] = deque()
        self._events: list[Event] = []
        self._ready_before = 0
        self._last_notified = -NOTIFY_WINDOW_S
        self._held_back = False
        self._changed = True  # a call that may change the queue ran since the last tick
        self._next_tick = 0.0  # monotonic time when time alone makes a tick worthwhile
        self._methods: dict[str, Callable[[dict[str, Any], CallInfo], Any]] = {
            "ping": self._ping,
            "push": self._push,
            "pushBatch": self._push_batch,
            "pop": self._pop,
            "popBatch": self._pop_batch,
            "complete": self._complete,
            "fail": self._fail,
            "cancel": self._cancel,
            "requeue": self._requeue,
            "extendLease": self._extend_lease,
            "get": self._get,
            "list": self._list,
            "purge": self._purge,
            "stats": self._stats,
            "health": self._health,
            "pause": self._pause,
            "resume": self._resume,
            "flush": self._flush,
        }
        queue.set_on_event(self.on_event)
        queue.defer_commits()  # one commit per server cycle: see commit()

    # -- the server's hooks --

    def attach(self, link: ServerLink) -> None:
        self._link = link
        link.notify(
            "ready",
            {
                "version": __version__,
                "protocol": PROTOCOL_VERSION,
                "dataDir": self._data_dir,
                "durability": "memory" if self._data_dir is None else self.queue.config.durability,
                "recovered": self._recovered,
            },
        )
        self._ready_before = self.queue.ready_count()
        if self._ready_before:
            self._notify_items_available(time.monotonic())

    def on_event(self, event: Event) -> None:
        """The queue's events (``on_event``); sent as notifications after the call."""
        self._events.append(event)

    def handle(self, method: str, params: dict[str, Any], call: CallInfo) -> Any:
        handler = self._methods.get(method)
        if handler is None:
            raise MethodNotFound(
                f"no method named {method!r} (see docs/protocol.md §4)", method=method
            )
        if method not in READ_ONLY:
            self._changed = True
        result = handler(params, call)
        if self._waiters:
            self._serve_waiters()
        if self._events:
            self._send_events()
        return result

    def tick(self) -> float | None:
        # The server ticks after every read. When no call could have changed the queue and
        # nothing is due yet, there is nothing to look at (a ping costs no queue work).
        if self._flushes:
            self._answer_flushes()
        now = time.monotonic()
        if not self._changed and now < self._next_tick:
            return self._next_tick - now
        self._changed = False
        delay = self._tick()
        self._next_tick = time.monotonic() + delay
        return delay

    def _tick(self) -> float:
        queue = self.queue
        until_maintenance = queue.tick()
        if self._waiters:
            self._serve_waiters()
        # First: polling applies what became due (and raises its events).
        ready, wakeup, queue_now = queue.poll()
        if self._events:
            self._send_events()
        now = time.monotonic()
        if ready and (not self._ready_before or self._held_back):
            self._notify_items_available(now)
        elif not ready:
            self._held_back = False
        self._ready_before = ready
        waits = [until_maintenance]
        if self._held_back:
            waits.append(self._last_notified + NOTIFY_WINDOW_S - now)
        if wakeup is not None:
            waits.append((wakeup - queue_now) / 1000)
        return max(0.001, min(waits))

    def commit(self) -> None:
        self.queue.commit_deferred()

    def close(self) -> None:
        self.queue.shutdown()
        failure = self.queue.storage_failure
        if failure is not None:
            # Changes were refused since the failure: the way out says so (exit 1).
            raise PersistenceError(f"the queue could not be persisted: {failure}")

    # -- notifications --

    def _notify_items_available(self, now: float) -> None:
        assert self._link is not None
        if now - self._last_notified < NOTIFY_WINDOW_S:
            self._held_back = True  # sent when the window ends, if items are still ready
            return
        self._held_back = False
        self._last_notified = now
        self._link.notify("itemsAvailable", {"pending": self.queue.ready_count()})

    def _send_events(self) -> None:
        assert self._link is not None
        events, self._events = self._events, []
        for event in events:
            if isinstance(event, ItemFailed):
                self._link.notify(
                    "itemFailed", {"id": event.id, "attempts": event.attempts, "error": event.error}
                )
            elif isinstance(event, BreakerChanged):
                self._link.notify("breakerChanged", {"state": event.state, "reason": event.reason})

    # -- flushes --

    def _answer_flushes(self) -> None:
        """Answer the flushes whose compaction is done, in the order they were asked."""
        flushes = self._flushes
        while flushes and flushes[0][0].done():
            future, waiting = flushes.popleft()
            error = future.exception()
            if error is None:
                waiting.resolve({})
            else:
                waiting.fail(error)

    # -- long polls --

    def _serve_waiters(self) -> None:
        """Hand ready items to waiting pops, oldest first."""
        queue = self.queue
        waiters = self._waiters
        for waiter in list(waiters):
            if waiter.waiting.done:
                waiters.remove(waiter)
                continue
            if not queue.ready_count():
                return
            try:
                items = queue.pop_batch(
                    waiter.n or 1, lease=_lease(waiter.lease_ms), partition=waiter.partition
                )
            except PersistenceError as exc:
                # Fail-stopped: no pop succeeds again. Answer the waiters with that, not
                # the call that is serving them (a read must still be answered).
                for other in waiters:
                    other.waiting.fail(exc)
                waiters.clear()
                return
            if not items:
                continue  # e.g. nothing ready in its partition: later waiters may be served
            waiters.remove(waiter)
            waiter.waiting.resolve(
                [i.to_dict() for i in items] if waiter.n is not None else items[0].to_dict()
            )

    def _wait(
        self,
        call: CallInfo,
        timeout_ms: int,
        n: int | None,
        lease_ms: int | None,
        partition: int | None,
    ) -> Any:
        empty: Any = [] if n is not None else None
        if call.in_batch or not timeout_ms:
            return empty
        waiting = Waiting(empty=empty, timeout=timeout_ms / 1000)
        self._waiters.append(_Waiter(waiting, n, lease_ms, partition))
        return waiting

    # -- methods --

    def _ping(self, params: dict[str, Any], call: CallInfo) -> Any:
        check("ping", params, NONE)
        return {"pong": True}

    def _push(self, params: dict[str, Any], call: CallInfo) -> Any:
        return {"id": self.queue.push(item_from_params("push", params))}

    def _push_batch(self, params: dict[str, Any], call: CallInfo) -> Any:
        check("pushBatch", params, {"items": Param(list, required=True)})
        items = [
            item_from_params(f"pushBatch: items[{n}]", p, index=n)
            for n, p in enumerate(params["items"])
        ]
        result = self.queue.push_many(items)
        return {"ids": result.ids, "duplicates": result.duplicates}

    def _pop(self, params: dict[str, Any], call: CallInfo) -> Any:
        check("pop", params, POP)
        self._check_partition("pop", params)
        if call.is_notification:
            return None  # nothing is handed out that nobody would receive
        lease_ms, partition = params.get("leaseMs"), params.get("partition")
        self._serve_waiters()  # older waiting pops first
        if not self._waiters:
            item = self.queue.pop(lease=_lease(lease_ms), partition=partition)
            if item is not None:
                return item.to_dict()
        return self._wait(call, params.get("timeoutMs", 0), None, lease_ms, partition)

    def _pop_batch(self, params: dict[str, Any], call: CallInfo) -> Any:
        check("popBatch", params, POP_BATCH)
        self._check_partition("popBatch", params)
        if call.is_notification:
            return []
        n = params.get("max", self.queue.config.batch_size)
        if n > MAX_POP_BATCH:
            raise InvalidParams(f'popBatch: "max" must be at most {MAX_POP_BATCH}', field="max")
        lease_ms, partition = params.get("leaseMs"), params.get("partition")
        self._serve_waiters()
        if not self._waiters:
            items = self.queue.pop_batch(n, lease=_lease(lease_ms), partition=partition)
            if items:
                return [i.to_dict() for i in items]
        return self._wait(call, params.get("timeoutMs", 0), n, lease_ms, partition)

    def _check_partition(self, method: str, params: dict[str, Any]) -> None:
        """Refused now, naming the field: a waiting pop is only handed to the queue later,
        where a bad partition would fail whichever call happened to serve it."""
        partition = params.get("partition")
        count = self.queue.config.partitions
        if partition is not None and partition >= count:
            hint = "" if self.queue.config.enable_partitioning else " (partitioning is off)"
            raise InvalidParams(
                f'{method}: "partition" must be at most {count - 1}{hint}, got {partition}',
                field="partition",
            )

    def _complete(self, params: dict[str, Any], call: CallInfo) -> Any:
        check("complete", params, {"id": _ID, "leaseId": Param(str)})
        self.queue.mark_completed(params["id"], params.get("leaseId"))
        return {}

    def _fail(self, params: dict[str, Any], call: CallInfo) -> Any:
        check(
            "fail", params, {"id": _ID, "error": Param(str, nullable=True), "leaseId": Param(str)}
        )
        result = self.queue.fail(params["id"], params.get("error"), params.get("leaseId"))
        if result.retry:
            return {"retry": True, "availableAt": result.available_at}
        return {"retry": False}

    def _cancel(self, params: dict[str, Any], call: CallInfo) -> Any:
        check("cancel", params, {"id": _ID})
        self.queue.cancel(params["id"])
        return {}

    def _requeue(self, params: dict[str, Any], call: CallInfo) -> Any:
        check("requeue", params, {"id": _ID})
        self.queue.requeue(params["id"])
        return {}

    def _extend_lease(self, params: dict[str, Any], call: CallInfo) -> Any:
        check(
            "extendLease",
            params,
            {
                "id": _ID,
                "leaseMs": Param(int, required=True, minimum=1, maximum=_MS),
                "leaseId": Param(str),
            },
        )
        expires = self.queue.extend_lease(
            params["id"], timedelta(milliseconds=params["leaseMs"]), params.get("leaseId")
        )
        return {"leaseExpiresAt": expires}

    def _get(self, params: dict[str, Any], call: CallInfo) -> Any:
        check("get", params, {"id": _ID})
        return self.queue.get(params["id"]).to_dict()

    def _list(self, params: dict[str, Any], call: CallInfo) -> Any:
        check(
            "list",
            params,
            {
                "status": Param(str, choices=_STATUSES),
                "priority": Param(str, choices=_PRIORITIES),
                "limit": Param(int, minimum=1),
                "after": Param(str, nullable=True),
            },
        )
        limit = params.get("limit", 100)
        if limit > MAX_LIST_LIMIT:
            raise InvalidParams(f'list: "limit" must be at most {MAX_LIST_LIMIT}', field="limit")
        page = self.queue.list(
            params.get("status"), params.get("priority"), limit, params.get("after")
        )
        return {"items": [i.to_dict() for i in page.items], "next": page.next}

    def _purge(self, params: dict[str, Any], call: CallInfo) -> Any:
        check("purge", params, {"status": Param(str, required=True, choices=_STATUSES)})
        return {"removed": self.queue.purge(params["status"])}

    def _stats(self, params: dict[str, Any], call: CallInfo) -> Any:
        check("stats", params, NONE)
        return stats_to_wire(self.queue.metrics())

    def _health(self, params: dict[str, Any], call: CallInfo) -> Any:
        check("health", params, NONE)
        h = self.queue.health()
        result: dict[str, Any] = {"healthy": h.healthy, "breaker": h.breaker, "paused": h.paused}
        if h.reason is not None:
            result["reason"] = h.reason
        return result

    def _pause(self, params: dict[str, Any], call: CallInfo) -> Any:
        check("pause", params, NONE)
        self.queue.pause()
        return {}

    def _resume(self, params: dict[str, Any], call: CallInfo) -> Any:
        check("resume", params, NONE)
        self.queue.resume()
        return {}

    def _flush(self, params: dict[str, Any], call: CallInfo) -> Any:
        check("flush", params, NONE)
        self.queue.commit_deferred()  # this cycle's changes first, then the snapshot
        if call.in_batch:
            # A batch's replies leave as one array, so this one cannot wait: it blocks.
            self.queue.flush()
            return {}
        # The store's thread folds the journal while this thread keeps serving; tick()
        # answers when it is done (the future's callback wakes the server).
        future = self.queue.flush_async()
        if future.done():
            future.result()  # raises the error, if any
            return {}
        assert self._link is not None
        future.add_done_callback(lambda _: self._link.wake())  # type: ignore[union-attr]
        if call.is_notification:
            return None
        waiting = Waiting(empty=None, timeout=math.inf, expired=_FLUSH_CUT_SHORT)
        self._flushes.append((future, waiting))
        return waiting


def _lease(lease_ms: int | None) -> timedelta | None:
    # A timedelta holds integers: the queue gets exactly lease_ms back (see durations.py).
    return None if lease_ms is None else timedelta(milliseconds=lease_ms)


def item_from_params(where: str, params: Any, index: int | None = None) -> SyncItem:
    """A ``SyncItem`` from a push object (docs/protocol.md §3), or ``InvalidParams`` naming the
    field (``pushBatch: items[3]: "priority" ...``)."""
    if not isinstance(params, dict):
        raise InvalidParams(f"{where}: expected an object", field="items", index=index)
    check(where, params, PUSH)
    item = SyncItem(params["payload"], params.get("priority", "normal"))
    if "id" in params:
        item_id = params["id"]
        if not 1 <= len(item_id) <= MAX_ID_LENGTH:
            raise InvalidParams(
                f'{where}: "id" must have 1 to {MAX_ID_LENGTH} characters', field="id"
            )
        item.id = item_id
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
        item._delay_ms = params["delayMs"]
    if "ttlMs" in params:
        item._ttl_ms = params["ttlMs"]
    return item


def stats_to_wire(m: Metrics) -> dict[str, Any]:
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
    }
