"""A wall clock that jumps (either way, within a process or while closed) never stretches a
lease, a delay, a backoff, a TTL or the breaker's cool-down, never makes retention drop an
item early, and never leaves a timestamp in the future once the clock is right again.

The model: each timer has a remaining time. Real time passing (``ManualClock.advance``) takes
it down by exactly that much; a wall clock jump inside a process (``jump``) does not touch
it; a close and reopen takes it down by the wall clock's move past the time the queue closed
(time that passed while closed, as far as the queue can tell), never by more, and a clock
that is now behind gives nothing back. Retention counts only time the queue measured itself.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync_queue import ItemNotFound, ItemStatus, ManualClock, QueueConfig, SyncItem, SyncQueue
from sync_queue.queue_time import REBASE_TOLERANCE_MS


def queue_now(q: SyncQueue) -> int:
    """The queue's time after a read has caught up with the clock (re-basing if it was set)."""
    q.ready_count()
    return q._engine.now()


HOUR = 3_600_000
YEAR = 365 * 24 * HOUR
LEASE_MS = 500
DELAY_MS = 200_000
TTL_MS = 300_000
COOLDOWN_MS = 120_000
RETENTION_MS = 400_000

# Steps: ("advance", ms) real time passes; ("jump", ms) the wall clock is set; ("reopen",
# closed_ms, jump_ms) close, let closed_ms pass, set the wall clock, open again.
jumps = st.one_of(
    st.sampled_from([2 * HOUR, -2 * HOUR, YEAR, -YEAR, 1500, -1500]),
    st.integers(-YEAR, YEAR),
    st.integers(-REBASE_TOLERANCE_MS, REBASE_TOLERANCE_MS),
)
advance = st.tuples(st.just("advance"), st.integers(0, 150_000))
jump = st.tuples(st.just("jump"), jumps)
reopen = st.tuples(st.just("reopen"), st.integers(0, 150_000), jumps)


def config(path: Path | None, durability: str = "periodic") -> QueueConfig:
    return QueueConfig(
        persistence_path=path,
        durability=durability,  # type: ignore[arg-type]
        retention_period=RETENTION_MS / 1000,
        breaker_failure_threshold=1,
        breaker_cooldown=COOLDOWN_MS / 1000,
        base_retry_delay=60,
        max_retry_delay=60,
        max_retries=5,
    )


@dataclass
class Timers:
    """What the test expects to be left of each timer (ms)."""

    lease: int = LEASE_MS  # item "leased": processing until its lease ends
    backoff: int = 0  # item "failed": pending until its retry is due
    delay: int = DELAY_MS  # item "delayed"
    ttl: int = TTL_MS  # item "ttl": cancelled (expired) when it runs out
    cooldown: int = COOLDOWN_MS  # the breaker, opened by the failure
    retention: int = RETENTION_MS  # item "done": forgotten when it runs out
    interrupted: bool = False  # "leased" was processing when the queue closed
    fresh: list[str] = field(default_factory=list)

    def elapse(self, ms: int, measured: bool = True) -> None:
        self.lease -= ms
        self.backoff -= ms
        self.delay -= ms
        self.ttl -= ms
        self.cooldown -= ms
        if measured:
            self.retention -= ms


def start(q: SyncQueue) -> Timers:
    """Set up one item per kind of timer; the breaker opens last (so pops come first)."""
    timers = Timers()
    q.push(SyncItem.new("done").with_id("done"))
    done = q.pop()
    assert done is not None
    q.mark_completed(done.id, done.lease_id)
    q.push(SyncItem.new("leased").with_id("leased"))
    leased = q.pop(lease=LEASE_MS / 1000)
    assert leased is not None and leased.id == "leased"
    q.push(SyncItem.new("failed").with_id("failed"))
    failed = q.pop()
    assert failed is not None and failed.id == "failed"
    result = q.mark_failed("failed", "boom", failed.lease_id)
    assert result.retry and result.available_at is not None
    timers.backoff = result.available_at - queue_now(q)
    q.push(SyncItem.new("delayed").with_id("delayed").with_delay(DELAY_MS / 1000))
    q.push(SyncItem.new("ttl").with_id("ttl").with_ttl(TTL_MS / 1000))
    assert q.health().breaker == "open"
    return timers


def check(q: SyncQueue, clock: ManualClock, timers: Timers) -> None:
    now = queue_now(q)  # a read: catches up with the clock (and re-bases if it was set)
    leased = q.get("leased")
    if timers.lease > 0 and not timers.interrupted:
        assert leased.status is ItemStatus.PROCESSING
        assert leased.lease_expires_at is not None
        assert leased.lease_expires_at - now == timers.lease
    else:
        assert leased.status is ItemStatus.PENDING  # back for a retry, never stuck
    failed = q.get("failed")
    assert failed.status is ItemStatus.PENDING
    assert failed.available_at - now == timers.backoff
    delayed = q.get("delayed")
    assert delayed.available_at - now == timers.delay
    if timers.ttl > 0:
        ttl = q.get("ttl")
        assert ttl.status is ItemStatus.PENDING
        assert ttl.expires_at is not None and ttl.expires_at - now == timers.ttl
    else:
        try:
            ttl = q.get("ttl")
            assert ttl.status is ItemStatus.CANCELLED and ttl.last_error == "expired"
        except ItemNotFound:
            # Expired items are retained like any finished one: "done" finished before it,
            # so its retention must have run out first (exactly reached: the steps 150 s,
            # 150 s, 100 s, 150 s, 150 s end at the ttl item's expiry + retention).
            assert timers.retention <= 0, "an expired item dropped before its retention"
    assert q.health().breaker == ("open" if timers.cooldown > 0 else "halfOpen")
    try:
        q.get("done")
        assert timers.retention > 0, "kept past its retention"
    except ItemNotFound:
        assert timers.retention <= 0, "dropped before its retention ran out"
    # Timestamps: never in the future once the clock has been read; new ones follow it.
    wall = clock.now_ms()
    for item in q.list(limit=1000).items:
        assert item.created_at <= wall + REBASE_TOLERANCE_MS
        assert item.updated_at <= wall + REBASE_TOLERANCE_MS
    fresh = q.push(SyncItem.new("fresh"))
    timers.fresh.append(fresh)
    assert abs(q.get(fresh).created_at - wall) <= REBASE_TOLERANCE_MS


@contextmanager
def data_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="sq-clock-") as tmp:
        yield Path(tmp) / "q"


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(st.one_of(advance, jump), max_size=25))
def test_jumps_within_a_process_move_no_deadline(steps: list[tuple[str, int]]) -> None:
    clock = ManualClock()
    q = SyncQueue(config(None), clock=clock, rng=random.Random(1), maintenance_thread=False)
    try:
        timers = start(q)
        check(q, clock, timers)
        for kind, ms in steps:
            if kind == "advance":
                clock.advance(ms)
                timers.elapse(ms)
            else:
                clock.jump(ms)
            check(q, clock, timers)
    finally:
        q.shutdown()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    steps=st.lists(st.one_of(advance, jump, reopen), max_size=14),
    durability=st.sampled_from(["always", "periodic", "snapshot"]),
)
def test_jumps_across_close_and_reopen_never_stretch_a_deadline(
    steps: list[tuple[str, int] | tuple[str, int, int]], durability: str
) -> None:
    clock = ManualClock()
    with data_dir() as path:
        cfg = config(path, durability)
        q = SyncQueue(cfg, clock=clock, rng=random.Random(1), maintenance_thread=False)
        try:
            timers = start(q)
            check(q, clock, timers)
            for step in steps:
                if step[0] == "advance":
                    clock.advance(step[1])
                    timers.elapse(step[1])
                elif step[0] == "jump":
                    clock.jump(step[1])
                else:
                    _, closed_ms, jump_ms = step
                    closed_at = queue_now(q)  # the queue's time when it closes
                    if q.get("leased").status is ItemStatus.PROCESSING:
                        timers.interrupted = True  # released on open: its lease ends early
                    q.shutdown()
                    clock.advance(closed_ms)
                    clock.jump(jump_ms)
                    q = SyncQueue(cfg, clock=clock, rng=random.Random(1), maintenance_thread=False)
                    # Closed time counts for deadlines as far as the wall clock shows it;
                    # a clock now behind gives none back; retention does not count it.
                    timers.elapse(max(0, clock.now_ms() - closed_at), measured=False)
                check(q, clock, timers)
        finally:
            q.shutdown()


def test_after_two_hours_ahead_a_500ms_lease_and_a_200ms_delay_take_their_length(
    tmp_path: Path,
) -> None:
    """The reported case: one session with the wall clock 2 h ahead, then the right clock."""
    clock = ManualClock()
    right = clock.now_ms()
    clock.jump(2 * HOUR)
    cfg = config(tmp_path / "q")
    q = SyncQueue(cfg, clock=clock, maintenance_thread=False)
    q.push(SyncItem.new("x").with_id("x"))
    q.shutdown()
    clock.set(right)  # the clock is fixed
    q = SyncQueue(cfg, clock=clock, maintenance_thread=False)
    try:
        assert q.get("x").created_at <= right  # not two hours in the future any more
        popped = q.pop(lease=0.5)
        assert popped is not None and popped.lease_expires_at == right + 500
        q.push(SyncItem.new("later").with_id("later").with_delay(0.2))
        clock.advance(199)
        assert q.pop() is None  # "later" is not due yet; "x" is leased
        clock.advance(1)
        later = q.pop()
        assert later is not None and later.id == "later"  # due after 200 ms
        clock.advance(299)
        assert q.get("x").status is ItemStatus.PROCESSING
        clock.advance(1)
        assert q.get("x").status is ItemStatus.PENDING  # the lease ran out after 500 ms
    finally:
        q.shutdown()


def test_a_year_ahead_session_drops_nothing_by_retention(tmp_path: Path) -> None:
    clock = ManualClock()
    cfg = config(tmp_path / "q")
    q = SyncQueue(cfg, clock=clock, maintenance_thread=False)
    q.push(SyncItem.new("x").with_id("x"))
    item = q.pop()
    assert item is not None
    q.mark_completed("x", item.lease_id)
    q.shutdown()
    clock.jump(YEAR)  # opens a year "later": closed a year, or a clock a year ahead
    q = SyncQueue(cfg, clock=clock, maintenance_thread=False)
    q.run_maintenance()
    assert q.get("x").status is ItemStatus.COMPLETED
    q.shutdown()
    clock.jump(-YEAR)
    q = SyncQueue(cfg, clock=clock, maintenance_thread=False)
    try:
        assert q.get("x").status is ItemStatus.COMPLETED
        # Retention counts the time the queue is open: it still runs out.
        clock.advance(RETENTION_MS - 1)
        q.run_maintenance()
        assert q.get("x").status is ItemStatus.COMPLETED
        clock.advance(1)
        q.run_maintenance()
        assert q.list(limit=10).items == []
    finally:
        q.shutdown()
