"""Compaction runs on its own and does not stall the queue."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sync_queue import QueueConfig, SyncItem, SyncQueue

STALL_LIMIT_S = 0.050


@pytest.mark.parametrize("durability", ["always", "periodic"])
def test_background_compaction_never_stalls_an_operation(tmp_path: Path, durability: str) -> None:
    config = QueueConfig(
        persistence_path=tmp_path,
        durability=durability,  # type: ignore[arg-type]
        max_capacity=1_000_000,
        persistence_interval=0.05,
    )
    q = SyncQueue(config)
    for _ in range(10):  # a state big enough that folding it takes a while
        q.push_batch([SyncItem.new({"pad": "x" * 100}) for _ in range(2_000)])
    store = q._persistence.store  # type: ignore[union-attr]
    before = store.stats().compactions
    worst = 0.0
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline or store.stats().compactions < before + 2:
        start = time.perf_counter()
        q.push(SyncItem.new({"pad": "y"}))
        it = q.pop()
        assert it is not None
        q.mark_completed(it.id, it.lease_id)
        worst = max(worst, time.perf_counter() - start)
        assert time.monotonic() < deadline + 20, "compaction did not run"
    stats = store.stats()
    assert stats.compactions >= before + 2
    assert stats.snapshot_seq > 0
    # Three operations per loop: each waited less than the limit.
    assert worst < 3 * STALL_LIMIT_S, f"an operation cycle took {worst * 1000:.1f} ms"
    q.shutdown()
    q = SyncQueue(config, maintenance_thread=False)
    assert len(q) == 20_000
    q.shutdown()
