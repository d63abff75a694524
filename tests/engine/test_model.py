"""Random operation sequences against a small reference model (hypothesis, stateful).

After every step: the item a pop hands out is the one the model predicts (priority, then push
order, one at a time per partition key and per unique-work key, never before it is due, never
while held, destination items only to destination pops that do not skip their origin),
nothing is handed out twice while leased, statuses, counts and metrics agree, and replaying
the journal of operation records into a fresh engine, or loading a snapshot of it, gives the
same state. Issue 12's rules are in the model: hold/release/reject, the three unique-work
policies, destination pops, and fail's dead/charge options.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from sync_queue import (
    InvalidState,
    ItemStatus,
    ManualClock,
    Priority,
    PushResult,
    QueueConfig,
    SyncItem,
    SyncQueue,
)
from sync_queue.ops import decode_op
from sync_queue.state import QueueState

from .conftest import RecordingJournal

LIVE = ("held", "pending", "processing")
LEASE_MS = 5_000
DELAY_MS = 1_000
LONG = os.environ.get("SYNC_QUEUE_LONG_TESTS") == "1"


@dataclass
class ModelItem:
    id: str
    priority: int
    key: str | None
    max_retries: int
    seq: int
    status: str = "pending"
    destination: str | None = None
    unique_key: str | None = None
    attempts: int = 0
    available_at: int = 0
    lease_until: int = 0
    lease_id: str | None = None


class QueueModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        self.journal = RecordingJournal()
        # Zero backoff keeps the model simple; backoff has its own unit tests.
        self.config = QueueConfig(
            base_retry_delay=0,
            max_retry_delay=0,
            lease_timeout=5,
            max_capacity=10_000,
            breaker_failure_threshold=1000,
        )
        self.q = SyncQueue(
            self.config,
            clock=self.clock,
            rng=random.Random(1),
            journal=self.journal,
            maintenance_thread=False,
        )
        self.items: dict[str, ModelItem] = {}
        self.seq = 0
        self.n = 0

    def teardown(self) -> None:
        self.q.shutdown()

    # -- the model's view of time passing --

    def _expire_leases(self) -> None:
        now = self.clock.now_ms()
        for m in sorted(self.items.values(), key=lambda m: m.lease_until):
            if m.status == "processing" and m.lease_until <= now:
                self._failed_attempt(m, now)

    def _failed_attempt(self, m: ModelItem, now: int) -> None:
        m.lease_id = None
        if m.attempts <= m.max_retries:
            m.status, m.available_at = "pending", now
        else:
            m.status = "failed"

    def _live_in_order(self) -> list[ModelItem]:
        live = (m for m in self.items.values() if m.status in LIVE)
        return sorted(live, key=lambda m: m.seq)

    def _expected(self, n: int, skip: frozenset[str] | None) -> list[ModelItem]:
        """What a pop of ``n`` hands out: ``skip`` None for a plain pop."""
        now = self.clock.now_ms()
        heads: dict[str, ModelItem] = {}
        unique_heads: dict[str, ModelItem] = {}
        for m in self._live_in_order():
            if m.key is not None:
                heads.setdefault(m.key, m)
            if m.unique_key is not None:
                unique_heads.setdefault(m.unique_key, m)
        ready = [
            m
            for m in self.items.values()
            if m.status == "pending"
            and m.available_at <= now
            and (m.key is None or heads[m.key] is m)
            and (m.unique_key is None or unique_heads[m.unique_key] is m)
            and (
                m.destination is None
                if skip is None
                else m.destination is not None and m.destination not in skip
            )
        ]
        return sorted(ready, key=lambda m: (m.priority, m.seq))[:n]

    # -- rules --

    @initialize()
    def start(self) -> None:
        pass

    @rule(
        priority=st.sampled_from(list(Priority)),
        key=st.sampled_from([None, "a", "b"]),
        delayed=st.booleans(),
        max_retries=st.integers(0, 2),
        destination=st.sampled_from([None, None, "A", "B"]),
        hold=st.sampled_from([False, False, False, True]),
        unique=st.sampled_from([None, None, ("u", "keep"), ("u", "replace"), ("u", "append")]),
    )
    def push(
        self,
        priority: Priority,
        key: str | None,
        delayed: bool,
        max_retries: int,
        destination: str | None,
        hold: bool,
        unique: tuple[str, str] | None,
    ) -> None:
        self.n += 1
        it = SyncItem.new({"n": self.n}, priority).with_max_retries(max_retries)
        it.with_partition_key(key).with_destination(destination).with_hold(hold)
        if unique is not None:
            it.with_unique(*unique)
        if delayed:
            it.with_delay(DELAY_MS / 1000)
        self._expire_leases()  # the push catches up with time first
        result = self.q.push_with_result(it)
        if unique is not None and not self._unique_outcome(result, *unique):
            return  # kept: nothing added
        self.seq += 1
        self.items[result.id] = ModelItem(
            result.id,
            int(priority),
            key,
            max_retries,
            self.seq,
            status="held" if hold else "pending",
            available_at=self.clock.now_ms() + (DELAY_MS * delayed),
            destination=destination,
            unique_key=None if unique is None else unique[0],
        )

    def _unique_outcome(self, result: PushResult, key: str, policy: str) -> bool:
        """Check what unique work did against the model; False if nothing was added."""
        live = [m for m in self._live_in_order() if m.unique_key == key]
        if not live:
            assert (result.unique, result.replaced) == ("added", None)
            return True
        if policy == "keep":
            assert (result.id, result.unique) == (live[0].id, "kept")
            return False
        if policy == "replace":
            recalled = [m for m in live if m.status != "processing"]
            for m in recalled:
                m.status = "cancelled"
            expected = "appended" if len(recalled) < len(live) else "replaced"
            assert result.unique == expected, (result, live)
            assert result.replaced == (recalled[0].id if recalled else None)
            return True
        assert result.unique == "appended"
        return True

    @rule(n=st.sampled_from([1, 1, 3]), skip=st.sampled_from([None, None, (), ("A",), ("B",)]))
    def pop(self, n: int, skip: tuple[str, ...] | None) -> None:
        self._expire_leases()
        skipped = None if skip is None else frozenset(skip)
        expected = self._expected(n, skipped)
        got = self.q.pop_batch(n, except_destinations=skipped)
        assert [i.id for i in got] == [m.id for m in expected], (got, expected)
        for item, m in zip(got, expected, strict=True):
            assert m.status == "pending"  # never handed out twice while leased
            m.status = "processing"
            m.attempts += 1
            m.lease_until = self.clock.now_ms() + LEASE_MS
            m.lease_id = item.lease_id
            assert item.attempts == m.attempts
            assert item.destination == m.destination

    def _held(self) -> list[ModelItem]:
        return sorted((m for m in self.items.values() if m.status == "held"), key=lambda m: m.seq)

    @precondition(lambda self: any(m.status == "held" for m in self.items.values()))
    @rule(data=st.data(), approve=st.booleans())
    def release_or_reject(self, data: st.DataObject, approve: bool) -> None:
        m = data.draw(st.sampled_from(self._held()))
        self._expire_leases()
        if approve:
            self.q.release(m.id)
            m.status = "pending"
        else:
            self.q.reject(m.id, "no")
            m.status = "cancelled"
            assert self.q.get(m.id).last_error == "no"

    def _processing(self) -> list[ModelItem]:
        return [m for m in self.items.values() if m.status == "processing"]

    @precondition(lambda self: any(m.status == "processing" for m in self.items.values()))
    @rule(data=st.data(), how=st.sampled_from(["ok", "ok", "fail", "fail", "dead", "uncharged"]))
    def finish(self, data: st.DataObject, how: str) -> None:
        m = data.draw(st.sampled_from(sorted(self._processing(), key=lambda m: m.seq)))
        self._expire_leases()
        if m.status != "processing":
            try:
                self.q.mark_completed(m.id, m.lease_id)
            except InvalidState:
                return
            raise AssertionError("completed an item whose lease had expired")
        if how == "ok":
            self.q.mark_completed(m.id, m.lease_id)
            m.status = "completed"
        elif how == "dead":
            assert not self.q.mark_failed(m.id, "x", m.lease_id, dead=True)
            m.status = "failed"
        elif how == "uncharged":
            assert self.q.mark_failed(m.id, "x", m.lease_id, charge=False)
            m.status, m.available_at = "pending", self.clock.now_ms()
            m.attempts -= 1
        else:
            retry = self.q.mark_failed(m.id, "x", m.lease_id)
            self._failed_attempt(m, self.clock.now_ms())
            assert retry == (m.status == "pending")
        m.lease_id = None

    @precondition(lambda self: bool(self.items))
    @rule(data=st.data())
    def cancel_or_requeue(self, data: st.DataObject) -> None:
        self._expire_leases()
        m = data.draw(st.sampled_from(sorted(self.items.values(), key=lambda m: m.seq)))
        if m.status in LIVE:
            self.q.cancel(m.id)
            m.status, m.lease_id = "cancelled", None
        elif m.status in ("failed", "cancelled"):
            self.q.requeue(m.id)
            self.seq += 1
            m.seq, m.status, m.attempts = self.seq, "pending", 0
            m.available_at = self.clock.now_ms()
        else:
            try:
                self.q.requeue(m.id)
            except InvalidState:
                return
            raise AssertionError("requeued a completed item")

    @rule(ms=st.sampled_from([1, 500, 999, 1_000, 4_999, 5_000]))
    def advance(self, ms: int) -> None:
        self.clock.advance(ms)

    @rule()
    def pause_resume(self) -> None:
        self.q.pause()
        assert self.q.pop() is None
        assert self.q.pop(except_destinations=()) is None
        self.q.resume()

    # -- invariants --

    @invariant()
    def statuses_and_counts_agree(self) -> None:
        self._expire_leases()
        self.q.run_maintenance()  # the queue catches up with time the same way
        counts = dict.fromkeys((s.value for s in ItemStatus), 0)
        for m in self.items.values():
            real = self.q.get(m.id)
            assert real.status.value == m.status, (m, real)
            assert real.attempts == m.attempts
            counts[m.status] += 1
        metrics = self.q.metrics()
        assert metrics.by_status == counts
        assert metrics.current_size == counts["pending"] + counts["processing"] + counts["held"]
        assert len(self.q) == metrics.current_size
        assert metrics.total_completed == counts["completed"]
        assert sum(metrics.by_priority.values()) == metrics.current_size
        by_destination: dict[str, dict[str, int]] = {}
        for m in self.items.values():
            if m.destination is not None:
                per = by_destination.setdefault(m.destination, dict.fromkeys(counts, 0))
                per[m.status] += 1
        stats = self.q.destinations()
        for origin, per in by_destination.items():
            assert {s: stats[origin][s] for s in per} == per, (origin, stats)

    @invariant()
    def replay_and_snapshot_equal_live(self) -> None:
        live = self.q._engine.core.state.fingerprint()
        replayed = QueueState(self.config)
        for record in self.journal.records:
            replayed.apply(decode_op(record))
        assert replayed.fingerprint() == live
        snapshot = orjson.loads(orjson.dumps(self.q._engine.core.state.to_snapshot()))
        assert QueueState.from_snapshot(self.config, snapshot).fingerprint() == live


TestQueueModel = QueueModel.TestCase
TestQueueModel.settings = settings(
    max_examples=400 if LONG else 150,
    stateful_step_count=60 if LONG else 40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
