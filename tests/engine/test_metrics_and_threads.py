"""Metrics, concurrency and blocking pops."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

from sync_queue import ManualClock, Priority, QueueConfig, SyncItem, SyncQueue

MakeQueue = Callable[..., SyncQueue]


def test_metrics_count_and_time(make_queue: MakeQueue, clock: ManualClock) -> None:
    q = make_queue(QueueConfig(max_retries=0))
    assert q.metrics().success_rate is None
    ids = [q.push(SyncItem.new(n, Priority.HIGH if n < 2 else Priority.LOW)) for n in range(4)]
    clock.advance(100)  # every item waits 100 ms
    a = q.pop()
    assert a is not None
    clock.advance(40)
    q.mark_completed(a.id)
    b = q.pop()
    assert b is not None
    clock.advance(10)
    q.mark_failed(b.id, "x")
    q.cancel(ids[3])
    m = q.metrics()
    assert (
        m.total_enqueued,
        m.total_dequeued,
        m.total_completed,
        m.total_failed,
        m.total_cancelled,
    ) == (4, 2, 1, 1, 1)
    assert m.success_rate == 0.5
    assert m.current_size == 1
    assert m.avg_wait_ms == 120.0  # 100 and 140
    assert m.avg_processing_ms == 40.0  # completed items only
    assert (m.wait_ms_p50, m.wait_ms_p99) == (100.0, 140.0)
    assert m.by_status == {
        "pending": 1,
        "processing": 0,
        "completed": 1,
        "failed": 1,
        "cancelled": 1,
        "held": 0,
    }
    assert m.by_priority == {"critical": 0, "high": 0, "normal": 0, "low": 1, "background": 0}


def test_percentiles(make_queue: MakeQueue, clock: ManualClock) -> None:
    q = make_queue(QueueConfig(max_capacity=1000))
    for n in range(100):
        q.push(SyncItem.new(n))
    for n in range(100):
        popped = q.pop()
        assert popped is not None
        clock.advance(n + 1)  # processing times 1..100 ms
        q.mark_completed(popped.id)
    m = q.metrics()
    assert (m.processing_ms_p50, m.processing_ms_p95, m.processing_ms_p99) == (50.0, 95.0, 99.0)


def test_throughput_is_a_sliding_window(make_queue: MakeQueue, clock: ManualClock) -> None:
    q = make_queue(QueueConfig(throughput_window=10, max_capacity=1000))
    for n in range(50):
        q.push(SyncItem.new(n))
    for _ in range(20):
        assert q.pop() is not None
    t = q.throughput()
    assert (t.enqueue_per_sec, t.dequeue_per_sec) == (5.0, 2.0)
    clock.advance(10_000)
    assert q.throughput().enqueue_per_sec == 0.0


def test_many_producers_and_consumers_hand_out_each_item_once() -> None:
    q = SyncQueue(QueueConfig(max_capacity=100_000))
    producers, consumers, per_producer = 4, 4, 2_000
    handed: Counter[str] = Counter()
    handed_lock = threading.Lock()
    done = threading.Event()

    def produce(p: int) -> None:
        for n in range(per_producer):
            q.push(SyncItem.new({"p": p, "n": n}))

    def consume() -> None:
        while True:
            batch = q.pop_batch(16, timeout=0.05)
            if not batch:
                if done.is_set():
                    return
                continue
            with handed_lock:
                handed.update(it.id for it in batch)
            for it in batch:
                q.mark_completed(it.id, it.lease_id)

    threads = [threading.Thread(target=consume) for _ in range(consumers)]
    for t in threads:
        t.start()
    prods = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    for t in prods:
        t.start()
    for t in prods:
        t.join()
    done.set()
    for t in threads:
        t.join(30)
    assert len(handed) == producers * per_producer
    assert set(handed.values()) == {1}
    m = q.metrics()
    assert m.total_completed == producers * per_producer and m.current_size == 0
    q.shutdown()


def test_blocking_pop_wakes_as_soon_as_an_item_is_pushed() -> None:
    q = SyncQueue()
    got: list[float] = []

    def wait() -> None:
        q.pop(timeout=10)
        got.append(time.monotonic())

    waiter = threading.Thread(target=wait)
    waiter.start()
    while not q._waiters:
        time.sleep(0.001)
    pushed = time.monotonic()
    q.push(SyncItem.new(1))
    waiter.join(5)
    assert got and got[0] - pushed < 0.5  # woken, not timed out
    q.shutdown()


def test_blocking_pop_wakes_when_a_delayed_item_becomes_due() -> None:
    q = SyncQueue()
    q.push(SyncItem.new(1).with_delay(0.05))
    start = time.monotonic()
    item = q.pop(timeout=5)
    assert item is not None
    assert 0.04 <= time.monotonic() - start < 2
    q.shutdown()


def test_pop_without_timeout_does_not_wait() -> None:
    q = SyncQueue()
    start = time.monotonic()
    assert q.pop() is None and q.pop(timeout=0) is None
    assert time.monotonic() - start < 0.5
    q.shutdown()


@pytest.mark.parametrize("interval", [0.02])
def test_maintenance_thread_applies_retention(interval: float) -> None:
    clock = ManualClock()
    q = SyncQueue(QueueConfig(retention_period=1, cleanup_interval=interval), clock=clock)
    item_id = q.push(SyncItem.new(1))
    assert q.pop() is not None
    q.mark_completed(item_id)
    clock.advance(1_000)
    deadline = time.monotonic() + 5
    while item_id in q._engine.core.state.items and time.monotonic() < deadline:
        time.sleep(interval)
    assert item_id not in q._engine.core.state.items
    q.shutdown()
