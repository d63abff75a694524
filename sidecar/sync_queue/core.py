"""``QueueCore``: the queue's single-threaded core. Every call takes the queue's time ``now``.

Each change follows one pattern:

1. check the request against the state: the status table beside the state machine
   (``state.FROM_STATUS``, which replay checks records against too), plus what only a
   request knows (lease ids, capacity, deduplication); bad input raises and changes nothing;
2. build the operation record, with every random or time-dependent choice made here (the
   jittered retry time, which items a pop hands out);
3. hand it to the journal, if there is one (a record the journal refuses is never applied),
   then apply it through ``QueueState.apply``.

``advance(now)`` turns what became due into records; the drivers (``engine.py``, used by the
threaded ``SyncQueue`` and by the stdio server's ``methods.py``) call it before each call.
Events raised by a change collect in ``state.events`` until the driver takes them. The core
holds no lock, reads no clock, and does no I/O beyond ``Journal.append``.

Why one module of this size: each request's checks sit beside the record they guard, so
reading one method shows every way a request is refused. What is not a request's check lives
elsewhere: unique work's planning (``unique.py``), a pop's destinations (``destinations.py``).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from .config import QueueConfig
from .destinations import check_except
from .durations import MAX_DURATION_MS
from .entry import Entry
from .errors import (
    CapacityExceeded,
    DuplicateItem,
    InvalidParams,
    InvalidState,
    ItemNotFound,
    QueueError,
)
from .item import Item, ItemStatus, Priority, SyncItem, check_id
from .legality import FROM_STATUS, LIVE
from .metrics import Metrics
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
from .results import FailResult, Page, PushBatchResult, PushResult
from .retry import Backoff
from .state import Event, QueueState
from .unique import UniquePlan

__all__ = ["Journal", "QueueCore"]

MAX_LIST_LIMIT = 1000
# Ids per ``Drop`` record when the count bound drops many at once (a lowered
# ``max_finished``, an old directory): records stay small.
MAX_DROP_IDS = 10_000
LEASE_EXPIRED = "lease expired"
INTERRUPTED = "interrupted: the queue restarted while it was processing"


class Journal(Protocol):
    """Where the core sends its operation records to make them durable (see storage)."""

    def append(self, op: Op) -> int:
        """Record ``op`` and return a ticket; called before the op is applied. Raises
        (``InvalidParams``, ``PersistenceError``) having recorded nothing."""
        ...

    def append_all(self, ops: Sequence[Op]) -> int:
        """``append`` for each of ``ops``, in order, all or none; the ticket of the last."""
        ...

    def commit(self, ticket: int) -> None:
        """Return once everything up to ``ticket`` is as durable as promised (group commit)."""
        ...


class QueueCore:
    """The state, the journal and the rules between them; see the module docstring."""

    def __init__(
        self,
        config: QueueConfig,
        state: QueueState | None = None,
        *,
        journal: Journal | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.state = state if state is not None else QueueState(config)
        self.state.events = []
        self.journal = journal
        self.ticket = 0  # the journal ticket of the last record appended
        ms = config.timings()
        self._backoff = Backoff(ms.base_retry_delay_ms, ms.max_retry_delay_ms, rng)
        self.lease_ms = ms.lease_timeout_ms
        self._retention_ms = ms.retention_period_ms
        self._mark_ms = max(1, ms.cleanup_interval_ms)
        self._max_finished = config.max_finished
        # Over the bound, drop down to 7/8 of it: one record serves many completions.
        self._finished_slack = 0 if config.max_finished is None else config.max_finished // 8
        self._calls = 0

    def replace_state(self, state: QueueState) -> None:
        """Swap in a rebuilt state (after a failed commit: what is durable)."""
        state.events = []
        self.state = state

    def take_events(self) -> list[Event]:
        events = self.state.events
        if not events:
            return []
        self.state.events = []
        return events

    # ------------------------------------------------------------- producers

    def push(self, now: int, item: SyncItem) -> str:
        """Add one item; ``DuplicateItem`` if its id is taken. With unique work's ``keep``
        and a live item under the key, nothing is added and that item's id is returned."""
        if item.unique is not None:
            return self.push_one(now, item).id
        # The common push, without a plan or a result object: this is every push's cost.
        if self._taken(item.id):
            raise DuplicateItem(f"an item with id {item.id!r} already exists", id=item.id)
        self._check_capacity(1)
        self._record(Push(now, (Entry.admit(item, now, self.config.max_retries),)))
        return item.id

    def push_one(self, now: int, item: SyncItem) -> PushResult:
        """``push``, saying what unique work did (``PushResult``)."""
        if item.unique is None:
            return PushResult(self.push(now, item))
        if self._taken(item.id):
            raise DuplicateItem(f"an item with id {item.id!r} already exists", id=item.id)
        plan = UniquePlan(self.state)
        result = plan.admit(item, 0)
        if result.unique == "kept":
            return result
        self._check_capacity(1 - len(plan.replaced))
        entry = Entry.admit(item, now, self.config.max_retries)
        self._record(Push(now, (entry,), tuple(plan.replaced)))
        return result

    def push_batch(self, now: int, items: Sequence[SyncItem]) -> PushBatchResult:
        """Add items, skipping duplicates, each with its own unique-work policy (in order:
        a member may keep, replace or queue behind an earlier one). Capacity: all or
        nothing. One record: atomic."""
        accepted: list[Entry] = []
        duplicates: list[str] = []
        unique: list[PushResult] = []
        seen: set[str] = set()
        plan = UniquePlan(self.state)
        for item in items:
            if item.id in seen or self._taken(item.id):
                duplicates.append(item.id)
                continue
            result = plan.admit(item, len(accepted))
            if item.unique is not None:
                unique.append(PushResult(result.id, result.unique, result.replaced, len(unique)))
            if result.unique == "kept":
                continue
            seen.add(item.id)
            accepted.append(Entry.admit(item, now, self.config.max_retries))
        if accepted:
            self._check_capacity(len(accepted) - len(plan.replaced))
            self._record(Push(now, tuple(accepted), tuple(plan.replaced)))
        return PushBatchResult([item.id for item in accepted], duplicates, unique)

    def _taken(self, item_id: str) -> bool:
        """Is this id refused as a duplicate? With deduplication every retained item counts;
        without it, only live ones (a finished item's id may be reused)."""
        existing = self.state.items.get(item_id)
        return existing is not None and (
            self.config.enable_deduplication or existing.status in LIVE
        )

    def _check_capacity(self, adding: int) -> None:
        size = self.state.live_count
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
        now: int,
        n: int,
        lease_ms: int | None = None,
        partition: int | None = None,
        except_destinations: frozenset[str] | None = None,
    ) -> list[Item]:
        """Hand out up to ``n`` ready items, now ``processing`` under a lease.

        ``except_destinations`` None: only items without a destination; else only items
        with a destination that is not in it (an outbox dispatcher's pop)."""
        handed = self._pop(now, n, lease_ms, partition, except_destinations)
        return [entry.view() for entry in handed]

    def pop_wire(
        self,
        now: int,
        n: int,
        lease_ms: int | None = None,
        partition: int | None = None,
        except_destinations: frozenset[str] | None = None,
    ) -> list[dict[str, Any]]:
        """``pop``, each item as the wire shows it: built from the entry at once, without
        the ``view`` in between (the server's pops; the same dicts ``view().to_dict()``
        gives)."""
        handed = self._pop(now, n, lease_ms, partition, except_destinations)
        return [entry.to_dict() for entry in handed]

    def _pop(
        self,
        now: int,
        n: int,
        lease_ms: int | None,
        partition: int | None,
        except_destinations: frozenset[str] | None,
    ) -> list[Entry]:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidParams(f"max: expected an integer >= 1, got {n!r}", field="max")
        lease_ms = self.lease_ms if lease_ms is None else lease_ms
        if lease_ms <= 0:
            raise InvalidParams("lease: must be positive", field="leaseMs")
        if except_destinations is not None:
            except_destinations = check_except(except_destinations, partition)
        if partition is not None:
            self.check_partition(partition)
        ids = self.state.select(n, partition, now, except_destinations)
        if not ids:
            return []
        handed: list[Entry] = self._record(Pop(now, tuple(ids), lease_ms))
        return handed

    def check_partition(self, partition: int | None) -> int | None:
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

    def complete(self, now: int, item_id: str, lease_id: str | None = None) -> None:
        self._leased(Complete, item_id, lease_id, "complete")
        self._record(Complete(now, item_id))

    def complete_batch(
        self, now: int, items: Sequence[tuple[str, str | None]]
    ) -> list[QueueError | None]:
        """``complete`` for each ``(id, lease_id)``, each on its own: one that cannot be
        completed (its error, in its place in the list) does not stop the others.

        With distinct ids every member is checked first, then the records go to the journal
        in one append and are applied in order: the same records, errors and state as one
        ``complete`` after another (completing one item never changes whether another can
        be completed), without a journal call per item. An id named twice is done one
        member at a time (its second completion is checked against the first's outcome)."""
        if len({item_id for item_id, _ in items}) != len(items):
            return [self._try_complete(now, item_id, lease_id) for item_id, lease_id in items]
        errors: list[QueueError | None] = []
        ops: list[Op] = []
        entries, allowed = self.state.items, FROM_STATUS[Complete]
        for item_id, lease_id in items:
            # What ``_leased`` accepts, asked inline (once per item); it says why if not.
            entry = entries.get(item_id)
            if not (
                entry is not None
                and entry.status in allowed
                and (lease_id is None or lease_id == entry.lease_id)
            ):
                try:
                    self._leased(Complete, item_id, lease_id, "complete")
                except (InvalidState, ItemNotFound, InvalidParams) as exc:
                    errors.append(exc)
                    continue
            errors.append(None)
            ops.append(Complete(now, item_id))
        self._record_all(ops)
        return errors

    def _try_complete(self, now: int, item_id: str, lease_id: str | None) -> QueueError | None:
        try:
            self.complete(now, item_id, lease_id)
        except (InvalidState, ItemNotFound, InvalidParams) as exc:
            return exc
        return None

    def fail(
        self,
        now: int,
        item_id: str,
        error: str | None = None,
        lease_id: str | None = None,
        *,
        dead: bool = False,
        retry_after_ms: int | None = None,
        charge: bool = True,
    ) -> FailResult:
        """A failed attempt. ``dead``: to the dead letters at once; ``retry_after_ms``: the
        next attempt not before then (instead of the backoff); ``charge`` False: the attempt
        does not count, the item is pending again (docs/protocol.md §4 ``fail``)."""
        if error is not None and not isinstance(error, str):
            raise InvalidParams("error: expected a string", field="error")
        for name, flag in (("dead", dead), ("charge", charge)):
            if not isinstance(flag, bool):
                raise InvalidParams(f"{name}: expected a boolean, got {flag!r:.40}", field=name)
        if dead and not charge:
            raise InvalidParams(
                "dead: an attempt that is not charged cannot make the item dead", field="dead"
            )
        if retry_after_ms is not None and (
            isinstance(retry_after_ms, bool)
            or not isinstance(retry_after_ms, int)
            or not 0 <= retry_after_ms <= MAX_DURATION_MS
        ):
            raise InvalidParams(
                f"retryAfterMs: expected an integer 0-{MAX_DURATION_MS}, "
                f"got {retry_after_ms!r:.40}",
                field="retryAfterMs",
            )
        item = self._leased(Fail, item_id, lease_id, "fail")
        if retry_after_ms is not None:
            retry_at = now + retry_after_ms
        elif not charge:
            retry_at = now
        else:
            retry_at = now + self._backoff.delay_ms(item.attempts)
        retry = self._record(Fail(now, item_id, error, retry_at, dead, charge))
        return FailResult(retry, retry_at if retry else None)

    def extend_lease(
        self, now: int, item_id: str, lease_ms: int, lease_id: str | None = None
    ) -> int:
        """Heartbeat: the lease now ends ``lease_ms`` from now. Returns the new expiry."""
        if lease_ms <= 0:
            raise InvalidParams("leaseMs: must be positive", field="leaseMs")
        self._leased(ExtendLease, item_id, lease_id, "extend the lease of")
        expires_at: int = self._record(ExtendLease(now, item_id, now + lease_ms))
        return expires_at

    def _leased(self, op: type[Op], item_id: str, lease_id: str | None, action: str) -> Entry:
        item = self.item(item_id)
        if item.status not in FROM_STATUS[op]:
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

    def release(self, now: int, item_id: str) -> None:
        """A ``held`` item becomes ``pending``, keeping its place in line."""
        self._check_held(item_id, "release")
        self._record(Release(now, item_id))

    def reject(self, now: int, item_id: str, reason: str | None = None) -> None:
        """A ``held`` item becomes ``cancelled``, with ``reason`` (or "rejected") as its
        lastError."""
        if reason is not None and not isinstance(reason, str):
            raise InvalidParams("reason: expected a string", field="reason")
        self._check_held(item_id, "reject")
        self._record(Reject(now, item_id, "rejected" if reason is None else reason))

    def _check_held(self, item_id: str, action: str) -> None:
        item = self.item(item_id)
        if item.status not in FROM_STATUS[Release]:
            raise InvalidState(
                f"cannot {action} item {item_id!r}: it is {item.status.value}, not held",
                id=item_id,
                status=item.status.value,
            )

    def cancel(self, now: int, item_id: str) -> None:
        """A ``held``, ``pending`` or ``processing`` item becomes ``cancelled``."""
        item = self.item(item_id)
        if item.status not in FROM_STATUS[Cancel]:
            raise InvalidState(
                f"cannot cancel item {item_id!r}: it is {item.status.value}",
                id=item_id,
                status=item.status.value,
            )
        self._record(Cancel(now, item_id))

    def requeue(self, now: int, item_id: str) -> None:
        """A ``failed`` or ``cancelled`` item goes back to pending, last in line."""
        item = self.item(item_id)
        if item.status not in FROM_STATUS[Requeue]:
            raise InvalidState(
                f"cannot requeue item {item_id!r}: it is {item.status.value}; "
                "only failed or cancelled items can be requeued",
                id=item_id,
                status=item.status.value,
            )
        if self.state.live_count >= self.config.max_capacity:
            raise CapacityExceeded(
                f"the queue is full ({self.config.max_capacity} items)",
                capacity=self.config.max_capacity,
            )
        self._record(Requeue(now, item_id))

    def purge(self, now: int, status: ItemStatus | str) -> int:
        """Forget every item with ``status`` (completed, failed or cancelled only)."""
        parsed = ItemStatus.parse(status)
        if parsed not in FROM_STATUS[Purge]:
            raise InvalidParams(
                f"status: only completed, failed or cancelled items can be "
                f"purged, not {parsed.value}",
                field="status",
            )
        removed: int = self._record(Purge(now, parsed.value))
        return removed

    def set_paused(self, now: int, paused: bool) -> None:
        if self.state.paused != paused:
            self._record(SetPaused(now, paused))

    # ------------------------------------------------------------------ time

    def advance(self, now: int) -> None:
        """Turn whatever became due by ``now`` into operation records: expired leases go back
        through the retry policy, items past their TTL are cancelled, finished items past
        retention are dropped, an open breaker whose cool-down ended half-opens.

        This runs before every call, so each check is one comparison with the top of an index.
        """
        state = self.state
        leases = state.leases
        if leases and leases[0][0] <= now:
            for item in state.due_leases(now):
                retry_at = now + self._backoff.delay_ms(item.attempts)
                self._record(LeaseExpired(now, item.id, LEASE_EXPIRED, retry_at))
        ttl = state.ttl
        if ttl and ttl[0][0] <= now:
            expired = state.due_expiries(now)
            if expired:
                self._record(Expire(now, tuple(expired)))
        finished = state.finished
        if finished and finished[0][0] + self._retention_ms <= now - state.unmeasured:
            dropped = state.due_retention(now, self._retention_ms)
            if dropped:
                self._record(Drop(now, tuple(dropped)))
        if self._max_finished is not None:
            self._bound_finished(now, self._max_finished)
        if state.breaker.state == "open" and state.breaker.probe_due(now):
            self._record(BreakerProbe(now))
        self._calls += 1
        if not self._calls & 0x3FF:  # every 1024 calls: keep lazily-deleted heaps bounded
            state.compact_indexes()

    def _bound_finished(self, now: int, bound: int) -> None:
        """Drop the oldest finished items while more than ``max_finished`` are retained."""
        state = self.state
        counts = state.status_counts
        live = counts[ItemStatus.PENDING] + counts[ItemStatus.PROCESSING] + counts[ItemStatus.HELD]
        over = len(state.items) - live - bound
        if over <= 0:
            return
        over = min(over + self._finished_slack, len(state.items))
        while over > 0:
            ids = state.oldest_finished(min(over, MAX_DROP_IDS))
            if not ids:
                return
            self._record(Drop(now, tuple(ids)))
            over -= len(ids)

    def record_time(self, now: int, idle_only: bool = False) -> None:
        """Record the queue's time (a ``Rebase`` that moves nothing), so a crash or a close
        loses none of it for retention and for re-basing on open. ``idle_only``: only once
        ``cleanup_interval`` has passed since the last record. An empty queue has no timers."""
        last = self.state.last_t
        if self.state.items and now - last >= (self._mark_ms if idle_only else 1):
            self._record(Rebase(now, 0, 0))

    def rebase(self, op: Rebase) -> None:
        """The queue's clock moves onto the wall clock (``queue_time.QueueTime`` decides)."""
        self._record(op)

    def release_interrupted(self, now: int) -> None:
        """Items that were processing when the process died go back through the retry
        policy: their attempt counted (a poison item that kills the process every time
        ends up ``failed`` instead of crashing it forever)."""
        state = self.state
        if not state.status_counts[ItemStatus.PROCESSING]:
            return
        for item in [i for i in state.iter_items() if i.status is ItemStatus.PROCESSING]:
            self._record(LeaseExpired(now, item.id, INTERRUPTED, now))

    # ----------------------------------------------------------------- reads

    def item(self, item_id: str) -> Entry:
        """The core's own entry (callers get its ``view()``); ``ItemNotFound`` if none."""
        item = self.state.items.get(item_id)
        if item is None:
            check_id(item_id)
            raise ItemNotFound(f"no item with id {item_id!r}", id=item_id)
        return item

    def page(
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
        page: list[Item] = []
        last_seq = 0
        more = False
        for item in self._items_after(_parse_cursor(after)):
            if want_status is not None and item.status is not want_status:
                continue
            if want_priority is not None and item.priority is not want_priority:
                continue
            if len(page) == limit:
                more = True
                break
            page.append(item.view())
            last_seq = item._seq
        return Page(page, str(last_seq) if more else None)

    def _items_after(self, after_seq: int) -> Iterator[Entry]:
        items = self.state.iter_items()
        if after_seq:
            for item in items:
                if item._seq > after_seq:
                    yield item
                    break
        yield from items

    def metrics(self, now: int) -> Metrics:
        return self.state.metrics_at(now)

    def ready_count(self, now: int) -> int:
        """Items a plain pop could hand out at ``now`` (0 while paused or the breaker is
        open); items with a destination are not counted (only the outbox pops them)."""
        state = self.state
        if state.paused or state.breaker.may_hand_out() == 0:
            return 0
        return state.ready_now(now)

    def destination_ready_count(self, now: int) -> int:
        """Items with a destination ready at ``now``, whatever their destination (0 while
        paused)."""
        state = self.state
        if state.paused:
            return 0
        state.ready_now(now)
        return state.dest_ready_count

    def next_wakeup(self) -> int | None:
        """When something next becomes due by time alone (ms), or None."""
        return self.state.next_wakeup()

    # ----------------------------------------------------------------- inside

    def _record(self, op: Op) -> Any:
        journal = self.journal
        if journal is not None:
            # Recorded first: if the journal refuses the record, nothing was applied.
            self.ticket = journal.append(op)
        return self.state.apply(op)

    def _record_all(self, ops: Sequence[Op]) -> None:
        """``_record`` for each of ``ops``, journaled in one append (all or none)."""
        if not ops:
            return
        journal = self.journal
        if journal is not None:
            self.ticket = journal.append_all(ops)
        apply = self.state.apply
        for op in ops:
            apply(op)


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
