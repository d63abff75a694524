"""Replay equals live: random operation sequences, close, recover; the states are equal.

For every durability mode, with compression and encryption on and off. The recovered state
is compared before the reopened queue releases interrupted leases (which is itself a change).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from sync_queue import (
    InvalidState,
    ManualClock,
    Priority,
    QueueConfig,
    QueueError,
    SyncItem,
    SyncQueue,
)
from sync_queue.persistence import open_store

LONG = os.environ.get("SYNC_QUEUE_LONG_TESTS") == "1"
KEY = bytes(range(32))


def random_workload(q: SyncQueue, clock: ManualClock, rng: random.Random, steps: int) -> None:
    live: list[str] = []
    for _ in range(steps):
        roll = rng.random()
        try:
            if roll < 0.35:
                it = SyncItem.new(
                    {"n": rng.randrange(1000), "s": "x" * rng.randrange(200)},
                    rng.choice(list(Priority)),
                )
                if rng.random() < 0.3:
                    it.with_partition_key(rng.choice("abc"))
                if rng.random() < 0.2:
                    it.with_delay(rng.choice([0.5, 2.0]))
                if rng.random() < 0.1:
                    it.with_ttl(3.0)
                live.append(q.push(it))
            elif roll < 0.45:
                q.push_batch([SyncItem.new(i) for i in range(rng.randrange(1, 5))])
            elif roll < 0.65:
                for it in q.pop_batch(rng.randrange(1, 4)):
                    if rng.random() < 0.6:
                        q.mark_completed(it.id, it.lease_id)
                    elif rng.random() < 0.8:
                        q.mark_failed(it.id, "boom", it.lease_id)
            elif roll < 0.72 and live:
                victim = rng.choice(live)
                if rng.random() < 0.5:
                    q.cancel(victim)
                else:
                    q.requeue(victim)
            elif roll < 0.76 and live:
                q.extend_lease(rng.choice(live), 10)
            elif roll < 0.78:
                q.purge(rng.choice(["completed", "cancelled", "failed"]))
            elif roll < 0.80:
                q.pause() if rng.random() < 0.5 else q.resume()
            else:
                clock.advance(rng.choice([10, 500, 5_000, 31_000]))
                q.run_maintenance()
        except (InvalidState, QueueError):
            pass  # refused requests change nothing; that is tested elsewhere


MODES = ["always", "periodic", "snapshot"]


@pytest.mark.parametrize("durability", MODES)
@pytest.mark.parametrize("compression", [False, True])
@pytest.mark.parametrize("encryption", [False, True])
def test_recovered_state_equals_the_state_before_closing(
    tmp_path: Path, durability: str, compression: bool, encryption: bool
) -> None:
    seeds = range(6) if LONG else range(2)
    for seed in seeds:
        clock = ManualClock()
        config = QueueConfig(
            persistence_path=tmp_path / f"data-{seed}",
            durability=durability,  # type: ignore[arg-type]
            enable_compression=compression,
            enable_encryption=encryption,
            encryption_key=KEY if encryption else None,
            max_capacity=100_000,
            retention_period=20,
            base_retry_delay=0.1,
            max_retry_delay=2,
            breaker_failure_threshold=8,
            breaker_cooldown=1,
            lease_timeout=5,
        )
        q = SyncQueue(config, clock=clock, rng=random.Random(seed), maintenance_thread=False)
        rng = random.Random(seed)
        random_workload(q, clock, rng, 1500 if LONG else 400)
        if rng.random() < 0.5:
            q.flush()  # a snapshot in the middle, then more journal
            random_workload(q, clock, rng, 200)
        q.shutdown()  # records the queue's time on close (a change, see queue._mark_time)
        live = q._engine.core.state.fingerprint()
        state, persistence = open_store(config)
        try:
            assert state.fingerprint() == live
        finally:
            persistence.close(lambda: b"")


def test_reopen_releases_interrupted_items_through_the_retry_policy(tmp_path: Path) -> None:
    config = QueueConfig(persistence_path=tmp_path, max_retries=1)
    q = SyncQueue(config, maintenance_thread=False)
    survivor = q.push(SyncItem.new("a"))
    poison = q.push(SyncItem.new("b").with_max_retries(0))
    assert {it.id for it in q.pop_batch(2)} == {survivor, poison}
    q._engine.storage.store.close()  # type: ignore[union-attr]  # the process "dies"
    q._closed = True
    q = SyncQueue(config, maintenance_thread=False)
    assert q.get(survivor).status.value == "pending" and q.get(survivor).attempts == 1
    assert q.get(poison).status.value == "failed"
    assert "restarted" in (q.get(poison).last_error or "")
    assert q.metrics().storage["bytesOnDisk"] > 0
    q.shutdown()
