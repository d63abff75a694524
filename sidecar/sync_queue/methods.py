"""The method table (``METHODS``): JSON-RPC params -> core calls -> JSON results.

``METHODS`` is Python's one list of wire methods (docs/protocol.md §4): each entry says
whether the method is read-only, its params (``wire.PARAMS``) and which handler serves it;
``READ_ONLY`` is derived from it. Everything runs on the server's thread: the
dispatcher drives an ``Engine`` directly (no lock, no maintenance thread): each call catches
up with time and calls the core; the server's ``commit`` makes the whole read batch durable
with one journal commit (group commit) before any reply is written; ``tick`` drives
maintenance, long polls and notifications, so every event reaches the wire in order.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from . import __version__
from .breaker import BreakerChanged
from .core import MAX_LIST_LIMIT
from .engine import Engine
from .errors import InvalidParams, PersistenceError, ShuttingDown
from .long_polls import LongPolls
from .protocol import CallInfo, Dispatcher, MethodNotFound, Param, ServerLink, Waiting, error_object
from .protocol import check_params as check
from .state import Event, ItemFailed
from .wire import (
    PARAMS,
    complete_refs_from_params,
    except_from_params,
    health_to_wire,
    item_from_params,
    stats_to_wire,
)

__all__ = ["METHODS", "PROTOCOL_VERSION", "READ_ONLY", "Method", "QueueDispatcher"]

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
NOTIFY_WINDOW_S = 0.1  # itemsAvailable: at most once per 100 ms
MAX_POP_BATCH = 1000
# A flush still folding when the server stops: what was acknowledged is durable anyway.
_FLUSH_CUT_SHORT = ShuttingDown(
    "the sidecar stopped before the flush's compaction finished; every change acknowledged "
    "before it is durable, but may not be compacted into a snapshot"
)

Handler = Callable[["QueueDispatcher", dict[str, Any], CallInfo], Any]


@dataclass(frozen=True)
class Method:
    """One wire method: its name, whether it changes nothing, its params (``wire.PARAMS``;
    None: the handler checks them) and its handler."""

    name: str
    read_only: bool
    params: Mapping[str, Param] | None
    handler: Handler


class QueueDispatcher(Dispatcher):
    """Serves one ``Engine`` over the protocol."""

    def __init__(self, engine: Engine, *, data_dir: str | None, recovered: dict[str, Any]) -> None:
        self.engine = engine
        self.core = engine.core
        self._data_dir = data_dir
        self._recovered = recovered
        self._link: ServerLink | None = None
        self._waiters = LongPolls(engine)
        self._flushes: deque[tuple[Future[None], Waiting]] = deque()
        self._events: list[Event] = []
        self._ready_before = 0
        self._last_notified = -NOTIFY_WINDOW_S
        self._held_back = False
        self._changed = True  # a call that may change the queue ran since the last tick
        self._next_tick = 0.0  # monotonic time when time alone makes a tick worthwhile
        self._committed = 0  # the journal ticket of the last commit
        engine.on_event = self._on_event

    # -- the server's hooks --

    def attach(self, link: ServerLink) -> None:
        self._link = link
        durability = "memory" if self._data_dir is None else self.engine.config.durability
        link.notify(
            "ready",
            {
                "version": __version__,
                "protocol": PROTOCOL_VERSION,
                "dataDir": self._data_dir,
                "durability": durability,
                "recovered": self._recovered,
            },
        )
        self._ready_before = self._ready_count()
        if self._ready_before:
            self._notify_items_available(self._monotonic())

    def handle(self, method: str, params: dict[str, Any], call: CallInfo) -> Any:
        spec = METHODS.get(method)
        if spec is None:
            raise MethodNotFound(
                f"no method named {method!r} (see docs/protocol.md §4)", method=method
            )
        if not spec.read_only:
            self._changed = True
        if spec.params is not None:
            check(method, params, spec.params)
        try:
            result = spec.handler(self, params, call)
        except BaseException:
            self.engine.deliver_events()  # catching up may have raised some before an error
            raise
        if self._waiters:
            self._waiters.serve()
        if self._events or self.core.state.events:  # most calls raise none: no calls then
            self._send_events()
        return result

    def _monotonic(self) -> float:
        """Seconds of the engine's monotonic clock (injected: tests skip it, not sleep)."""
        return self.engine.time.clock.monotonic_ms() / 1000

    def tick(self) -> float | None:
        # The server ticks after every read. When no call could have changed the queue and
        # nothing is due yet, there is nothing to look at (a ping costs no queue work).
        if self._flushes:
            self._answer_flushes()
        now = self._monotonic()
        if not self._changed and now < self._next_tick:
            return self._next_tick - now
        self._changed = False
        delay = self._tick(now)
        self._next_tick = now + delay
        return delay

    def _tick(self, now: float) -> float:
        """``now``: the monotonic time the tick began (one clock read serves the whole tick:
        it runs on every busy cycle, and it takes microseconds)."""
        engine = self.engine
        until_maintenance = engine.run_maintenance()
        if self._waiters:
            self._waiters.serve()
        # First: reading applies what became due (and raises its events).
        queue_now = self._read()
        ready = self.core.ready_count(queue_now)
        wakeup = self.core.next_wakeup()
        self._send_events()
        if ready and (not self._ready_before or self._held_back):
            self._notify_items_available(now)
        elif not ready:
            self._held_back = False
        self._ready_before = ready
        waits = [until_maintenance / 1000]  # seconds: the server's unit
        if self._held_back:
            waits.append(self._last_notified + NOTIFY_WINDOW_S - now)
        if wakeup is not None:
            waits.append((wakeup - queue_now) / 1000)
        return max(0.001, min(waits))

    def commit(self) -> None:
        ticket = self.core.ticket
        if ticket != self._committed:
            self.engine.commit(ticket)
            self._committed = ticket

    def close(self) -> None:
        self.engine.shutdown()
        failure = self.engine.failure()
        if failure is not None:
            # Changes were refused since the failure: the way out says so (exit 1).
            raise PersistenceError(f"the queue could not be persisted: {failure}")

    # -- reading and changing --

    def _read(self) -> int:
        """Catch up with time for a read; the queue's time."""
        self.engine.before_read()
        return self.engine.begin_read()

    def _ready_count(self) -> int:
        return self.core.ready_count(self._read())

    # -- notifications --

    def _notify_items_available(self, now: float) -> None:
        assert self._link is not None
        if now - self._last_notified < NOTIFY_WINDOW_S:
            self._held_back = True  # sent when the window ends, if items are still ready
            return
        self._held_back = False
        self._last_notified = now
        self._link.notify("itemsAvailable", {"pending": self._ready_count()})

    def _on_event(self, event: Event) -> None:
        self._events.append(event)  # sent as a notification after the call or tick

    def _send_events(self) -> None:
        self.engine.deliver_events()  # into self._events
        if not self._events:
            return
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

    # -- methods (params already checked against wire.PARAMS) --

    def _ping(self, params: dict[str, Any], call: CallInfo) -> Any:
        return {"pong": True}

    def _push(self, params: dict[str, Any], call: CallInfo) -> Any:
        item = item_from_params("push", params)
        return self.core.push_one(self.engine.begin_change(), item).to_wire()

    def _push_batch(self, params: dict[str, Any], call: CallInfo) -> Any:
        items = [
            item_from_params(f"pushBatch: items[{n}]", p, index=n)
            for n, p in enumerate(params["items"])
        ]
        result = self.core.push_batch(self.engine.begin_change(), items)
        reply: dict[str, Any] = {"ids": result.ids, "duplicates": result.duplicates}
        if result.unique:
            reply["unique"] = [r.to_wire() for r in result.unique]
        return reply

    def _pop(self, params: dict[str, Any], call: CallInfo) -> Any:
        return self._pop_some("pop", params, call, None)

    def _pop_batch(self, params: dict[str, Any], call: CallInfo) -> Any:
        n = params.get("max", self.engine.config.batch_size)
        if n > MAX_POP_BATCH:
            raise InvalidParams(f'popBatch: "max" must be at most {MAX_POP_BATCH}', field="max")
        return self._pop_some("popBatch", params, call, n)

    def _pop_some(self, method: str, params: dict[str, Any], call: CallInfo, n: int | None) -> Any:
        """``pop`` (``n`` None: an item or null) or ``popBatch`` (a list)."""
        self._check_partition(method, params)
        skip = except_from_params(method, params)
        if call.is_notification:
            return None if n is None else []  # nothing is handed out that nobody would receive
        lease_ms, partition = params.get("leaseMs"), params.get("partition")
        self._waiters.serve()  # older waiting pops first
        if not self._waiters.waiting_like(skip):
            now = self.engine.begin_change()
            items = self.core.pop_wire(now, n or 1, lease_ms, partition, skip)
            if items:
                return items if n is not None else items[0]
        return self._waiters.wait(call, params.get("timeoutMs", 0), n, lease_ms, partition, skip)

    def _check_partition(self, method: str, params: dict[str, Any]) -> None:
        """Refused now, naming the field: a waiting pop is only handed to the core later,
        where a bad partition would fail whichever call happened to serve it."""
        partition = params.get("partition")
        config = self.engine.config
        count = config.partitions
        if partition is not None and partition >= count:
            hint = "" if config.enable_partitioning else " (partitioning is off)"
            raise InvalidParams(
                f'{method}: "partition" must be at most {count - 1}{hint}, got {partition}',
                field="partition",
            )

    def _complete(self, params: dict[str, Any], call: CallInfo) -> Any:
        self.core.complete(self.engine.begin_change(), params["id"], params.get("leaseId"))
        return {}

    def _complete_batch(self, params: dict[str, Any], call: CallInfo) -> Any:
        refs = complete_refs_from_params(params)
        outcomes = self.core.complete_batch(self.engine.begin_change(), refs)
        errors = [
            {"index": n, "id": refs[n][0], "error": error_object(error)}
            for n, error in enumerate(outcomes)
            if error is not None
        ]
        completed = [refs[n][0] for n, error in enumerate(outcomes) if error is None]
        return {"completed": completed, "errors": errors}

    def _fail(self, params: dict[str, Any], call: CallInfo) -> Any:
        now = self.engine.begin_change()
        result = self.core.fail(
            now,
            params["id"],
            params.get("error"),
            params.get("leaseId"),
            dead=params.get("dead", False),
            retry_after_ms=params.get("retryAfterMs"),
            charge=params.get("charge", True),
        )
        if result.retry:
            return {"retry": True, "availableAt": result.available_at}
        return {"retry": False}

    def _cancel(self, params: dict[str, Any], call: CallInfo) -> Any:
        self.core.cancel(self.engine.begin_change(), params["id"])
        return {}

    def _release(self, params: dict[str, Any], call: CallInfo) -> Any:
        self.core.release(self.engine.begin_change(), params["id"])
        return {}

    def _reject(self, params: dict[str, Any], call: CallInfo) -> Any:
        self.core.reject(self.engine.begin_change(), params["id"], params.get("reason"))
        return {}

    def _requeue(self, params: dict[str, Any], call: CallInfo) -> Any:
        self.core.requeue(self.engine.begin_change(), params["id"])
        return {}

    def _extend_lease(self, params: dict[str, Any], call: CallInfo) -> Any:
        now = self.engine.begin_change()
        expires = self.core.extend_lease(
            now, params["id"], params["leaseMs"], params.get("leaseId")
        )
        return {"leaseExpiresAt": expires}

    def _get(self, params: dict[str, Any], call: CallInfo) -> Any:
        self._read()
        return self.core.item(params["id"]).to_dict()

    def _list(self, params: dict[str, Any], call: CallInfo) -> Any:
        limit = params.get("limit", 100)
        if limit > MAX_LIST_LIMIT:
            raise InvalidParams(f'list: "limit" must be at most {MAX_LIST_LIMIT}', field="limit")
        self._read()
        page = self.core.page(
            params.get("status"), params.get("priority"), limit, params.get("after")
        )
        return {"items": [i.to_dict() for i in page.items], "next": page.next}

    def _purge(self, params: dict[str, Any], call: CallInfo) -> Any:
        return {"removed": self.core.purge(self.engine.begin_change(), params["status"])}

    def _stats(self, params: dict[str, Any], call: CallInfo) -> Any:
        metrics = self.engine.metrics(self._read())
        return stats_to_wire(metrics, self.core.state.destinations.to_wire())

    def _health(self, params: dict[str, Any], call: CallInfo) -> Any:
        if self.engine.state_lost is None:
            self._read()
        return health_to_wire(self.engine.health())

    def _pause(self, params: dict[str, Any], call: CallInfo) -> Any:
        self.core.set_paused(self.engine.begin_change(), True)
        return {}

    def _resume(self, params: dict[str, Any], call: CallInfo) -> Any:
        self.core.set_paused(self.engine.begin_change(), False)
        return {}

    def _flush(self, params: dict[str, Any], call: CallInfo) -> Any:
        self.commit()  # this cycle's changes first, then the snapshot
        if call.in_batch:
            # A batch's replies leave as one array, so this one cannot wait: it blocks.
            self.engine.flush_async().result()
            return {}
        # The store's thread folds the journal while this thread keeps serving; tick()
        # answers when it is done (the future's callback wakes the server).
        future = self.engine.flush_async()
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


def _method(name: str, handler: Handler, *, read_only: bool = False) -> Method:
    return Method(name, read_only, PARAMS[name], handler)


D = QueueDispatcher
METHODS: Mapping[str, Method] = {
    m.name: m
    for m in (
        _method("ping", D._ping, read_only=True),
        _method("push", D._push),
        _method("pushBatch", D._push_batch),
        _method("pop", D._pop),
        _method("popBatch", D._pop_batch),
        _method("complete", D._complete),
        _method("completeBatch", D._complete_batch),
        _method("fail", D._fail),
        _method("cancel", D._cancel),
        _method("release", D._release),
        _method("reject", D._reject),
        _method("requeue", D._requeue),
        _method("extendLease", D._extend_lease),
        _method("get", D._get, read_only=True),
        _method("list", D._list, read_only=True),
        _method("purge", D._purge),
        _method("stats", D._stats, read_only=True),
        _method("health", D._health, read_only=True),
        _method("pause", D._pause),
        _method("resume", D._resume),
        _method("flush", D._flush),
    )
}
READ_ONLY = frozenset(name for name, m in METHODS.items() if m.read_only)
QueueDispatcher.read_only_methods = READ_ONLY
assert PARAMS.keys() == METHODS.keys(), "wire.PARAMS and METHODS name the same methods"
