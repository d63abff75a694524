"""The queue as a deterministic state machine.

Rule 1: state changes only in :meth:`QueueState.apply`, one operation record at a time. The
live queue, journal replay and compaction all call it, so they cannot disagree. Apply trusts
its input: the core (``core.py``) checks a request against the transition table
(``legality.FROM_STATUS``) and decides everything that is not a function of the state (the
time, jitter, which items a pop hands out) before it makes the record. Apply does no I/O and
never reads a clock. Records read back from disk have no core in front of them: replay and
compaction pass each through :meth:`QueueState.check` (``legality.check_op``: the same table
and the record's own rules) first, so an impossible record is refused, never applied.

Rule 2: queries that pick items or find what is due (``select``, ``due_*``) may tidy the
indexes (pop stale heap entries, move due delayed items to the ready heap) but never change an
item. The logical state is the items, their order and the counters; the indexes are derived
from it and rebuilt on load.

Indexes, all with lazy deletion: an entry in a heap is current only while its token equals the
item's ``_token`` (every insertion draws a fresh token), so moving an item never searches.

- ``ready``: one heap per partition of ``(priority << 40 | seq, token, item)``: pop order.
- ``delayed``: ``(available_at, token, item)`` for pending items not yet due.
- ``leases``: ``(lease_expires_at, token, item)`` for processing items.
- ``ttl``: ``(expires_at, token, item)`` for pending items with a time-to-live.
- ``finished``: ``(finished_at, item)`` in finishing order, for retention, in *measured* time:
  the queue's time minus ``unmeasured`` (time the queue did not measure itself: the wall clock
  set forward, or time it was closed; ``Rebase`` records add to it). A finished item's
  ``_handed_at`` holds that measured time, so retention never counts a clock that ran ahead.
- ``lines``: per partition key, the live items of that key in push order; ``unique_lines`` the
  same per unique-work key. Only an item at the front of every line it is in is scheduled;
  the others wait (``BLOCKED``) until the items ahead finish. A ``held`` item is in its lines
  but never scheduled (``NONE``): the items behind it wait until it is released and done.
- ``dest_ready``: per destination (origin), a ready heap like ``ready``: items with a
  destination are handed out only to pops that ask for destinations (the outbox).

Why one module of this size: the appliers, the indexes, their queries and the snapshot loader
(which fills the indexes directly, for speed) share the lazy-deletion invariants above; split
across modules, each half would have to know the other's private fields. What does not touch
the indexes lives elsewhere: the legality checks (``legality.py``), the entry and its codecs
(``entry.py``), the snapshot's bytes (``persistence.py``).
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from heapq import heapify, heappop, heappush
from typing import Any, NamedTuple

from orjson import dumps

from .breaker import BreakerChanged, CircuitBreaker
from .config import QueueConfig
from .destinations import Destinations
from .entry import BLOCKED, DELAYED, NONE, READY, Entry
from .item import ItemStatus, Priority
from .legality import (
    FINISHED,
    MAX_CLOCK_MS,
    check_item,
    check_op,
    check_time,
)
from .metrics import Metrics, MetricsRecorder
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

__all__ = ["Event", "ItemFailed", "QueueState", "partition_of"]

PENDING = ItemStatus.PENDING
PROCESSING = ItemStatus.PROCESSING
HELD = ItemStatus.HELD
WAITING = (PENDING, HELD)  # statuses whose time-to-live counts
SEQ_BITS = 40  # ready-heap key: priority in the high bits, push order below
SNAPSHOT_VERSION = 2  # 2: "unmeasured"; a finished item's handedAt is its measured finish time


class ItemFailed(NamedTuple):
    """An event: an item ran out of retries and is now ``failed``."""

    id: str
    attempts: int
    error: str | None


Event = ItemFailed | BreakerChanged
HeapEntry = tuple[int, int, Entry]


def partition_of(item_id: str, partition_key: str | None, partitions: int) -> int:
    """Keys map to partitions by a stable hash (not Python's, which changes per process)."""
    if partitions == 1:
        return 0
    return (
        zlib.crc32((partition_key if partition_key is not None else item_id).encode()) % partitions
    )


def _no_index(heap: list[HeapEntry], entry: HeapEntry) -> None:
    """An unindexed state's heap insertion (see ``QueueState.indexed``)."""


def _payloads_as_json(entries: Iterable[Entry]) -> None:
    """An unindexed state (the fold) only writes its items out again, and the state machine
    never reads a payload: it keeps each payload as its JSON bytes (``persistence`` writes
    them back as they are). A 100-byte payload is then one 150-byte object instead of a
    dict and a string of about 390: the fold's copy of a large queue is what peaks memory."""
    for entry in entries:
        entry.payload = _json_bytes(entry.payload)
        # One int object for equal times, as a pushed entry has (32 bytes each); only
        # ints (a damaged record's other values stay as they are, for the checks).
        created = entry.created_at
        if type(created) is int:
            if type(entry.updated_at) is int and entry.updated_at == created:
                entry.updated_at = created
            if type(entry.available_at) is int and entry.available_at == created:
                entry.available_at = created


def _take_one(heap: list[HeapEntry], n: int) -> list[str]:
    """``QueueState._take`` from one heap (one partition, or an outbox with one destination
    left): no merge, so one pass over its front (stale entries are skipped, as in the merge)."""
    chosen: list[str] = []
    while heap and len(chosen) < n:
        _, token, item = heappop(heap)
        if item._where == READY and item._token == token:
            item._where = NONE  # so a repeated pick in this call cannot happen
            chosen.append(item.id)
    return chosen


def _join_line(lines: dict[str, deque[Entry]], key: str | None, item: Entry) -> bool:
    """Put ``item`` at the back of the line ``key`` (if any); True if others are ahead."""
    if key is None:
        return False
    line = lines.get(key)
    if line:
        line.append(item)
        return True
    lines[key] = deque((item,))
    return False


def _json_bytes(value: Any) -> bytes:
    """``value`` as JSON, in a bytes object of its own size: ``orjson.dumps`` returns one
    that holds on to a 4 KiB allocation (measured: 393 MB for 100 k payloads kept)."""
    return memoryview(dumps(value)).tobytes()


class QueueState:
    def __init__(self, config: QueueConfig, indexed: bool = True) -> None:
        self.config = config
        # Without indexes (the fold: records in, a snapshot out) no heap is kept: only
        # queries read them, and the fold makes none. A million pending items then cost
        # their entries, not their heap tuples too. Payloads are kept as their JSON
        # bytes (``_payloads_as_json``).
        self.indexed = indexed
        self.items: dict[str, Entry] = {}  # insertion order is push (seq) order
        self.seq = 0
        self.leases_issued = 0
        self.last_t = 0
        self.unmeasured = 0  # queue time minus measured time (see ``finished`` above)
        self.paused = False
        ms = config.timings()
        self.breaker = CircuitBreaker(config.breaker_failure_threshold, ms.breaker_cooldown_ms)
        self.metrics = MetricsRecorder(ms.throughput_window_ms)
        self.status_counts = dict.fromkeys(ItemStatus, 0)
        self.live_by_priority = [0] * len(Priority)
        self._partitions = config.partitions
        self.ready: list[list[HeapEntry]] = [[] for _ in range(self._partitions)]
        self.delayed: list[HeapEntry] = []
        self.leases: list[HeapEntry] = []
        self.ttl: list[HeapEntry] = []
        self.finished: deque[tuple[int, Entry]] = deque()
        self.lines: dict[str, deque[Entry]] = {}
        self.unique_lines: dict[str, deque[Entry]] = {}
        self.dest_ready: dict[str, list[HeapEntry]] = {}
        self.destinations = Destinations()
        self.ready_count = 0  # items without a destination (the app's pops)
        self.dest_ready_count = 0
        self.delayed_count = 0
        self._token = 0
        self._index: Callable[[list[HeapEntry], HeapEntry], None] = (
            heappush if indexed else _no_index
        )
        self._push_entry: Callable[[list[HeapEntry], HeapEntry], None] = self._index
        # Events (item failed, breaker changed) go here while it is a list; replay leaves it
        # None, so recovering a journal does not announce old news again.
        self.events: list[Event] | None = None
        self._appliers: dict[type[Any], Callable[[Any], Any]] = {
            Push: self._push,
            Pop: self._pop,
            Complete: self._complete,
            Fail: self._fail,
            LeaseExpired: self._lease_expired,
            Cancel: self._cancel,
            Release: self._release,
            Reject: self._reject,
            Expire: self._expire,
            Requeue: self._requeue,
            ExtendLease: self._extend_lease,
            Purge: self._purge,
            Drop: self._drop,
            SetPaused: self._set_paused,
            BreakerProbe: self._breaker_probe,
            Rebase: self._rebase,
        }

    # ------------------------------------------------------------------ apply

    def apply(self, op: Op) -> Any:
        """Apply one operation record. The only way the queue's state changes."""
        if op.t > self.last_t:
            self.last_t = op.t
        return self._appliers[type(op)](op)

    # ------------------------------------------------------------------ check

    def check(self, op: Op) -> None:
        """Raise ``ValueError`` naming the problem if ``op`` cannot follow this state: for
        records read back from disk (``legality.check_op``)."""
        check_op(self, op)

    # ------------------------------------------------------------------ appliers

    def _push(self, op: Push) -> None:
        if op.replaced:  # unique work's replace: rare, and few
            for n, item in enumerate(op.items):
                for index, target in op.replaced:
                    if index == n:
                        self._cancel_item(self.items[target], op.t, "replaced")
                self._add((item,), op.t)
        else:
            self._add(op.items, op.t)

    def _add(self, items: tuple[Entry, ...], t: int) -> None:
        """New items (held or pending, as pushed) join the queue, in push order."""
        if not self.indexed:
            _payloads_as_json(items)
        for item in items:
            old = self.items.get(item.id)
            if old is not None:  # a finished item whose id is reused (deduplication off)
                self._forget(old)
            self.seq += 1
            item._seq = self.seq
            item._partition = partition_of(item.id, item.partition_key, self._partitions)
            self.items[item.id] = item
            self.status_counts[item.status] += 1  # held or pending (legality: the records)
            if item.destination is not None:
                self.destinations.count(item.destination, item.status, 1)
            self.live_by_priority[item.priority] += 1
            self._enter_line_or_schedule(item, t)
        self.metrics.on_enqueue(t, len(items))

    def _pop(self, op: Pop) -> list[Entry]:
        t = op.t
        expires_at = t + op.lease_ms
        # Looked up once per record, not per item: every item a pop hands out comes here.
        items, leases, push_entry = self.items, self.leases, self._push_entry
        set_status, unschedule = self._set_status, self._unschedule
        half_open = self.breaker.state == "halfOpen"  # no item here changes the breaker
        # The lease and token counters, counted here and stored once (nothing in the loop
        # reads them): what ``_next_token`` and ``leases_issued += 1`` would give each item.
        issued, token = self.leases_issued, self._token
        handed = []
        waits = []
        for item_id in op.ids:
            item = items[item_id]
            unschedule(item)
            set_status(item, PROCESSING)
            item.attempts += 1
            issued += 1
            item.lease_id = f"{issued:x}"
            item.lease_expires_at = expires_at
            item.updated_at = t
            item._handed_at = t
            token += 1
            item._token = token
            push_entry(leases, (expires_at, token, item))
            waits.append(max(0, t - item.available_at))
            if half_open and item.destination is None:
                self.breaker.probe_id = item_id
            handed.append(item)
        self.leases_issued, self._token = issued, token
        self.metrics.on_dequeue_all(t, waits)
        return handed

    def _complete(self, op: Complete) -> None:
        item = self.items[op.id]
        self.metrics.on_processed(max(0, op.t - item._handed_at))
        self.metrics.completed += 1
        self._finish(item, op.t, ItemStatus.COMPLETED)
        if item.destination is None:  # the outbox has per-destination connectivity instead
            self._emit(self.breaker.on_success())

    def _fail(self, op: Fail) -> bool:
        item = self.items[op.id]
        t = op.t
        destination = item.destination
        if destination is not None:
            self.destinations.error(destination, op.error, t)
        elif op.charge:  # one bad host must not stop the whole queue: only the app's items
            self._emit(self.breaker.on_failure(t))
        if not op.charge:  # the attempt does not count (the destination went away)
            # Not an answer about the app's service either: a half-open breaker must not
            # wait for this probe (nothing would ever be handed out again).
            self.breaker.on_probe_lost(item.id)
            item.attempts -= 1
            item.last_error = op.error
            self._back_to_pending(item, t, op.retry_at)
            return True
        if op.dead:
            item.last_error = op.error
            self._bury(item, t, op.error)
            return False
        return self._retry_or_bury(item, t, op.retry_at, op.error)

    def _lease_expired(self, op: LeaseExpired) -> bool:
        item = self.items[op.id]
        self.breaker.on_probe_lost(op.id)
        if item.destination is not None:
            self.destinations.error(item.destination, op.error, op.t)
        return self._retry_or_bury(item, op.t, op.retry_at, op.error)

    def _cancel(self, op: Cancel) -> None:
        self._cancel_item(self.items[op.id], op.t, None)

    def _cancel_item(self, item: Entry, t: int, error: str | None) -> None:
        """Cancelled; ``error`` (if any) becomes its lastError."""
        self.breaker.on_probe_lost(item.id)
        if error is not None:
            item.last_error = error
        self.metrics.cancelled += 1
        self._finish(item, t, ItemStatus.CANCELLED)

    def _release(self, op: Release) -> None:
        item = self.items[op.id]
        self._set_status(item, PENDING)
        item.updated_at = op.t
        if self._is_front(item):
            self._schedule(item, op.t)
        else:
            item._where = BLOCKED

    def _reject(self, op: Reject) -> None:
        self._cancel_item(self.items[op.id], op.t, op.error)

    def _expire(self, op: Expire) -> None:
        for item_id in op.ids:
            self._cancel_item(self.items[item_id], op.t, "expired")

    def _requeue(self, op: Requeue) -> None:
        item = self.items.pop(op.id)
        self.seq += 1
        item._seq = self.seq
        self.items[op.id] = item  # re-inserted: at the back of the push order
        self._set_status(item, PENDING)
        self.live_by_priority[item.priority] += 1
        item.attempts = 0
        item.available_at = op.t
        item.updated_at = op.t
        if item.expires_at is not None and item.expires_at <= op.t:
            item.expires_at = None  # its time-to-live was for the run that ended
        self._enter_line_or_schedule(item, op.t)

    def _extend_lease(self, op: ExtendLease) -> int:
        item = self.items[op.id]
        item.lease_expires_at = op.expires_at
        item.updated_at = op.t
        item._token = token = self._next_token()
        self._push_entry(self.leases, (op.expires_at, token, item))
        return op.expires_at

    def _purge(self, op: Purge) -> int:
        status = ItemStatus(op.status)
        victims = [item for item in self.items.values() if item.status is status]
        for item in victims:
            self._forget(item)
        # The purged items' retention entries would keep them in memory: rebuild (O(n), as
        # the purge itself).
        self.finished = deque(entry for entry in self.finished if self._retained(entry))
        return len(victims)

    def _drop(self, op: Drop) -> None:
        items, forget = self.items, self._forget
        for item_id in op.ids:
            forget(items[item_id])
        # Drops take the oldest (retention, the count bound): their entries lead the
        # retention index; unlinked here so a replay frees the items as the live queue does.
        finished = self.finished
        while finished and not self._retained(finished[0]):
            finished.popleft()

    def _set_paused(self, op: SetPaused) -> None:
        self.paused = op.paused

    def _breaker_probe(self, op: BreakerProbe) -> None:
        if self.breaker.state == "open":
            self._emit(self.breaker.on_half_open())

    def _rebase(self, op: Rebase) -> None:
        """Move every stored deadline by ``shift``; count ``retention_shift`` as unmeasured
        time; the queue's time becomes ``op.t``, even if that is earlier.

        O(1) unless deadlines move or time goes back (a wall clock that was set: rare). A
        uniform shift keeps the order of each heap, so the heaps are rewritten in place.
        """
        t, shift = op.t, op.shift
        backwards = t < self.last_t
        self.last_t = t  # the one record that may move the queue's time back
        self.unmeasured += op.retention_shift
        if backwards or shift:
            for item in self.items.values():
                if item.created_at > t:  # stamped by a clock that ran ahead
                    item.created_at = t
                if item.updated_at > t:
                    item.updated_at = t
                if shift and item.status not in FINISHED:
                    item.available_at += shift
                    item._handed_at += shift
                    if item.lease_expires_at is not None:
                        item.lease_expires_at += shift
                    if item.expires_at is not None:
                        item.expires_at += shift
        if shift:
            for heap in (self.delayed, self.leases, self.ttl):
                heap[:] = [(at + shift, token, item) for at, token, item in heap]
            if self.breaker.state != "closed":
                self.breaker.opened_at += shift
            self.metrics.shift(shift)

    # ------------------------------------------------------------ transitions

    def _retry_or_bury(self, item: Entry, t: int, retry_at: int, error: str | None) -> bool:
        """A failed attempt: back to pending at ``retry_at`` while retries last, else dead."""
        item.last_error = error
        max_retries = item.max_retries if item.max_retries is not None else 0
        if item.attempts <= max_retries:
            self.metrics.retries += 1
            self._back_to_pending(item, t, retry_at)
            return True
        self._bury(item, t, error)
        return False

    def _back_to_pending(self, item: Entry, t: int, retry_at: int) -> None:
        self._set_status(item, PENDING)
        item.lease_id = None
        item.lease_expires_at = None
        item.available_at = retry_at
        item.updated_at = t
        if item.expires_at is not None:
            self._push_entry(self.ttl, (item.expires_at, self._next_token(), item))
        # Still at the front of its lines: a processing item always is.
        self._schedule(item, t)

    def _bury(self, item: Entry, t: int, error: str | None) -> None:
        self.metrics.failed += 1
        self._finish(item, t, ItemStatus.FAILED)
        self._emit(ItemFailed(item.id, item.attempts, error))

    def _finish(self, item: Entry, t: int, status: ItemStatus) -> None:
        self._unschedule(item)
        self._set_status(item, status)
        self.live_by_priority[item.priority] -= 1
        item.lease_id = None
        item.lease_expires_at = None
        item.updated_at = t
        item._handed_at = finished_at = t - self.unmeasured  # measured time (module docstring)
        self.finished.append((finished_at, item))
        if item.partition_key is not None:
            self._leave_line(self.lines, item.partition_key, item, t)
        if item.unique_key is not None:
            self._leave_line(self.unique_lines, item.unique_key, item, t)

    def _leave_line(self, lines: dict[str, deque[Entry]], key: str, item: Entry, t: int) -> None:
        line = lines[key]
        if line[0] is item:
            line.popleft()
            if not line:
                del lines[key]
                return
            head = line[0]
            # The next in line goes ahead, unless it waits in another line too, or is held.
            if head._where == BLOCKED and self._is_front(head):
                self._schedule(head, t)
        else:  # a waiting (pending or held) item was cancelled or expired
            line.remove(item)

    def _is_front(self, item: Entry) -> bool:
        """Is ``item`` at the front of every line it is in (nothing ahead of it waits)?"""
        key = item.partition_key
        if key is not None and self.lines[key][0] is not item:
            return False
        key = item.unique_key
        return key is None or self.unique_lines[key][0] is item

    def _forget(self, item: Entry) -> None:
        """Remove a finished item for good (purge, retention, or its id being reused)."""
        del self.items[item.id]
        self.status_counts[item.status] -= 1
        if item.destination is not None:
            self.destinations.count(item.destination, item.status, -1)

    def _set_status(self, item: Entry, status: ItemStatus) -> None:
        counts = self.status_counts
        counts[item.status] -= 1
        counts[status] += 1
        if item.destination is not None:
            self.destinations.move(item.destination, item.status, status)
        item.status = status

    def _enter_line_or_schedule(self, item: Entry, t: int) -> None:
        if item.expires_at is not None:
            self._push_entry(self.ttl, (item.expires_at, self._next_token(), item))
        if item.partition_key is None and item.unique_key is None:  # in no line
            if item.status is HELD:
                item._where = NONE
            else:
                self._schedule(item, t)
            return
        # Both lines are joined (no short circuit): the item waits in each it belongs to.
        blocked = _join_line(self.lines, item.partition_key, item)
        blocked = _join_line(self.unique_lines, item.unique_key, item) or blocked
        if item.status is HELD:
            item._where = NONE  # scheduled when released, if nothing is ahead of it then
        elif blocked:
            item._where = BLOCKED
        else:
            self._schedule(item, t)

    def _schedule(self, item: Entry, t: int) -> None:
        item._token = token = self._next_token()
        if item.available_at > t:
            item._where = DELAYED
            self.delayed_count += 1
            self._push_entry(self.delayed, (item.available_at, token, item))
        elif item.destination is None:
            item._where = READY
            self.ready_count += 1
            self._push_entry(
                self.ready[item._partition], ((item.priority << SEQ_BITS) | item._seq, token, item)
            )
        else:
            item._where = READY
            self.dest_ready_count += 1
            heap = self.dest_ready.get(item.destination)
            if heap is None:
                heap = self.dest_ready[item.destination] = []
            self._push_entry(heap, ((item.priority << SEQ_BITS) | item._seq, token, item))

    def _unschedule(self, item: Entry) -> None:
        where = item._where
        if where == READY:
            if item.destination is None:
                self.ready_count -= 1
            else:
                self.dest_ready_count -= 1
        elif where == DELAYED:
            self.delayed_count -= 1
        item._where = NONE

    def _next_token(self) -> int:
        self._token += 1
        return self._token

    def _emit(self, event: Event | None) -> None:
        if event is not None and self.events is not None:
            self.events.append(event)

    # ---------------------------------------------------------------- queries

    def _release_delayed(self, now: int) -> None:
        """Move delayed items that are due to the ready heap (an index change only)."""
        delayed = self.delayed
        while delayed and delayed[0][0] <= now:
            _, token, item = heappop(delayed)
            if item._where == DELAYED and item._token == token:
                self.delayed_count -= 1
                item._where = NONE
                self._schedule(item, now)

    def select(
        self,
        n: int,
        partition: int | None,
        now: int,
        except_destinations: frozenset[str] | None = None,
    ) -> list[str]:
        """The ids of up to ``n`` items a pop may hand out now, in pop order.

        ``except_destinations`` None: items without a destination (the app's pops, under the
        circuit breaker); else items with a destination not in it (the outbox's pops, which
        the breaker does not stop: the outbox judges each destination itself).

        The caller applies a ``Pop`` of exactly these ids right away: their heap entries are
        consumed here.
        """
        self._release_delayed(now)
        if self.paused or n <= 0:
            return []
        if except_destinations is not None:
            heaps = [h for d, h in self.dest_ready.items() if d not in except_destinations]
            chosen = self._take(heaps, n)
            self.dest_ready_count -= len(chosen)
            return chosen
        allowance = self.breaker.may_hand_out()
        if allowance == 0:
            return []
        if allowance > 0:
            n = min(n, allowance)
        heaps = self.ready if partition is None else [self.ready[partition]]
        chosen = self._take(heaps, n)
        self.ready_count -= len(chosen)
        return chosen

    def _take(self, heaps: list[list[HeapEntry]], n: int) -> list[str]:
        """Up to ``n`` ids from the fronts of ``heaps``, merged in pop order (the caller
        counts them off its ready count)."""
        if len(heaps) == 1:
            return _take_one(heaps[0], n)
        chosen: list[str] = []
        while len(chosen) < n:
            best: list[HeapEntry] | None = None
            for heap in heaps:
                while heap and not (heap[0][2]._where == READY and heap[0][2]._token == heap[0][1]):
                    heappop(heap)
                if heap and (best is None or heap[0] < best[0]):
                    best = heap
            if best is None:
                break
            _, _, item = heappop(best)
            item._where = NONE
            chosen.append(item.id)
        return chosen

    def due_leases(self, now: int) -> list[Entry]:
        """Processing items whose lease has run out by ``now``."""
        leases = self.leases
        due = []
        while leases and leases[0][0] <= now:
            _, token, item = heappop(leases)
            if item.status is PROCESSING and item._token == token:
                due.append(item)
        return due

    def due_expiries(self, now: int) -> list[str]:
        """Pending or held items whose time-to-live has run out by ``now``.

        An entry for an item that is processing is dropped: if the item comes back to pending
        (a retry), ``_retry_or_bury`` gives it a new entry.
        """
        ttl = self.ttl
        due: dict[str, None] = {}  # an item may have two entries; list it once
        while ttl and ttl[0][0] <= now:
            expires_at, _, item = heappop(ttl)
            if (
                item.status in WAITING
                and item.expires_at == expires_at
                and self.items.get(item.id) is item
            ):
                due[item.id] = None
        return list(due)

    def due_retention(self, now: int, retention_ms: int) -> list[str]:
        """Finished items kept for ``retention_ms`` of measured time already."""
        finished = self.finished
        due = []
        measured = now - self.unmeasured
        while finished and finished[0][0] + retention_ms <= measured:
            finished_at, item = finished.popleft()
            if (
                item.status in FINISHED
                and item._handed_at == finished_at
                and self.items.get(item.id) is item
            ):
                due.append(item.id)
        return due

    def oldest_finished(self, n: int) -> list[str]:
        """The ids of the (up to) ``n`` finished items that finished first; their retention
        entries are consumed (the caller drops them right away)."""
        finished, items = self.finished, self.items
        oldest: list[str] = []
        # ``_retained`` inlined: the count bound drops every completed item, through here.
        while finished and len(oldest) < n:
            finished_at, item = finished.popleft()
            if (
                item.status in FINISHED
                and item._handed_at == finished_at
                and items.get(item.id) is item
            ):
                oldest.append(item.id)
        return oldest

    def _retained(self, entry: tuple[int, Entry]) -> bool:
        """Is this retention entry current (its item still retained, finished then)?"""
        finished_at, item = entry
        return (
            item.status in FINISHED
            and item._handed_at == finished_at
            and self.items.get(item.id) is item
        )

    def next_wakeup(self) -> int | None:
        """The earliest time something becomes due: a delayed item, a lease, a TTL, the breaker."""
        times = [heap[0][0] for heap in (self.delayed, self.leases, self.ttl) if heap]
        reopen = self.breaker.reopens_at()
        if reopen is not None:
            times.append(reopen)
        return min(times) if times else None

    def ready_now(self, now: int) -> int:
        """How many pending items are ready to be handed out now (ignoring pause/breaker)."""
        self._release_delayed(now)
        return self.ready_count

    @property
    def live_count(self) -> int:
        counts = self.status_counts
        return counts[PENDING] + counts[PROCESSING] + counts[HELD]

    def metrics_at(self, now: int) -> Metrics:
        return self.metrics.snapshot(
            now,
            current_size=self.live_count,
            by_status={status.value: n for status, n in self.status_counts.items()},
            by_priority={p.wire: self.live_by_priority[p] for p in Priority},
        )

    def iter_items(self) -> Iterator[Entry]:
        return iter(self.items.values())

    # ----------------------------------------------------------- maintenance

    def compact_indexes(self, force: bool = False) -> bool:
        """Rebuild a heap once its stale entries outnumber its live ones (amortised O(1)).

        Each heap is judged on its own, so a heap of a million ready items is not rebuilt
        because the small lease heap has collected stale entries. ``heap_cleanup_threshold``
        is the slack: a heap is left alone until it holds that many entries beyond twice its
        live ones.
        """
        slack = self.config.heap_cleanup_threshold

        def bloated(entries: int, live: int) -> bool:
            return force or entries > 2 * live + slack

        rebuilt = False
        if bloated(sum(len(h) for h in self.ready), self.ready_count):
            for heap in self.ready:
                heap[:] = [e for e in heap if e[2]._where == READY and e[2]._token == e[1]]
                heapify(heap)
            rebuilt = True
        if bloated(sum(len(h) for h in self.dest_ready.values()), self.dest_ready_count):
            for origin, heap in list(self.dest_ready.items()):
                heap[:] = [e for e in heap if e[2]._where == READY and e[2]._token == e[1]]
                if heap:
                    heapify(heap)
                else:
                    del self.dest_ready[origin]
            rebuilt = True
        if bloated(len(self.delayed), self.delayed_count):
            self.delayed[:] = [
                e for e in self.delayed if e[2]._where == DELAYED and e[2]._token == e[1]
            ]
            heapify(self.delayed)
            rebuilt = True
        if bloated(len(self.leases), self.status_counts[PROCESSING]):
            self.leases[:] = [
                e for e in self.leases if e[2].status is PROCESSING and e[2]._token == e[1]
            ]
            heapify(self.leases)
            rebuilt = True
        if bloated(len(self.ttl), self.status_counts[PENDING] + self.status_counts[HELD]):
            self.ttl[:] = [
                e
                for e in self.ttl
                if e[2].status in WAITING
                and e[2].expires_at == e[0]
                and self.items.get(e[2].id) is e[2]
            ]
            heapify(self.ttl)
            rebuilt = True
        return rebuilt

    # -------------------------------------------------------------- snapshots

    def to_snapshot(self) -> dict[str, Any]:
        """The logical state as one JSON-able object (indexes are rebuilt on load)."""
        header = self.snapshot_header()
        header["items"] = [item.to_record() for item in self.items.values()]
        return header

    def snapshot_header(self) -> dict[str, Any]:
        """Everything in a snapshot but the items (which are stored one record each)."""
        return {
            "v": SNAPSHOT_VERSION,
            "seq": self.seq,
            "leasesIssued": self.leases_issued,
            "lastT": self.last_t,
            "unmeasured": self.unmeasured,
            "paused": self.paused,
            "breaker": self.breaker.to_record(),
            "metrics": self.metrics.to_record(),
            "count": len(self.items),
            **({"destinations": errors} if (errors := self.destinations.to_record()) else {}),
        }

    @classmethod
    def from_snapshot(
        cls,
        config: QueueConfig,
        snapshot: dict[str, Any],
        item_records: Iterable[list[Any]] | None = None,
        build_heap: Callable[[list[HeapEntry]], None] = heapify,
        indexed: bool = True,
    ) -> QueueState:
        """Rebuild a state from ``to_snapshot()``, or from a header and its item records.

        ``build_heap`` turns each filled index into a heap (compaction passes one that lets
        other threads run: one ``heapify`` call holds the GIL for its whole run)."""
        state, version = cls._from_header(config, snapshot, indexed)
        records = snapshot["items"] if item_records is None else item_records
        state._load_items(records, version, build_heap)
        return state

    @classmethod
    def _from_header(
        cls, config: QueueConfig, snapshot: dict[str, Any], indexed: bool = True
    ) -> tuple[QueueState, int]:
        """A state with the snapshot header's fields, and the snapshot's version."""
        version = snapshot.get("v")
        if version not in (1, SNAPSHOT_VERSION):
            raise ValueError(f"unsupported snapshot version {version!r}")
        state = cls(config, indexed)
        state.seq = snapshot["seq"]
        state.leases_issued = snapshot["leasesIssued"]
        state.last_t = snapshot["lastT"]
        state.unmeasured = snapshot["unmeasured"] if version != 1 else 0
        if type(state.unmeasured) is not int or abs(state.unmeasured) > MAX_CLOCK_MS:
            raise ValueError(f"header field unmeasured is {state.unmeasured!r:.40}")
        state.paused = snapshot["paused"]
        # A snapshot passed its checksum; still refuse one no queue could have written.
        # (Per item only what would otherwise crash or corrupt the indexes: a full
        # check_item per item would slow the recovery of a million items by a quarter.)
        for name in ("seq", "leasesIssued"):
            if type(snapshot[name]) is not int or snapshot[name] < 0:
                raise ValueError(f"header field {name} is {snapshot[name]!r:.40}")
        check_time("header field lastT", state.last_t, MAX_CLOCK_MS)
        if type(state.paused) is not bool:
            raise ValueError("header field paused is not a boolean")
        state.breaker.load_record(snapshot["breaker"])
        state.metrics.load_record(snapshot["metrics"])
        if "destinations" in snapshot:  # written only when a destination failed
            state.destinations.load_record(snapshot["destinations"])
        return state, version

    def _load_items(
        self,
        records: Iterable[list[Any]],
        version: int,
        build_heap: Callable[[list[HeapEntry]], None],
    ) -> None:
        """Add a snapshot's item records and build the indexes over them."""
        state = self
        partitions = self.config.partitions
        # Heaps are filled as plain lists and heapified once at the end: O(n), not O(n log n).
        # The loop is written for speed (locals, the common case inline): recovering a large
        # queue is this loop.
        state._push_entry = list.append
        items, counts, by_priority = state.items, state.status_counts, state.live_by_priority
        finished, delayed, ready = state.finished, state.delayed, state.ready
        from_record, last_t = Entry.from_record, state.last_t
        ready_count = delayed_count = 0
        raw_payloads = not state.indexed
        for record in records:
            item = from_record(record)
            if raw_payloads:
                _payloads_as_json((item,))
            if partitions > 1:  # from the current count, which may differ from the snapshot's
                item._partition = partition_of(item.id, item.partition_key, partitions)
            items[item.id] = item
            status = item.status
            counts[status] += 1
            if item.destination is not None:
                state.destinations.count(item.destination, status, 1)
            if status in FINISHED:
                if version == 1:  # before handedAt held it, retention counted from updatedAt
                    item._handed_at = item.updated_at
                finished.append((item._handed_at, item))
                continue
            by_priority[item.priority] += 1
            if status is PROCESSING:
                state._load_processing(item)
            elif (
                item.partition_key is None
                and item.expires_at is None
                and item.unique_key is None
                and item.destination is None
                and status is PENDING
            ):
                state._token += 1
                item._token = token = state._token
                if item.available_at > last_t:
                    item._where = DELAYED
                    delayed_count += 1
                    delayed.append((item.available_at, token, item))
                else:
                    item._where = READY
                    ready_count += 1
                    key = (item.priority << SEQ_BITS) | item._seq
                    ready[item._partition].append((key, token, item))
            else:
                # Schedule as of the snapshot's time; _release_delayed() moves what is due.
                state._enter_line_or_schedule(item, last_t)
        state.ready_count += ready_count
        state.delayed_count += delayed_count
        state._build_loaded_indexes(build_heap)

    def _load_processing(self, item: Entry) -> None:
        """A snapshot's processing item: under its lease, at the front of its lines."""
        check_item(item)  # few items are processing; their lease must be whole
        item._token = token = self._next_token()
        assert item.lease_expires_at is not None  # for mypy: check_item made sure
        self.leases.append((item.lease_expires_at, token, item))
        if item.partition_key is not None:
            self.lines.setdefault(item.partition_key, deque()).append(item)
        if item.unique_key is not None:
            self.unique_lines.setdefault(item.unique_key, deque()).append(item)

    def _build_loaded_indexes(self, build_heap: Callable[[list[HeapEntry]], None]) -> None:
        """After :meth:`_load_items` filled the heaps as lists: make them heaps (or drop them
        when not indexed), and order the finished items as they finished (for retention)."""
        for heap in (*self.ready, *self.dest_ready.values(), self.delayed, self.leases, self.ttl):
            if self.indexed:
                build_heap(heap)
            else:
                heap.clear()
        self._push_entry = self._index
        self.finished = deque(sorted(self.finished, key=lambda entry: entry[0]))

    def defer_heaps(self) -> None:
        """Until :meth:`build_heaps`, heap insertions only append: a replay makes no query,
        so its heaps are built once at the end (O(n), not a ``heappush`` per change); and
        pushes are applied by :meth:`_push_appending`."""
        if self.indexed:
            self._push_entry = list.append
            self._appliers[Push] = self._push_appending

    def build_heaps(self) -> None:
        """Make every heap a heap again after :meth:`defer_heaps`."""
        for heap in (*self.ready, *self.dest_ready.values(), self.delayed, self.leases, self.ttl):
            heapify(heap)
        self._push_entry = self._index
        self._appliers[Push] = self._push

    def _push_appending(self, op: Push) -> None:
        """:meth:`_push` while the heaps are deferred (a replay on open: a journal of a
        million pushes is most of recovery), its common case inline: one partition, items
        with no partition key, unique key or destination, no time-to-live, not held and a new
        id. Anything else goes through
        :meth:`_push`; the result is the same state either way (the replay tests compare)."""
        items = self.items
        if self._partitions != 1 or op.replaced:
            self._push(op)
            return
        for item in op.items:
            if (
                item.partition_key is not None
                or item.expires_at is not None
                or item.unique_key is not None
                or item.destination is not None
                or item.status is not PENDING  # held
                or item.id in items
            ):
                self._push(op)
                return
        t = op.t
        seq, token = self.seq, self._token
        ready, delayed, by_priority = self.ready[0], self.delayed, self.live_by_priority
        n_ready = n_delayed = 0
        for item in op.items:
            seq += 1
            token += 1
            item._seq = seq
            item._token = token
            item._partition = 0
            item.status = PENDING
            items[item.id] = item
            by_priority[item.priority] += 1
            if item.available_at > t:
                item._where = DELAYED
                n_delayed += 1
                delayed.append((item.available_at, token, item))
            else:
                item._where = READY
                n_ready += 1
                ready.append(((item.priority << SEQ_BITS) | seq, token, item))
        self.seq, self._token = seq, token
        self.status_counts[PENDING] += len(op.items)
        self.ready_count += n_ready
        self.delayed_count += n_delayed
        self.metrics.on_enqueue(t, len(op.items))

    def fingerprint(self) -> dict[str, Any]:
        """The logical state, for tests that compare a replayed queue with a live one."""
        snapshot = self.to_snapshot()
        snapshot["counts"] = {s.value: n for s, n in self.status_counts.items()}
        snapshot["lines"] = {k: [i.id for i in line] for k, line in sorted(self.lines.items())}
        snapshot["uniqueLines"] = {
            k: [i.id for i in line] for k, line in sorted(self.unique_lines.items())
        }
        snapshot["destinationStats"] = self.destinations.to_wire()
        return snapshot
