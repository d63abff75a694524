"""``SyncQueue``: the thread-safe queue for library users, a thin wrapper around an ``Engine``.

What it adds to the engine (``engine.py``) and its core (``core.py``): one lock around each
call, a condition on which a blocking ``pop`` waits (woken by every change that may make an
item ready), a maintenance thread that runs ``Engine.run_maintenance``, durations given as
``timedelta`` or seconds (converted to milliseconds once, here), and a commit after each
call, outside the lock, so concurrent callers share one fsync; events are delivered after
the lock is released, so a listener may call the queue.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

from .clock import Clock
from .config import QueueConfig
from .core import Journal, QueueCore
from .destinations import check_except
from .durations import Duration, to_ms
from .engine import Engine, Health
from .errors import InvalidParams, QueueError
from .item import Item, ItemStatus, Priority, SyncItem
from .metrics import Metrics, Throughput
from .results import FailResult, Page, PushBatchResult, PushResult
from .state import Event, QueueState

if TYPE_CHECKING:
    from .storage.fileio import FileIO

__all__ = [
    "FailResult",
    "Health",
    "Journal",
    "Page",
    "PushBatchResult",
    "PushResult",
    "SyncQueue",
]

T = TypeVar("T")


class SyncQueue:
    def __init__(
        self,
        config: QueueConfig | None = None,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        on_event: Callable[[Event], None] | None = None,
        journal: Journal | None = None,
        state: QueueState | None = None,
        maintenance_thread: bool = True,
        file_io: FileIO | None = None,
        engine: Engine | None = None,
    ) -> None:
        config = config if config is not None else QueueConfig()
        if engine is None:
            if state is None and journal is None and config.persistence_path is not None:
                # The one place the wrapper reaches the storage layer: opening it.
                from .persistence import open_engine

                # file_io: the storage's I/O seam, for tests that inject failing writes.
                engine = open_engine(config, clock=clock, rng=rng, file_io=file_io)
            else:
                engine = Engine(config, state, clock=clock, rng=rng, journal=journal)
                engine.start()
        self.config = engine.config
        self._engine = engine
        self._core = engine.core
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)  # wakes blocked pops
        self._waiters = 0
        engine.guard = self._lock
        engine.on_change = self._wake
        engine.on_event = on_event
        self._stop = threading.Event()
        self._maintainer: threading.Thread | None = None
        if maintenance_thread:
            self._maintainer = threading.Thread(
                target=self._maintain, name="sync-queue-maint", daemon=True
            )
            self._maintainer.start()

    @classmethod
    def with_config(cls, config: QueueConfig, **kwargs: Any) -> SyncQueue:
        return cls(config, **kwargs)

    def set_on_event(self, on_event: Callable[[Event], None] | None) -> None:
        """Where events (``ItemFailed``, ``BreakerChanged``) go; called after the change."""
        self._engine.on_event = on_event

    # ------------------------------------------------------------- producers

    def push(self, item: SyncItem) -> str:
        """Add one item; returns its id. ``DuplicateItem`` if that id is already retained."""
        _check_items((item,), "item")
        return self._change(self._core.push, item)

    def push_with_result(self, item: SyncItem) -> PushResult:
        """``push``, saying what unique work (``SyncItem.with_unique``) did: ``added``,
        ``kept`` (nothing added; ``.id`` is the live item's), ``replaced`` or ``appended``."""
        _check_items((item,), "item")
        return self._change(self._core.push_one, item)

    def push_batch(self, items: Sequence[SyncItem]) -> list[str]:
        """Add items; returns the ids added (duplicates are skipped). Capacity: all or nothing."""
        _check_items(items, "items")
        return self._change(self._core.push_batch, items).ids

    # ------------------------------------------------------------- consumers

    def pop(
        self,
        timeout: Duration | None = None,
        lease: Duration | None = None,
        partition: int | None = None,
        except_destinations: Collection[str] | None = None,
    ) -> Item | None:
        """Hand out the next ready item, now ``processing`` under a lease; None if none.

        With ``timeout`` it waits up to that long for one (without spinning). Items pushed
        with a destination are handed out only when ``except_destinations`` is given (the
        origins to skip; empty: none): then only those (an outbox dispatcher's pop).
        """
        items = self.pop_batch(
            1,
            timeout=timeout,
            lease=lease,
            partition=partition,
            except_destinations=except_destinations,
        )
        return items[0] if items else None

    def pop_batch(
        self,
        max: int | None = None,  # the wire's name (popBatch's "max"), builtin shadowed here
        timeout: Duration | None = None,
        lease: Duration | None = None,
        partition: int | None = None,
        except_destinations: Collection[str] | None = None,
    ) -> list[Item]:
        """Hand out up to ``max`` ready items (default ``batch_size``); waits like ``pop``."""
        n = self.config.batch_size if max is None else max
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidParams(f"max: expected an integer >= 1, got {n!r}", field="max")
        lease_ms = None if lease is None else to_ms(lease, "lease")
        if lease_ms is not None and lease_ms <= 0:
            raise InvalidParams("lease: must be positive", field="leaseMs")
        wait_s = 0.0 if timeout is None else to_ms(timeout, "timeout") / 1000
        self._core.check_partition(partition)
        skip = check_except(except_destinations, partition)
        deadline = time.monotonic() + wait_s
        return self._change(self._pop_or_wait, n, lease_ms, partition, deadline, skip)

    def _pop_or_wait(
        self,
        now: int,
        n: int,
        lease_ms: int | None,
        partition: int | None,
        deadline: float,
        skip: frozenset[str] | None,
    ) -> list[Item]:
        """Under the lock: pop, or wait on the condition until an item may be ready."""
        engine, core = self._engine, self._core
        while True:
            items = core.pop(now, n, lease_ms, partition, skip)
            remaining = deadline - time.monotonic()
            if items or remaining <= 0:
                return items
            wakeup = core.next_wakeup()
            if wakeup is not None:
                remaining = min(remaining, max(0.001, (wakeup - now) / 1000))
            self._waiters += 1
            try:
                self._ready.wait(remaining)
            finally:
                self._waiters -= 1
            if engine.closed:
                return []  # woken by shutdown: waiting pops get nothing
            now = engine.begin_change()

    def mark_completed(self, id: str, lease_id: str | None = None) -> None:
        """The item's work is done. Only for a ``processing`` item whose lease is current."""
        self._change(self._core.complete, id, lease_id)

    def mark_completed_batch(
        self, items: Sequence[tuple[str, str | None]]
    ) -> list[QueueError | None]:
        """``mark_completed`` for each ``(id, lease_id)``, in one lock and one commit. Each
        on its own: the list holds, in order, None or the error of one that was refused."""
        return self._change(self._core.complete_batch, list(items))

    def mark_failed(
        self,
        id: str,
        error: str | None = None,
        lease_id: str | None = None,
        *,
        dead: bool = False,
        retry_after: Duration | None = None,
        charge: bool = True,
    ) -> FailResult:
        """The attempt failed. Truthy (``.retry``): the item will be retried at
        ``.available_at``; falsy: it is now ``failed``.

        ``dead``: to the dead letters at once, whatever retries are left; ``retry_after``:
        the next attempt not before then (instead of the backoff, e.g. ``Retry-After``);
        ``charge=False``: the attempt does not count (the item is pending again)."""
        retry_after_ms = None if retry_after is None else to_ms(retry_after, "retry_after")
        return self._change(self._fail, id, error, lease_id, dead, retry_after_ms, charge)

    def _fail(
        self,
        now: int,
        id: str,
        error: str | None,
        lease_id: str | None,
        dead: bool,
        retry_after_ms: int | None,
        charge: bool,
    ) -> FailResult:
        return self._core.fail(
            now, id, error, lease_id, dead=dead, retry_after_ms=retry_after_ms, charge=charge
        )

    def extend_lease(self, id: str, lease: Duration, lease_id: str | None = None) -> int:
        """Heartbeat: the lease now ends ``lease`` from now. Returns the new expiry (ms)."""
        lease_ms = to_ms(lease, "lease")
        if lease_ms <= 0:
            raise InvalidParams("leaseMs: must be positive", field="leaseMs")
        return self._change(self._core.extend_lease, id, lease_ms, lease_id)

    # ------------------------------------------------------------ management

    def release(self, id: str) -> None:
        """A ``held`` item becomes ``pending``, keeping its place in line."""
        self._change(self._core.release, id)

    def reject(self, id: str, reason: str | None = None) -> None:
        """A ``held`` item becomes ``cancelled`` (lastError: ``reason`` or "rejected")."""
        self._change(self._core.reject, id, reason)

    def destinations(self) -> dict[str, dict[str, Any]]:
        """Per destination: counts by status, last error and when (``stats.destinations``)."""
        with self._reading() as (core, _):
            return core.state.destinations.to_wire()

    def cancel(self, id: str) -> None:
        """A ``held``, ``pending`` or ``processing`` item becomes ``cancelled``."""
        self._change(self._core.cancel, id)

    def requeue(self, id: str) -> None:
        """A ``failed`` or ``cancelled`` item goes back to pending, last in line, attempts 0."""
        self._change(self._core.requeue, id)

    def purge(self, status: ItemStatus | str) -> int:
        """Forget every item with ``status`` (completed, failed or cancelled only)."""
        parsed = ItemStatus.parse(status)
        return self._change(self._core.purge, parsed)

    def pause(self) -> None:
        """Stop handing out items (durable, like any change) until ``resume``."""
        self._change(self._core.set_paused, True)

    def resume(self) -> None:
        self._change(self._core.set_paused, False)

    def run_maintenance(self) -> None:
        """Apply what is due now (leases, TTLs, retention, breaker), tidy the indexes, and
        run the storage work that is due. The maintenance thread does this on its cadence."""
        self._engine.run_maintenance(force=True)

    # ----------------------------------------------------------------- reads

    def get(self, id: str) -> Item:
        with self._reading() as (core, _):
            return core.item(id).view()

    def list(
        self,
        status: ItemStatus | str | None = None,
        priority: Priority | str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> Page:
        """Retained items in push order, a page at a time (``after`` = previous ``next``)."""
        with self._reading() as (core, _):
            return core.page(status, priority, limit, after)

    def metrics(self) -> Metrics:
        with self._reading() as (_, now):
            return self._engine.metrics(now)

    def throughput(self) -> Throughput:
        with self._lock:
            return self._engine.core.state.metrics.throughput(self._engine.now())

    def health(self) -> Health:
        engine = self._engine
        if engine.state_lost is not None:  # reads are refused, but health says why
            with self._lock:
                return engine.health()
        with self._reading():
            return engine.health()

    def health_check(self) -> bool:
        """False while the circuit breaker is not closed or storage has failed."""
        return self.health().healthy

    def ready_count(self) -> int:
        """Items that ``pop`` could hand out right now (0 while paused or the breaker is open)."""
        with self._reading() as (core, now):
            return core.ready_count(now)

    def __len__(self) -> int:
        """Held + pending + processing items (what capacity counts)."""
        with self._lock:
            return self._engine.core.state.live_count

    @property
    def quarantined(self) -> Sequence[dict[str, Any]]:
        """What opening set aside: damaged journal blocks moved to quarantine files
        (``file``, ``offset``, ``bytes``, ``quarantine``, ``reason``); empty if none."""
        return self._engine.quarantined

    @property
    def is_shut_down(self) -> bool:
        return self._engine.closed

    @property
    def storage_failure(self) -> str | None:
        """Why storage failed (every change is refused until the queue is reopened), or None."""
        return self._engine.failure()

    # --------------------------------------------------------------- lifecycle

    def flush(self) -> None:
        """Everything so far is durable and compacted into a snapshot on return."""
        self.flush_async().result()

    def flush_async(self) -> Future[None]:
        """``flush`` without waiting: the future completes when what ``flush`` promises
        holds for everything committed before this call (or fails with the error). The
        journal is folded in the store's background thread, never in the caller's."""
        return self._engine.flush_async()

    def shutdown(self) -> None:
        """Stop taking changes, wake waiting pops (they return nothing), stop maintenance,
        and persist everything (then the data directory is released)."""
        with self._lock:
            if self._engine.closed:
                return
            self._engine.close()
            self._ready.notify_all()
        self._stop.set()
        if self._maintainer is not None and self._maintainer is not threading.current_thread():
            self._maintainer.join()
        self._engine.release()

    # ----------------------------------------------------------------- inside

    def _change(self, change: Callable[..., T], *args: Any) -> T:
        """``change(now, *args)`` under the lock, after the checks and catch-up every change
        shares; on the way out (also after an error: catching up may have written records)
        it commits, outside the lock, then delivers the events the change raised. (A plain
        method, not a context manager: this is the cost of every call.)"""
        engine = self._engine
        ticket = 0
        try:
            with self._lock:
                try:
                    return change(engine.begin_change(), *args)
                finally:
                    ticket = engine.core.ticket
                    if self._waiters:  # a change may have made an item ready
                        self._ready.notify_all()
        finally:
            self._after(ticket)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[tuple[QueueCore, int]]:
        """The lock for a read, after catching up with time (which may change the queue:
        a lease ran out, an item expired); committed and delivered after the lock."""
        engine = self._engine
        engine.before_read()
        before = ticket = 0
        try:
            with self._lock:
                before = engine.core.ticket
                now = engine.begin_read()
                ticket = engine.core.ticket
                yield engine.core, now
        finally:
            # Catching up wrote records (a lease ran out, a re-base): they are committed
            # like any change, or a reply could show what a crash right after it undoes.
            self._after(ticket if ticket != before else 0)

    def _after(self, ticket: int) -> None:
        engine = self._engine
        if ticket:
            engine.commit(ticket)
        if engine.core.state.events:
            engine.deliver_events()

    def _wake(self) -> None:
        if self._waiters:
            self._ready.notify_all()

    def _maintain(self) -> None:
        wait = 0.0  # seconds: threading's unit
        while not self._stop.wait(wait):
            wait = max(10, self._engine.run_maintenance()) / 1000


def _check_items(items: Sequence[SyncItem], field: str) -> None:
    for item in items:
        if not isinstance(item, SyncItem):
            raise InvalidParams(f"{field}: expected SyncItem, got {type(item).__name__}")
