"""Behaviour of the queue engine through its public Python API, one behaviour per test."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta

import pytest

from sync_queue import (
    BreakerChanged,
    CapacityExceeded,
    DuplicateItem,
    InvalidParams,
    InvalidState,
    ItemFailed,
    ItemNotFound,
    ItemStatus,
    ManualClock,
    Priority,
    QueueConfig,
    ShuttingDown,
    SyncItem,
    SyncQueue,
)

MakeQueue = Callable[..., SyncQueue]


def item(n: int | str = 0, priority: Priority = Priority.NORMAL, **kw: object) -> SyncItem:
    it = SyncItem.new({"n": n}, priority)
    for name, value in kw.items():
        getattr(it, f"with_{name}")(value)
    return it


def drain(q: SyncQueue) -> list[object]:
    out = []
    while (it := q.pop()) is not None:
        out.append(it.payload["n"])
        q.mark_completed(it.id, it.lease_id)
    return out


# -------------------------------------------------------------------- order


def test_pop_order_is_priority_then_push_order(q: SyncQueue) -> None:
    pushes = [
        (1, Priority.LOW),
        (2, Priority.HIGH),
        (3, Priority.LOW),
        (4, Priority.CRITICAL),
        (5, Priority.HIGH),
        (6, Priority.BACKGROUND),
        (7, Priority.NORMAL),
    ]
    for n, p in pushes:
        q.push(item(n, p))
    assert drain(q) == [4, 2, 5, 7, 1, 3, 6]


def test_delayed_item_is_not_handed_out_before_it_is_due(q: SyncQueue, clock: ManualClock) -> None:
    q.push(item(1, Priority.CRITICAL, delay=timedelta(seconds=10)))
    q.push(item(2, Priority.LOW))
    assert drain(q) == [2]
    clock.advance(9_999)
    assert q.pop() is None
    clock.advance(1)
    popped = q.pop()
    assert popped is not None and popped.payload == {"n": 1}


def test_expired_item_is_never_handed_out_and_becomes_cancelled(
    q: SyncQueue, clock: ManualClock
) -> None:
    doomed = q.push(item(1, ttl=5.0))
    q.push(item(2, delay=6.0))
    clock.advance(6_000)
    assert drain(q) == [2]
    got = q.get(doomed)
    assert got.status is ItemStatus.CANCELLED and got.last_error == "expired"


def test_ttl_applies_again_when_an_item_comes_back_from_a_failed_attempt(
    q: SyncQueue, clock: ManualClock
) -> None:
    item_id = q.push(item(1, ttl=5.0))
    popped = q.pop()
    assert popped is not None
    clock.advance(6_000)
    assert q.mark_failed(item_id, "boom")  # retried, but its TTL has passed
    clock.advance(3_600_000)
    assert q.pop() is None
    assert q.get(item_id).last_error == "expired"


# ------------------------------------------------------------------- leases


def test_pop_leases_the_item(q: SyncQueue, clock: ManualClock) -> None:
    q.push(item(1))
    popped = q.pop()
    assert popped is not None
    assert popped.status is ItemStatus.PROCESSING and popped.attempts == 1
    assert popped.lease_expires_at == clock.now_ms() + 30_000
    assert popped.lease_id
    other = q.pop(lease=timedelta(seconds=2)) if q.push(item(2)) else None
    assert other is not None and other.lease_expires_at == clock.now_ms() + 2_000


def test_lease_timeout_is_configurable(make_queue: MakeQueue, clock: ManualClock) -> None:
    q = make_queue(QueueConfig(lease_timeout=5))
    q.push(item(1))
    popped = q.pop()
    assert popped is not None and popped.lease_expires_at == clock.now_ms() + 5_000


def test_expired_lease_is_a_failed_attempt_without_restart(
    make_queue: MakeQueue, clock: ManualClock
) -> None:
    q = make_queue(QueueConfig(base_retry_delay=0, max_retry_delay=0))
    item_id = q.push(item(1).with_max_retries(1))
    first = q.pop()
    assert first is not None
    clock.advance(30_000)
    again = q.pop()
    assert again is not None and again.id == item_id and again.attempts == 2
    assert again.last_error == "lease expired"
    assert again.lease_id != first.lease_id
    clock.advance(30_000)  # out of retries now: dead
    assert q.pop() is None
    dead = q.get(item_id)
    assert dead.status is ItemStatus.FAILED and dead.last_error == "lease expired"


def test_completing_after_lease_expiry_is_invalid_state(q: SyncQueue, clock: ManualClock) -> None:
    item_id = q.push(item(1))
    popped = q.pop()
    assert popped is not None
    clock.advance(30_001)
    with pytest.raises(InvalidState, match="lease expired"):
        q.mark_completed(item_id)
    with pytest.raises(InvalidState):
        q.mark_failed(item_id)


def test_stale_lease_id_is_refused(make_queue: MakeQueue, clock: ManualClock) -> None:
    q = make_queue(QueueConfig(base_retry_delay=0, max_retry_delay=0))
    item_id = q.push(item(1))
    slow = q.pop()
    assert slow is not None
    clock.advance(30_000)
    fast = q.pop()
    assert fast is not None and fast.id == item_id
    for call in (
        lambda: q.mark_completed(item_id, slow.lease_id),
        lambda: q.mark_failed(item_id, "x", slow.lease_id),
        lambda: q.extend_lease(item_id, 10, slow.lease_id),
    ):
        with pytest.raises(InvalidState, match="not current"):
            call()
    q.mark_completed(item_id, fast.lease_id)
    assert q.get(item_id).status is ItemStatus.COMPLETED


def test_extend_lease_is_a_heartbeat(q: SyncQueue, clock: ManualClock) -> None:
    item_id = q.push(item(1))
    popped = q.pop()
    assert popped is not None
    for _ in range(5):
        clock.advance(20_000)
        assert q.extend_lease(item_id, 30, popped.lease_id) == clock.now_ms() + 30_000
    clock.advance(29_999)
    q.mark_completed(item_id, popped.lease_id)
    assert q.get(item_id).status is ItemStatus.COMPLETED


# ------------------------------------------------------------------ retries


def test_mark_failed_retries_while_attempts_at_most_max_retries(
    make_queue: MakeQueue, clock: ManualClock
) -> None:
    q = make_queue(QueueConfig(base_retry_delay=0, max_retry_delay=0))
    item_id = q.push(item(1).with_max_retries(2))
    answers = []
    for _ in range(3):
        popped = q.pop()
        assert popped is not None
        answers.append(q.mark_failed(item_id, f"try {popped.attempts}"))
    assert answers == [True, True, False]
    dead = q.get(item_id)
    assert dead.status is ItemStatus.FAILED and dead.last_error == "try 3"
    assert dead.attempts == 3
    assert q.pop() is None


def test_items_take_the_queue_default_max_retries(make_queue: MakeQueue) -> None:
    q = make_queue(QueueConfig(max_retries=7))
    assert q.get(q.push(item(1))).max_retries == 7
    assert q.get(q.push(item(2).with_max_retries(0))).max_retries == 0


def test_backoff_is_full_jitter_capped_exponential(
    make_queue: MakeQueue, clock: ManualClock
) -> None:
    q = make_queue(
        QueueConfig(base_retry_delay=1, max_retry_delay=8, breaker_failure_threshold=100)
    )
    item_id = q.push(item(1).with_max_retries(100))
    delays = []
    for attempt in range(1, 9):
        popped = q.pop()
        assert popped is not None and popped.attempts == attempt
        result = q.mark_failed(item_id, "x")
        assert result.retry and result.available_at is not None
        delay = result.available_at - clock.now_ms()
        ceiling = min(8_000, 1_000 * 2 ** (attempt - 1))
        assert 0 <= delay <= ceiling
        delays.append(delay)
        assert q.ready_count() == (0 if delay else 1)  # not due before its time
        clock.advance(delay)
    assert len(set(delays)) > 1  # jitter: not all the same


def test_backoff_ceiling_formula() -> None:
    from sync_queue.retry import Backoff

    b = Backoff(base_ms=500, cap_ms=60_000)
    assert [b.ceiling_ms(n) for n in (1, 2, 3, 4, 8, 200)] == [
        500,
        1000,
        2000,
        4000,
        60_000,
        60_000,
    ]
    assert all(0 <= b.delay_ms(3) <= 2000 for _ in range(200))


def test_requeue_revives_a_dead_item_at_the_back_with_attempts_reset(make_queue: MakeQueue) -> None:
    q = make_queue(QueueConfig(base_retry_delay=0, max_retry_delay=0))
    dead = q.push(item("dead").with_max_retries(0))
    popped = q.pop()
    assert popped is not None
    assert not q.mark_failed(dead, "boom")  # a FailResult: falsy, not retried
    q.push(item("later"))
    q.requeue(dead)
    revived = q.get(dead)
    assert revived.status is ItemStatus.PENDING and revived.attempts == 0
    assert revived.last_error == "boom"
    assert drain(q) == ["later", "dead"]


def test_requeue_and_cancel_refuse_wrong_states(q: SyncQueue) -> None:
    item_id = q.push(item(1))
    with pytest.raises(InvalidState):
        q.requeue(item_id)
    q.cancel(item_id)
    with pytest.raises(InvalidState):
        q.cancel(item_id)
    q.requeue(item_id)
    assert q.get(item_id).status is ItemStatus.PENDING


def test_cancel_a_processing_item(q: SyncQueue) -> None:
    item_id = q.push(item(1))
    assert q.pop() is not None
    q.cancel(item_id)
    assert q.get(item_id).status is ItemStatus.CANCELLED
    with pytest.raises(InvalidState):
        q.mark_completed(item_id)


# ----------------------------------------------------------- partition keys


def test_items_of_one_key_go_one_at_a_time_in_push_order(q: SyncQueue) -> None:
    a1 = q.push(item("a1", Priority.LOW, partition_key="a"))
    q.push(item("a2", Priority.CRITICAL, partition_key="a"))
    q.push(item("b1", Priority.NORMAL, partition_key="b"))
    q.push(item("x", Priority.BACKGROUND))
    first = [q.pop() for _ in range(4)]
    got = [None if it is None else it.payload["n"] for it in first]
    # a2 waits for a1 whatever its priority; b1 and x are not held up.
    assert got == ["b1", "a1", "x", None]
    q.mark_completed(a1)
    nxt = q.pop()
    assert nxt is not None and nxt.payload["n"] == "a2"


@pytest.mark.parametrize("finish", ["dead", "cancel"])
def test_next_of_a_key_waits_until_the_previous_is_dead_or_cancelled(
    make_queue: MakeQueue, clock: ManualClock, finish: str
) -> None:
    q = make_queue(QueueConfig(base_retry_delay=10, max_retry_delay=10))
    head = q.push(item("a1", partition_key="a").with_max_retries(1))
    q.push(item("a2", partition_key="a"))
    assert q.pop() is not None
    assert q.mark_failed(head, "x")  # retried after a 0-10 s backoff: a2 still waits
    assert q.pop() is None if clock.now_ms() < q.get(head).available_at else True
    clock.advance(10_000)
    again = q.pop()
    assert again is not None and again.id == head
    if finish == "dead":
        assert not q.mark_failed(head, "x")  # a FailResult: falsy, not retried
    else:
        q.cancel(head)
    nxt = q.pop()
    assert nxt is not None and nxt.payload["n"] == "a2"


def test_cancelling_a_waiting_item_of_a_key_keeps_the_line(q: SyncQueue) -> None:
    q.push(item("a1", partition_key="a"))
    a2 = q.push(item("a2", partition_key="a"))
    q.push(item("a3", partition_key="a"))
    q.cancel(a2)
    assert drain(q) == ["a1", "a3"]


def test_partitions_serve_one_partition(make_queue: MakeQueue) -> None:
    q = make_queue(QueueConfig(enable_partitioning=True, partition_count=4))
    ids = [q.push(item(n, partition_key=f"user-{n % 6}")) for n in range(24)]
    from sync_queue.state import partition_of

    served: dict[int, list[str]] = {}
    for p in range(4):
        while (it := q.pop(partition=p)) is not None:
            assert partition_of(it.id, it.partition_key, 4) == p
            served.setdefault(p, []).append(it.id)
            q.mark_completed(it.id)
    assert sorted(i for ids_ in served.values() for i in ids_) == sorted(ids)
    with pytest.raises(InvalidParams, match="partition"):
        q.pop(partition=4)


def test_partition_must_be_zero_when_partitioning_is_off(q: SyncQueue) -> None:
    q.push(item(1))
    assert q.pop(partition=0) is not None
    with pytest.raises(InvalidParams, match="partitioning is off"):
        q.pop(partition=1)


# ------------------------------------------------------ dedup and capacity


def test_deduplication_covers_completed_items(q: SyncQueue) -> None:
    first = item(1).with_id("req-1")
    q.push(first)
    popped = q.pop()
    assert popped is not None
    q.mark_completed("req-1")
    with pytest.raises(DuplicateItem):
        q.push(item(2).with_id("req-1"))
    assert q.push_batch(
        [item(3).with_id("req-1"), item(4).with_id("req-2"), item(5).with_id("req-2")]
    ) == ["req-2"]
    # push_batch returns the ids added; the core's result also names the duplicates (the
    # wire's pushBatch answers both).
    engine = q._engine
    result = engine.core.push_batch(
        engine.begin_change(), [item(6).with_id("req-2"), item(7).with_id("req-3")]
    )
    assert result.ids == ["req-3"] and result.duplicates == ["req-2"]


def test_without_deduplication_only_finished_ids_may_be_reused(make_queue: MakeQueue) -> None:
    q = make_queue(QueueConfig(enable_deduplication=False))
    q.push(item(1).with_id("a"))
    with pytest.raises(DuplicateItem):
        q.push(item(2).with_id("a"))
    assert q.pop() is not None
    with pytest.raises(DuplicateItem):
        q.push(item(3).with_id("a"))
    q.mark_completed("a")
    q.push(item(4).with_id("a"))
    reused = q.get("a")
    assert reused.status is ItemStatus.PENDING and reused.payload == {"n": 4}
    assert q.metrics().by_status["completed"] == 0


def test_capacity_counts_pending_and_processing(make_queue: MakeQueue) -> None:
    q = make_queue(QueueConfig(max_capacity=3))
    a, _b = q.push(item(1)), q.push(item(2))
    assert q.pop() is not None
    q.push(item(3))
    with pytest.raises(CapacityExceeded):
        q.push(item(4))
    q.mark_completed(a)
    q.push(item(5))  # completed items do not count
    assert len(q) == 3


def test_push_batch_capacity_is_all_or_nothing(make_queue: MakeQueue) -> None:
    q = make_queue(QueueConfig(max_capacity=3))
    q.push(item(0))
    with pytest.raises(CapacityExceeded):
        q.push_batch([item(1), item(2), item(3)])
    assert len(q) == 1
    assert len(q.push_batch([item(1), item(2)])) == 2


# ----------------------------------------------------------------- breaker


def test_breaker_opens_half_opens_and_closes(make_queue: MakeQueue, clock: ManualClock) -> None:
    events: list[object] = []
    q = make_queue(
        QueueConfig(
            breaker_failure_threshold=3,
            breaker_cooldown=30,
            base_retry_delay=0,
            max_retry_delay=0,
            max_retries=10,
        ),
        on_event=events.append,
    )
    for n in range(5):
        q.push(item(n))
    for _ in range(3):
        popped = q.pop()
        assert popped is not None
        q.mark_failed(popped.id, "downstream 503")
    assert events == [BreakerChanged("open", "3 consecutive failures")]
    assert q.health_check() is False and q.health().breaker == "open"
    assert q.pop() is None
    clock.advance(30_000)
    probe = q.pop()
    assert probe is not None
    assert events[-1] == BreakerChanged("halfOpen", "cool-down ended; letting one probe through")
    assert q.pop() is None  # one probe at a time
    q.mark_failed(probe.id, "still down")
    assert events[-1].state == "open"  # type: ignore[attr-defined]
    clock.advance(30_000)
    probe = q.pop()
    assert probe is not None
    q.mark_completed(probe.id)
    assert events[-1] == BreakerChanged("closed", "a probe succeeded")
    assert q.health_check() is True
    assert len(q.pop_batch(10)) == 4


def test_expired_leases_do_not_count_toward_the_breaker(
    make_queue: MakeQueue, clock: ManualClock
) -> None:
    q = make_queue(
        QueueConfig(
            breaker_failure_threshold=1, base_retry_delay=0, max_retry_delay=0, max_retries=5
        )
    )
    q.push(item(1))
    for _ in range(3):
        assert q.pop() is not None
        clock.advance(30_000)
    assert q.health_check() is True


def test_item_failed_event(make_queue: MakeQueue) -> None:
    events: list[object] = []
    q = make_queue(QueueConfig(max_retries=0), on_event=events.append)
    item_id = q.push(item(1))
    assert q.pop() is not None
    q.mark_failed(item_id, "bad payload")
    assert ItemFailed(item_id, 1, "bad payload") in events


# --------------------------------------------- pause, retention, maintenance


def test_pause_and_resume(q: SyncQueue) -> None:
    q.push(item(1))
    q.pause()
    assert q.pop() is None and q.health().paused
    assert q.ready_count() == 0
    q.resume()
    assert q.pop() is not None


def test_retention_drops_finished_items(make_queue: MakeQueue, clock: ManualClock) -> None:
    q = make_queue(QueueConfig(retention_period=60))
    done = q.push(item(1))
    assert q.pop() is not None
    q.mark_completed(done)
    keep = q.push(item(2))
    clock.advance(59_999)
    assert q.get(done).status is ItemStatus.COMPLETED
    clock.advance(1)
    q.run_maintenance()
    with pytest.raises(ItemNotFound):
        q.get(done)
    assert q.get(keep).status is ItemStatus.PENDING
    q.push(item(3).with_id(done))  # its id is free again


def test_heap_cleanup_keeps_indexes_small(make_queue: MakeQueue) -> None:
    q = make_queue(QueueConfig(heap_cleanup_threshold=10, max_capacity=100_000))
    ids = [q.push(item(n)) for n in range(1000)]
    for item_id in ids[:990]:
        q.cancel(item_id)
    q.run_maintenance()
    state = q._engine.core.state
    assert sum(len(h) for h in state.ready) <= 2 * state.ready_count + 10
    assert len(drain(q)) == 10


def test_purge(q: SyncQueue) -> None:
    a = q.push(item(1))
    b = q.push(item(2))
    assert q.pop() is not None
    q.mark_completed(a)
    q.cancel(b)
    assert q.purge("completed") == 1
    with pytest.raises(ItemNotFound):
        q.get(a)
    assert q.get(b).status is ItemStatus.CANCELLED
    with pytest.raises(InvalidParams):
        q.purge("pending")


# ----------------------------------------------------------- reads, errors


def test_list_pages_in_push_order(q: SyncQueue) -> None:
    ids = [q.push(item(n, Priority.HIGH if n % 3 == 0 else Priority.LOW)) for n in range(25)]
    seen: list[str] = []
    after = None
    while True:
        page = q.list(limit=10, after=after)
        seen += [it.id for it in page.items]
        if page.next is None:
            break
        after = page.next
    assert seen == ids
    high = q.list(priority="high", limit=1000)
    assert [it.id for it in high.items] == ids[::3] and high.next is None
    with pytest.raises(InvalidParams):
        q.list(limit=0)
    with pytest.raises(InvalidParams):
        q.list(after="nonsense")


def test_returned_items_are_copies(q: SyncQueue) -> None:
    source = item(1).with_metadata("user_id", "u-1")
    item_id = q.push(source)
    source.metadata["user_id"] = "changed"
    got = q.get(item_id)
    got.metadata["user_id"] = "mutated"
    with pytest.raises(AttributeError):  # the returned Item is read-only
        got.status = ItemStatus.COMPLETED  # type: ignore[misc]
    again = q.get(item_id)
    assert again.metadata == {"user_id": "u-1"} and again.status is ItemStatus.PENDING


def test_item_fields_and_builders(q: SyncQueue, clock: ManualClock) -> None:
    it = (
        SyncItem.new({"task": "x"}, Priority.HIGH)
        .with_max_retries(5)
        .with_correlation_id("req-1")
        .with_metadata("user_id", "u-1")
        .with_partition_key("doc-9")
        .with_delay(timedelta(seconds=2))
        .with_ttl(60.0)
    )
    assert it.id  # exists from SyncItem.new on
    item_id = q.push(it)
    got = q.get(item_id)
    now = clock.now_ms()
    assert got.to_dict() == {
        "id": item_id,
        "payload": {"task": "x"},
        "priority": "high",
        "status": "pending",
        "attempts": 0,
        "maxRetries": 5,
        "correlationId": "req-1",
        "metadata": {"user_id": "u-1"},
        "partitionKey": "doc-9",
        "createdAt": now,
        "updatedAt": now,
        "availableAt": now + 2000,
        "leaseExpiresAt": None,
        "leaseId": None,
        "expiresAt": now + 60_000,
        "lastError": None,
        "destination": None,
        "uniqueKey": None,
    }


def test_errors_for_unknown_ids_and_bad_input(q: SyncQueue) -> None:
    for call in (
        lambda: q.get("nope"),
        lambda: q.mark_completed("nope"),
        lambda: q.mark_failed("nope"),
        lambda: q.cancel("nope"),
        lambda: q.requeue("nope"),
        lambda: q.extend_lease("nope", 1),
    ):
        with pytest.raises(ItemNotFound) as info:
            call()
        assert info.value.code == -32002 and info.value.kind == "ItemNotFound"
    with pytest.raises(InvalidParams):
        q.push("not an item")  # type: ignore[arg-type]
    with pytest.raises(InvalidParams):
        SyncItem.new(1).with_id("")
    with pytest.raises(InvalidParams):
        SyncItem.new(1, "urgent")  # type: ignore[arg-type]
    with pytest.raises(InvalidParams):
        q.pop_batch(0)
    with pytest.raises(InvalidParams):
        q.pop(lease=-1)


def test_shutdown_refuses_changes_and_wakes_waiters(q: SyncQueue) -> None:
    import threading

    results: list[object] = []
    waiter = threading.Thread(target=lambda: results.append(q.pop(timeout=30)))
    waiter.start()
    while not q._waiters:
        pass
    q.shutdown()
    waiter.join(5)
    assert results == [None] and not waiter.is_alive()
    with pytest.raises(ShuttingDown):
        q.push(item(1))


# ------------------------------------------------------------------- config


def test_config_defaults_match_the_seed() -> None:
    c = QueueConfig()
    assert (c.max_capacity, c.batch_size, c.persistence_path, c.persistence_interval) == (
        10_000,
        100,
        None,
        30.0,
    )
    assert (c.enable_deduplication, c.enable_compression, c.compression_level) == (True, True, 6)
    assert (c.enable_encryption, c.encryption_key, c.retention_period) == (False, None, 7 * 86400.0)
    assert (c.base_retry_delay, c.max_retry_delay, c.cleanup_interval) == (1.0, 3600.0, 300.0)
    assert (c.heap_cleanup_threshold, c.enable_partitioning, c.partition_count) == (1000, False, 4)
    assert (c.max_retries, c.lease_timeout, c.breaker_failure_threshold, c.breaker_cooldown) == (
        3,
        30.0,
        5,
        30.0,
    )
    assert QueueConfig(retention_period=timedelta(days=1)).retention_period == 86400.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_capacity", 0),
        ("max_capacity", "10"),
        ("batch_size", -1),
        ("compression_level", 10),
        ("partition_count", 0),
        ("base_retry_delay", -1.0),
        ("lease_timeout", 0),
        ("durability", "sometimes"),
        ("breaker_failure_threshold", 0),
        ("enable_compression", 1),
        ("encryption_key", b"short"),
        ("max_retries", True),
        ("retention_period", float("nan")),
    ],
)
def test_config_rejects_nonsense_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(InvalidParams, match=field) as info:
        QueueConfig(**{field: value})  # type: ignore[arg-type]
    assert info.value.data["field"] == field


def test_config_presets() -> None:
    assert QueueConfig.high_performance().durability == "periodic"
    with pytest.raises(InvalidParams, match="encryption_key"):
        QueueConfig.high_security()
    key = os.urandom(32)
    secure = QueueConfig.high_security(key)
    assert secure.enable_encryption and secure.encryption_key == key
    assert key.hex() not in repr(secure)


def test_a_listener_may_call_the_queue(make_queue: MakeQueue) -> None:
    """Events are delivered after the queue's lock is released: no deadlock."""
    seen: list[int] = []
    q: SyncQueue = make_queue(QueueConfig(max_retries=0, breaker_failure_threshold=1))
    q.set_on_event(lambda event: seen.append(q.metrics().total_failed))
    item_id = q.push(item(1))
    assert q.pop() is not None
    q.mark_failed(item_id, "x")  # raises ItemFailed and BreakerChanged("open")
    assert seen == [1, 1]


def test_events_raised_by_time_passing_reach_the_listener_on_a_read(
    make_queue: MakeQueue, clock: ManualClock
) -> None:
    events: list[object] = []
    q = make_queue(
        QueueConfig(breaker_failure_threshold=1, breaker_cooldown=5, max_retries=3),
        on_event=events.append,
    )
    q.push(item(1))
    popped = q.pop()
    assert popped is not None
    q.mark_failed(popped.id, "x")
    clock.advance(5_000)
    q.health()  # a read catches up with time: the breaker half-opens
    assert events[-1] == BreakerChanged("halfOpen", "cool-down ended; letting one probe through")


def test_sync_interval_is_its_own_option_and_the_engine_reads_durations_in_ms() -> None:
    c = QueueConfig(persistence_interval=timedelta(minutes=1), sync_interval=0.25)
    assert (c.persistence_interval, c.sync_interval, QueueConfig().sync_interval) == (
        60.0,
        0.25,
        1.0,
    )
    ms = c.timings()
    assert (ms.persistence_interval_ms, ms.sync_interval_ms, ms.lease_timeout_ms) == (
        60_000,
        250,
        30_000,
    )
    with pytest.raises(InvalidParams) as info:
        QueueConfig(sync_interval=-1)
    assert info.value.data["field"] == "sync_interval"
