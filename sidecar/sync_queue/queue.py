"""``SyncQueue``: the thread-safe queue that applications and the sidecar call.

Each public method follows one pattern, under one lock:

1. read the queue's time once (``_time``): monotonic elapsed time from an anchor, re-based
   onto the wall clock when the two part (a ``Rebase`` record keeps every deadline's
   remaining time), so a wall clock that jumps cannot stretch or cut a lease or a delay;
2. ``_advance(now)``: turn what became due into operation records (expired leases go back
   through the retry policy, items past their TTL are cancelled, finished items past
   retention are dropped, an open breaker whose cool-down ended half-opens);
3. validate the request against the state; bad input raises and changes nothing;
4. build the operation record, with every random or time-dependent choice made here;
5. hand it to the journal, if there is one (a record the journal refuses is never applied),
   then apply it through ``QueueState.apply``.

After the lock is released the journal commits (so concurrent callers share one fsync) and
events are delivered to ``on_event``. The engine itself (``state.py``) does no I/O.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .breaker import BreakerState
from .clock import Clock, SystemClock
from .config import QueueConfig
from .durations import Duration, to_ms
from .errors import (
    CapacityExceeded,
    DataDirUnusable,
    DuplicateItem,
    InvalidParams,
    InvalidState,
    ItemNotFound,
    PersistenceError,
    QueueError,
    ShuttingDown,
)
from .item import ItemStatus, Priority, SyncItem, check_id
from .metrics import Metrics, Throughput
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
    Requeue,
    SetPaused,
)
from .retry import Backoff
from .state import Event, QueueState

if TYPE_CHECKING:
    from .persistence import StorePersistence
    from .storage.fileio import FileIO

__all__ = ["FailResult", "Health", "Journal", "Page", "PushBatchResult", "SyncQueue"]

log = logging.getLogger(__name__)

MAX_LIST_LIMIT = 1000
PURGEABLE = frozenset({ItemStatus.COMPLETED, ItemStatus.FAILED, ItemStatus.CANCELLED})
LIVE = frozenset({ItemStatus.PENDING, ItemStatus.PROCESSING})
# How far the wall clock may drift from the queue's (monotonic) time before the queue re-bases
# onto it. Both clocks are slewed alike by NTP, so they part only when the wall clock is set.
REBASE_TOLERANCE_MS = 1000
# A clock whose monotonic reading is aligned with its wall clock (SystemClock) reads the two
# this close: then the queue uses the monotonic reading as it is (see ``_set_anchor``).
ALIGNED_MS = 2
LEASE_EXPIRED = "lease expired"
INTERRUPTED = "interrupted: the queue restarted while it was processing"


class Journal(Protocol):
    """Where the queue sends its operation records to make them durable (see storage)."""

    def append(self, op: Op) -> int:
        """Record ``op`` and return a ticket; called under the queue's lock, before the op is
        applied. Raises (``InvalidParams``, ``PersistenceError``) having recorded nothing."""
        ...

    def commit(self, ticket: int) -> None:
        """Return once everything up to ``ticket`` is as durable as promised (group commit)."""
        ...


@dataclass(frozen=True)
class PushBatchResult:
    ids: list[str]  # added, in order
    duplicates: list[str]  # skipped: already retained, or repeated in the batch


@dataclass(frozen=True)
class FailResult:
    retry: bool
    available_at: int | None  # when the item is due again, if it will be retried


@dataclass(frozen=True)
class Page:
    items: list[SyncItem]
    next: str | None  # pass as ``after`` for the next page; None on the last page


@dataclass(frozen=True)
class Health:
    healthy: bool
    breaker: BreakerState
    paused: bool
    reason: str | None


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
    ) -> None:
        self.config = config = config if config is not None else QueueConfig()
        self._clock = clock or SystemClock()
        self._persistence: StorePersistence | None = None
        if state is None and journal is None and config.persistence_path is not None:
            from .persistence import open_store  # storage is only loaded when used

            # file_io: the storage's I/O seam, for tests that inject failing writes.
            state, self._persistence = open_store(config, file_io)
            journal = self._persistence.journal
        self._state = state if state is not None else QueueState(config)
        self._state.events = []
        self._journal = journal
        self._on_event = on_event
        self._backoff = Backoff(
            round(config.base_retry_delay * 1000), round(config.max_retry_delay * 1000), rng
        )
        self._lease_ms = round(config.lease_timeout * 1000)
        self._dedup = config.enable_deduplication
        self._retention_ms = round(config.retention_period * 1000)
        self._mark_ms = max(1, round(config.cleanup_interval * 1000))
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)  # wakes blocked pops
        self._waiters = 0
        self._calls = 0
        self._closed = False
        self._fail_stop: PersistenceError | None = None
        # After a fail-stop the state is rebuilt once from what is durable (_roll_back).
        self._rollback_lock = threading.Lock()
        self._rolled_back = False
        self._state_lost: str | None = None  # why that rebuild failed: reads refused
        self._ticket = 0  # the journal ticket of the last record this thread of calls made
        self._deferred = threading.local()
        self._stop = threading.Event()
        self._next_cleanup = self._next_persist = time.monotonic()
        self._maintainer: threading.Thread | None = None
        self._offset = 0  # the queue's time = the clock's monotonic reading + this
        try:
            try:
                self._start_clock()
                if self._persistence is not None:
                    self._release_interrupted()
            except PersistenceError as exc:
                # What was on disk was read; writing the first records failed (a full disk,
                # an I/O error): the directory cannot be used, its data is not corrupt.
                raise DataDirUnusable(
                    f"cannot write to the data directory after opening it: {exc.message}"
                ) from exc
        except BaseException:
            if self._persistence is not None:  # release the directory: nothing was served
                with contextlib.suppress(QueueError):
                    self._persistence.store.close()
            raise
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
        self._on_event = on_event

    # ------------------------------------------------------------- producers

    def push(self, item: SyncItem) -> str:
        """Add one item; returns its id. ``DuplicateItem`` if that id is already retained."""
        if not isinstance(item, SyncItem):
            raise InvalidParams(f"item: expected SyncItem, got {type(item).__name__}")
        with self._lock:
            now = self._begin_change()
            if self._taken(item.id):
                raise DuplicateItem(f"an item with id {item.id!r} already exists", id=item.id)
            self._check_capacity(1)
            self._apply(Push(now, (item.admitted(now, self.config.max_retries),)))
            ticket = self._ticket
            if self._waiters:
                self._ready.notify_all()
        self._commit(ticket)
        return item.id

    def push_batch(self, items: Sequence[SyncItem]) -> list[str]:
        """Add items; returns the ids added (duplicates are skipped). Capacity: all or nothing."""
        return self._push(items).ids

    def push_many(self, items: Sequence[SyncItem]) -> PushBatchResult:
        """Like ``push_batch``, also saying which ids were skipped as duplicates."""
        return self._push(items)

    def _push(self, items: Sequence[SyncItem]) -> PushBatchResult:
        for item in items:
            if not isinstance(item, SyncItem):
                raise InvalidParams(f"items: expected SyncItem, got {type(item).__name__}")
        with self._lock:
            now = self._begin_change()
            accepted: list[SyncItem] = []
            duplicates: list[str] = []
            seen: set[str] = set()
            for item in items:
                if item.id in seen or self._taken(item.id):
                    duplicates.append(item.id)
                    continue
                seen.add(item.id)
                accepted.append(item.admitted(now, self.config.max_retries))
            if accepted:
                self._check_capacity(len(accepted))
                self._apply(Push(now, tuple(accepted)))
            ticket = self._ticket
            self._wake()
        self._commit(ticket)
        return PushBatchResult([item.id for item in accepted], duplicates)

    def _taken(self, item_id: str) -> bool:
        """Is this id refused as a duplicate? With deduplication every retained item counts;
        without it, only live ones (a finished item's id may be reused)."""
        existing = self._state.items.get(item_id)
        return existing is not None and (self._dedup or existing.status in LIVE)

    def _check_capacity(self, adding: int) -> None:
        size = self._state.live_count
        if size + adding > self.config.max_capacity:
            raise CapacityExceeded(
                f"the queue holds {size} of at most {self.config.max_capacity} items; "
                f"{adding} more do not fit",
                capacity=self.config.max_capacity,
                size=size,
            )

    # ------------------------------------------------------------- consumers

    def pop(
        self,
        timeout: Duration | None = None,
        lease: Duration | None = None,
        partition: int | None = None,
    ) -> SyncItem | None:
        """Hand out the next ready item, now ``processing`` under a lease; None if none.

        With ``timeout`` it waits up to that long for one (without spinning).
        """
        items = self.pop_batch(1, timeout=timeout, lease=lease, partition=partition)
        return items[0] if items else None

    def pop_batch(
        self,
        n: int | None = None,
        timeout: Duration | None = None,
        lease: Duration | None = None,
        partition: int | None = None,
    ) -> list[SyncItem]:
        """Hand out up to ``n`` ready items (default ``batch_size``); waits like ``pop``."""
        if n is None:
            n = self.config.batch_size
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidParams(f"max: expected an integer >= 1, got {n!r}", field="max")
        lease_ms = self._lease_ms if lease is None else to_ms(lease, "lease")
        if lease_ms <= 0:
            raise InvalidParams("lease: must be positive", field="leaseMs")
        wait_s = 0.0 if timeout is None else to_ms(timeout, "timeout") / 1000
        partition = self._check_partition(partition)
        deadline = time.monotonic() + wait_s
        result: list[SyncItem] | None = None  # becomes [] once this call has waited
        with self._lock:
            while True:
                if self._closed and result is not None:
                    result = []  # woken by shutdown: waiting pops get nothing
                    break
                now = self._begin_change()
                ids = self._state.select(n, partition, now)
                if ids:
                    handed = self._apply(Pop(now, tuple(ids), lease_ms))
                    result = [item.copy() for item in handed]
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    result = []
                    break
                wakeup = self._state.next_wakeup()
                if wakeup is not None:
                    remaining = min(remaining, max(0.001, (wakeup - now) / 1000))
                self._waiters += 1
                try:
                    self._ready.wait(remaining)
                finally:
                    self._waiters -= 1
                result = []
            ticket = self._ticket
        self._commit(ticket)
        return result

    def _check_partition(self, partition: int | None) -> int | None:
        if partition is None:
            return None
        count = self.config.partitions
        if (
            isinstance(partition, bool)
            or not isinstance(partition, int)
            or not 0 <= partition < count
        ):
            hint = "" if self.config.enable_partitioning else " (partitioning is off)"
            raise InvalidParams(
                f"partition: expected an integer 0-{count - 1}{hint}, got {partition!r}",
                field="partition",
            )
        return partition

    def mark_completed(self, id: str, lease_id: str | None = None) -> None:
        """The item's work is done. Only for a ``processing`` item whose lease is current."""
        with self._lock:
            now = self._begin_change()
            self._leased(id, lease_id, "complete")
            self._apply(Complete(now, id))
            ticket = self._ticket
            self._wake()
        self._commit(ticket)

    def mark_failed(self, id: str, error: str | None = None, lease_id: str | None = None) -> bool:
        """The attempt failed. True: the item will be retried; False: it is now ``failed``."""
        return self.fail(id, error, lease_id).retry

    def fail(self, id: str, error: str | None = None, lease_id: str | None = None) -> FailResult:
        if error is not None and not isinstance(error, str):
            raise InvalidParams("error: expected a string", field="error")
        with self._lock:
            now = self._begin_change()
            item = self._leased(id, lease_id, "fail")
            retry_at = now + self._backoff.delay_ms(item.attempts)
            retry = self._apply(Fail(now, id, error, retry_at))
            ticket = self._ticket
            self._wake()
        self._commit(ticket)
        return FailResult(retry, retry_at if retry else None)

    def extend_lease(self, id: str, lease: Duration, lease_id: str | None = None) -> int:
        """Heartbeat: the lease now ends ``lease`` from now. Returns the new expiry (ms)."""
        lease_ms = to_ms(lease, "lease")
        if lease_ms <= 0:
            raise InvalidParams("leaseMs: must be positive", field="leaseMs")
        with self._lock:
            now = self._begin_change()
            self._leased(id, lease_id, "extend the lease of")
            expires_at: int = self._apply(ExtendLease(now, id, now + lease_ms))
            ticket = self._ticket
        self._commit(ticket)
        return expires_at

    def _leased(self, item_id: str, lease_id: str | None, action: str) -> SyncItem:
        item = self._item(item_id)
        if item.status is not ItemStatus.PROCESSING:
            why = " (its lease expired)" if item.last_error == LEASE_EXPIRED else ""
            raise InvalidState(
                f"cannot {action} item {item_id!r}: it is {item.status.value}, not processing{why}",
                id=item_id,
                status=item.status.value,
            )
        if lease_id is not None and lease_id != item.lease_id:
            raise InvalidState(
                f"cannot {action} item {item_id!r}: lease {lease_id!r} is not "
                "current (the item was handed out again after it expired)",
                id=item_id,
            )
        return item

    # ------------------------------------------------------------ management

    def cancel(self, id: str) -> None:
        """A ``pending`` or ``processing`` item becomes ``cancelled``."""
        with self._lock:
            now = self._begin_change()
            item = self._item(id)
            if item.status not in (ItemStatus.PENDING, ItemStatus.PROCESSING):
                raise InvalidState(
                    f"cannot cancel item {id!r}: it is {item.status.value}",
                    id=id,
                    status=item.status.value,
                )
            self._apply(Cancel(now, id))
            ticket = self._ticket
            self._wake()
        self._commit(ticket)

    def requeue(self, id: str) -> None:
        """A ``failed`` or ``cancelled`` item goes back to pending, last in line, attempts 0."""
        with self._lock:
            now = self._begin_change()
            item = self._item(id)
            if item.status not in (ItemStatus.FAILED, ItemStatus.CANCELLED):
                raise InvalidState(
                    f"cannot requeue item {id!r}: it is {item.status.value}; "
                    "only failed or cancelled items can be requeued",
                    id=id,
                    status=item.status.value,
                )
            if self._state.live_count >= self.config.max_capacity:
                raise CapacityExceeded(
                    f"the queue is full ({self.config.max_capacity} items)",
                    capacity=self.config.max_capacity,
                )
            self._apply(Requeue(now, id))
            ticket = self._ticket
            self._wake()
        self._commit(ticket)

    def purge(self, status: ItemStatus | str) -> int:
        """Forget every item with ``status`` (completed, failed or cancelled only)."""
        parsed = ItemStatus.parse(status)
        if parsed not in PURGEABLE:
            raise InvalidParams(
                f"status: only completed, failed or cancelled items can be "
                f"purged, not {parsed.value}",
                field="status",
            )
        with self._lock:
            now = self._begin_change()
            removed: int = self._apply(Purge(now, parsed.value))
            ticket = self._ticket
        self._commit(ticket)
        return removed

    def pause(self) -> None:
        """Stop handing out items (durable, like any change) until ``resume``."""
        self._set_paused(True)

    def resume(self) -> None:
        self._set_paused(False)

    def _set_paused(self, paused: bool) -> None:
        with self._lock:
            now = self._begin_change()
            if self._state.paused != paused:
                self._apply(SetPaused(now, paused))
            ticket = self._ticket
            self._wake()
        self._commit(ticket)

    def run_maintenance(self) -> None:
        """Apply what is due (leases, TTLs, retention, breaker) and tidy the indexes."""
        with self._lock:
            if self._closed or self._storage_failure() is not None:
                return
            now = self._time()
            self._advance(now)
            if self._state.items and now - self._state.last_t >= self._mark_ms:
                # Idle for a while: record the queue's time, so that a crash loses at most
                # this much of it (for retention, and for re-basing on open).
                self._apply(Rebase(now, 0, 0))
            self._state.compact_indexes()
            ticket = self._ticket
            self._wake()
        self._commit(ticket)

    # ----------------------------------------------------------------- reads

    def get(self, id: str) -> SyncItem:
        with self._reading():
            return self._item(id).copy()

    def list(
        self,
        status: ItemStatus | str | None = None,
        priority: Priority | str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> Page:
        """Retained items in push order, a page at a time (``after`` = previous ``next``)."""
        want_status = None if status is None else ItemStatus.parse(status)
        want_priority = None if priority is None else Priority.parse(priority)
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not 1 <= limit <= MAX_LIST_LIMIT
        ):
            raise InvalidParams(
                f"limit: expected an integer 1-{MAX_LIST_LIMIT}, got {limit!r}", field="limit"
            )
        after_seq = _parse_cursor(after)
        page: list[SyncItem] = []
        with self._reading():
            last_seq = 0
            more = False
            for item in self._items_after(after_seq):
                if want_status is not None and item.status is not want_status:
                    continue
                if want_priority is not None and item.priority is not want_priority:
                    continue
                if len(page) == limit:
                    more = True
                    break
                page.append(item.copy())
                last_seq = item._seq
        return Page(page, str(last_seq) if more else None)

    def _items_after(self, after_seq: int) -> Iterator[SyncItem]:
        items = self._state.iter_items()
        if after_seq:
            for item in items:
                if item._seq > after_seq:
                    yield item
                    break
        yield from items

    def metrics(self) -> Metrics:
        with self._reading():
            metrics = self._state.metrics_at(self._now())
        if self._persistence is not None:
            metrics.storage.update(self._persistence.stats())
        return metrics

    def throughput(self) -> Throughput:
        with self._lock:
            return self._state.metrics.throughput(self._now())

    def health(self) -> Health:
        if self._state_lost is not None:  # reads are refused, but health says why
            with self._lock:
                state = self._state
                return Health(
                    False, state.breaker.state, state.paused, f"storage failed: {self._state_lost}"
                )
        with self._reading():
            breaker = self._state.breaker.state
            paused = self._state.paused
            failure = self._storage_failure()
            if failure is not None:
                return Health(False, breaker, paused, f"storage failed: {failure}")
            if breaker != "closed":
                return Health(False, breaker, paused, f"circuit breaker is {breaker}")
            return Health(True, breaker, paused, None)

    def health_check(self) -> bool:
        """False while the circuit breaker is not closed or storage has failed."""
        return self.health().healthy

    def ready_count(self) -> int:
        """Items that ``pop`` could hand out right now (0 while paused or the breaker is open)."""
        return self.poll()[0]

    def poll(self) -> tuple[int, int | None, int]:
        """``ready_count()``, when something next becomes due (ms, or None) and the queue's
        time (ms), under one lock:
        what an owner with its own timers (the stdio server) looks at after each read."""
        with self._reading():
            state = self._state
            now = self._now()
            ready = 0
            if not (state.paused or state.breaker.may_hand_out() == 0):
                ready = state.ready_now(now)
            return ready, state.next_wakeup(), now

    def __len__(self) -> int:
        """Pending + processing items (what capacity counts)."""
        with self._lock:
            return self._state.live_count

    # --------------------------------------------------------------- lifecycle

    def flush(self) -> None:
        """Everything so far is durable and compacted into a snapshot on return."""
        self.flush_async().result()

    def flush_async(self) -> Future[None]:
        """``flush`` without waiting: the future completes when what ``flush`` promises
        holds for everything committed before this call (or fails with the error). The
        journal is folded in the store's background thread, never in the caller's."""
        if self._persistence is not None:
            try:
                return self._persistence.flush_async(self._encode_live)
            except QueueError as exc:  # failed or closed store: the future says so
                failed: Future[None] = Future()
                failed.set_exception(exc)
                return failed
        done: Future[None] = Future()
        done.set_result(None)
        return done

    def shutdown(self) -> None:
        """Stop taking changes, wake waiting pops (they return nothing), stop maintenance,
        and persist everything (then the data directory is released)."""
        with self._lock:
            if self._closed:
                return
            self._mark_time()
            self._closed = True
            self._ready.notify_all()
        self._stop.set()
        if self._maintainer is not None and self._maintainer is not threading.current_thread():
            self._maintainer.join()
        if self._persistence is not None:
            self._persistence.close(self._encode_live)

    def _encode_live(self) -> bytes:
        from .persistence import encode_state

        with self._lock:
            return encode_state(self._state)

    def _start_clock(self) -> None:
        """Anchor the queue's time on the wall clock, re-basing the recovered state on it.

        The wall clock behind the last recorded time (it had run ahead, or runs behind now):
        every deadline moves back with the queue's time, so each keeps the time it had left,
        and retention keeps what it had left too. The wall clock ahead (the queue was closed
        for a while, or the clock runs ahead now; the two cannot be told apart): deadlines
        stay, so what came due while closed is due now, but retention does not count the gap
        (README, Semantics: time the queue did not measure never drops an item).
        """
        wall = self._clock.now_ms()
        mono = self._clock.monotonic_ms()
        last = self._state.last_t
        state = self._state
        finished = len(state.items) - state.live_count
        op: Rebase | None = None
        if last and wall < last:
            op = Rebase(wall, wall - last, wall - last)
        elif last and wall > last and finished:
            op = Rebase(wall, 0, wall - last)
        if op is not None:
            with self._lock:
                self._apply(op)
                ticket = self._ticket
            self._commit(ticket)
        self._set_anchor(max(wall, state.last_t), mono)

    def _set_anchor(self, now: int, mono: int) -> None:
        """From here on the queue's time is ``now`` plus the monotonic time elapsed since
        ``mono``. If the two readings agree to ``ALIGNED_MS`` the monotonic one is used as it
        is: two clocks floored to ms apart could put the queue's time a ms ahead of the wall
        clock (a lease ending after the wall clock says it should)."""
        offset = now - mono
        self._offset = 0 if abs(offset) <= ALIGNED_MS else offset

    def _mark_time(self) -> None:
        """On close, record the queue's time (a ``Rebase`` that moves nothing): the next open
        measures the wall clock against the time the queue closed, not against its last
        change, so idle time before the close is neither lost for retention nor given back
        to a deadline when the wall clock turns out to be behind."""
        if self._storage_failure() is not None:
            return
        now = self._now()
        if self._state.items and now > self._state.last_t:  # an empty queue has no timers
            with contextlib.suppress(QueueError):  # storage failing: nothing more to save
                self._apply(Rebase(now, 0, 0))

    def _release_interrupted(self) -> None:
        """Items that were processing when the process died go back through the retry
        policy: their attempt counted (a poison item that kills the process every time
        ends up ``failed`` instead of crashing it forever)."""
        if not self._state.status_counts[ItemStatus.PROCESSING]:
            return
        with self._lock:
            now = self._now()
            for item in [i for i in self._state.iter_items() if i.status is ItemStatus.PROCESSING]:
                self._apply(LeaseExpired(now, item.id, INTERRUPTED, now))
            ticket = self._ticket
        self._commit(ticket)

    @property
    def quarantined(self) -> Sequence[dict[str, Any]]:
        """What opening set aside: damaged journal blocks moved to quarantine files
        (``file``, ``offset``, ``bytes``, ``quarantine``, ``reason``); empty if none."""
        if self._persistence is None:
            return []
        return [q.to_dict() for q in self._persistence.store.quarantined]

    @property
    def is_shut_down(self) -> bool:
        return self._closed

    @property
    def storage_failure(self) -> str | None:
        """Why storage failed (every change is refused until the queue is reopened), or None."""
        return self._storage_failure()

    def defer_commits(self) -> None:
        """From now on this thread's changes are not committed one by one: they are made
        durable by ``commit_deferred`` (the stdio server calls it once per read batch, before
        it writes any reply: group commit). Until then, nothing may be acknowledged."""
        if getattr(self._deferred, "ticket", None) is None:
            self._deferred.ticket = 0

    def commit_deferred(self) -> None:
        """Make this thread's deferred changes durable. ``PersistenceError`` if that fails:
        then none of them may be acknowledged (and the queue is fail-stopped)."""
        ticket = getattr(self._deferred, "ticket", None)
        if ticket:
            self._deferred.ticket = 0
            self._commit_now(ticket)

    @contextlib.contextmanager
    def deferred_commit(self) -> Iterator[None]:
        """``defer_commits`` for one block; it commits when the block ends."""
        if getattr(self._deferred, "ticket", None) is not None:
            yield  # already deferred by an outer block or the server
            return
        self.defer_commits()
        try:
            yield
        finally:
            ticket = self._deferred.ticket
            self._deferred.ticket = None
        if ticket:
            self._commit_now(ticket)

    def tick(self) -> float:
        """Run the maintenance and persistence work that is due; seconds until more is.

        The maintenance thread calls this; an owner that runs without that thread (the
        stdio server) calls it from its own loop.
        """
        now = time.monotonic()
        if now >= self._next_cleanup:
            self._next_cleanup = now + self.config.cleanup_interval
            with contextlib.suppress(QueueError):  # fail-stop or shutdown: seen by callers
                self.run_maintenance()
        next_due = self._next_cleanup
        if self._persistence is not None:
            if not self._rolled_back and self._persistence.failure is not None:
                # Failed with no commit of ours to see it (the periodic fsync): records
                # applied since the last write are not durable and never will be.
                self._roll_back()
            if now >= self._next_persist:
                self._next_persist = now + self._persistence.interval
                with contextlib.suppress(QueueError):
                    self._persistence.tick(self._encode_live)
            next_due = min(next_due, self._next_persist)
        return max(0.0, next_due - time.monotonic())

    # ----------------------------------------------------------------- inside

    def _now(self) -> int:
        """The queue's time: the anchor plus the monotonic time elapsed since (no re-base)."""
        now = self._clock.monotonic_ms() + self._offset
        last = self._state.last_t
        return now if now > last else last

    def _time(self) -> int:
        """The queue's time for a call that may change the queue: if the wall clock was set
        (it parted from the queue's time by more than ``REBASE_TOLERANCE_MS``), re-base onto
        it first: every deadline moves by the same amount, so each keeps the real time it had
        left; retention does not count the jump; timestamps follow the corrected clock."""
        clock = self._clock
        wall = clock.now_ms()
        mono = clock.monotonic_ms()
        now = mono + self._offset
        last = self._state.last_t
        if now < last:
            now = last
        if -REBASE_TOLERANCE_MS <= wall - now <= REBASE_TOLERANCE_MS:
            return now
        self._apply(Rebase(wall, wall - now, wall - now))
        self._set_anchor(wall, mono)
        return wall

    def _begin_change(self) -> int:
        """Checks and catch-up shared by every change; returns the time of the change."""
        if self._closed:
            raise ShuttingDown("the queue is shutting down")
        failure = self._storage_failure()
        if failure is not None:
            raise PersistenceError(
                "storage failed earlier and the queue refuses changes until it is reopened: "
                f"{failure}"
            )
        now = self._time()
        self._advance(now)
        return now

    def _storage_failure(self) -> str | None:
        if self._fail_stop is not None:
            return self._fail_stop.message
        if self._persistence is not None:
            return self._persistence.failure
        return None

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """The lock for a read, after catching up with time (which may change the queue:
        a lease ran out, an item expired); events that raised go out after the lock."""
        if not self._rolled_back and self._storage_failure() is not None:
            # Storage failed and the live state may still hold the refused group: do (or
            # wait for) the rollback first, outside the lock it takes. A caller refused up
            # front (``_begin_change``) must not read the refused changes of the callers
            # still waiting for that rollback.
            self._roll_back()
        before = ticket = 0
        try:
            with self._lock:
                if self._state_lost is not None:
                    raise PersistenceError(self._state_lost)
                before = self._ticket
                if not self._closed and self._storage_failure() is None:
                    self._advance(self._time())
                ticket = self._ticket
                yield
        finally:
            if ticket != before:
                # Catching up wrote records (a lease ran out, a re-base): they are committed
                # like any change (in the server, with the cycle's commit), or a reply could
                # show what a crash right after it undoes.
                self._commit(ticket)
            elif self._state.events:
                self._deliver_events()

    def _advance(self, now: int) -> None:
        """Turn whatever became due by ``now`` into operation records.

        This runs before every call, so each check is one comparison with the top of an index.
        """
        state = self._state
        leases = state.leases
        if leases and leases[0][0] <= now:
            for item in state.due_leases(now):
                retry_at = now + self._backoff.delay_ms(item.attempts)
                self._apply(LeaseExpired(now, item.id, LEASE_EXPIRED, retry_at))
        ttl = state.ttl
        if ttl and ttl[0][0] <= now:
            expired = state.due_expiries(now)
            if expired:
                self._apply(Expire(now, tuple(expired)))
        finished = state.finished
        if finished and finished[0][0] + self._retention_ms <= now - state.unmeasured:
            dropped = state.due_retention(now, self._retention_ms)
            if dropped:
                self._apply(Drop(now, tuple(dropped)))
        if state.breaker.state == "open" and state.breaker.probe_due(now):
            self._apply(BreakerProbe(now))
        self._calls += 1
        if not self._calls & 0x3FF:  # every 1024 calls: keep lazily-deleted heaps bounded
            state.compact_indexes()

    def _apply(self, op: Op) -> Any:
        journal = self._journal
        if journal is not None:
            # Recorded first: if the journal refuses the record, nothing was applied.
            self._ticket = journal.append(op)
        return self._state.apply(op)

    def _deliver_events(self) -> None:
        events = self._state.events
        assert events is not None
        self._state.events = []  # another thread's event lands in the new list, not lost
        if self._on_event is not None:
            for event in events:
                try:
                    self._on_event(event)
                except Exception:  # a listener's bug must not break the queue
                    log.exception("on_event listener failed")

    def _commit(self, ticket: int) -> None:
        """After a change, outside the lock: make it durable (or leave that to the deferred
        commit), then deliver the events it raised, so a listener may call the queue."""
        if self._journal is not None and ticket:
            deferred = getattr(self._deferred, "ticket", None)
            if deferred is not None:
                self._deferred.ticket = max(deferred, ticket)
            else:
                self._commit_now(ticket)
        if self._state.events:
            self._deliver_events()

    def _commit_now(self, ticket: int) -> None:
        journal = self._journal
        assert journal is not None
        try:
            journal.commit(ticket)
        except PersistenceError as exc:
            self._fail_stop = exc
            self._roll_back()  # before the error reaches anyone: no later read sees the group
            raise

    def _roll_back(self) -> None:
        """The journal failed: every record after its last good write is refused (its
        callers get ``PersistenceError``), yet those changes were applied in memory. Replace
        the state with the one rebuilt from the directory (what a reopen recovers), once;
        callers of the failed group wait here, so no read after their error shows it."""
        persistence = self._persistence
        if persistence is None or persistence.journal is None:
            return
        with self._rollback_lock:
            if self._rolled_back:
                return
            try:
                state: QueueState | None = persistence.durable_state()
            except Exception as exc:
                # Serving the refused changes would be a lie: refuse reads as well.
                reason = exc.message if isinstance(exc, QueueError) else repr(exc)
                log.error("cannot rebuild the durable state after a storage failure: %s", reason)
                state = None
                lost = (
                    "storage failed and the durable state could not be read back "
                    f"({reason}); reopen the queue"
                )
            with self._lock:
                if state is None:
                    self._state_lost = lost
                else:
                    state.events = []
                    self._state = state
                    # A refused Rebase may have moved the anchor: back to the durable time.
                    self._set_anchor(
                        max(self._clock.now_ms(), state.last_t), self._clock.monotonic_ms()
                    )
                self._rolled_back = True
                self._ready.notify_all()  # waiting pops look at the rebuilt state

    def _wake(self) -> None:
        if self._waiters:
            self._ready.notify_all()

    def _item(self, item_id: str) -> SyncItem:
        item = self._state.items.get(item_id)
        if item is None:
            check_id(item_id)
            raise ItemNotFound(f"no item with id {item_id!r}", id=item_id)
        return item

    def _maintain(self) -> None:
        wait = 0.0
        while not self._stop.wait(wait):
            wait = max(0.01, self.tick())


def _parse_cursor(after: str | None) -> int:
    if after is None:
        return 0
    try:
        seq = int(after)
    except (TypeError, ValueError):
        seq = -1
    if seq < 0:
        raise InvalidParams(
            f"after: not a cursor from a previous page: {after!r:.40}", field="after"
        )
    return seq
