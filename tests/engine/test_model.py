"""Random operation sequences against a small reference model (hypothesis, stateful).

After every step: the item a pop hands out is the one the model predicts (priority, then push
order, one at a time per partition key, never before it is due), nothing is handed out twice
while leased, statuses, counts and metrics agree, and replaying the journal of operation
records into a fresh engine, or loading a snapshot of it, gives the same state.
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
    QueueConfig,
    SyncItem,
    SyncQueue,
)
from sync_queue.ops import decode_op
from sync_queue.state import QueueState

from .conftest import RecordingJournal

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

    def _expected_next(self) -> ModelItem | None:
        now = self.clock.now_ms()
        heads: dict[str, ModelItem] = {}
        for m in sorted(self.items.values(), key=lambda m: m.seq):
            if m.key is not None and m.status in ("pending", "processing"):
                heads.setdefault(m.key, m)
        ready = [
            m
            for m in self.items.values()
            if m.status == "pending"
            and m.available_at <= now
            and (m.key is None or heads[m.key] is m)
        ]
        return min(ready, key=lambda m: (m.priority, m.seq), default=None)

    # -- rules --

    @initialize()
    def start(self) -> None:
        pass

    @rule(
        priority=st.sampled_from(list(Priority)),
        key=st.sampled_from([None, None, "a", "b"]),
        delayed=st.booleans(),
        max_retries=st.integers(0, 2),
    )
    def push(self, priority: Priority, key: str | None, delayed: bool, max_retries: int) -> None:
        self.n += 1
        it = SyncItem.new({"n": self.n}, priority).with_max_retries(max_retries)
        it.with_partition_key(key)
        if delayed:
            it.with_delay(DELAY_MS / 1000)
        item_id = self.q.push(it)
        self.seq += 1
        self.items[item_id] = ModelItem(
            item_id,
            int(priority),
            key,
            max_retries,
            self.seq,
            available_at=self.clock.now_ms() + (DELAY_MS * delayed),
        )

    @rule()
    def pop(self) -> None:
        self._expire_leases()
        expected = self._expected_next()
        got = self.q.pop()
        if expected is None:
            assert got is None
            return
        assert got is not None and got.id == expected.id, (got, expected)
        assert expected.status == "pending"  # never handed out twice while leased
        expected.status = "processing"
        expected.attempts += 1
        expected.lease_until = self.clock.now_ms() + LEASE_MS
        expected.lease_id = got.lease_id
        assert got.attempts == expected.attempts

    def _processing(self) -> list[ModelItem]:
        return [m for m in self.items.values() if m.status == "processing"]

    @precondition(lambda self: any(m.status == "processing" for m in self.items.values()))
    @rule(data=st.data(), ok=st.booleans())
    def finish(self, data: st.DataObject, ok: bool) -> None:
        m = data.draw(st.sampled_from(sorted(self._processing(), key=lambda m: m.seq)))
        self._expire_leases()
        if m.status != "processing":
            try:
                self.q.mark_completed(m.id, m.lease_id)
            except InvalidState:
                return
            raise AssertionError("completed an item whose lease had expired")
        if ok:
            self.q.mark_completed(m.id, m.lease_id)
            m.status = "completed"
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
        if m.status in ("pending", "processing"):
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
        assert metrics.current_size == counts["pending"] + counts["processing"]
        assert len(self.q) == metrics.current_size
        assert metrics.total_completed == counts["completed"]
        assert sum(metrics.by_priority.values()) == metrics.current_size

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
    max_examples=400 if LONG else 60,
    stateful_step_count=60 if LONG else 30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
