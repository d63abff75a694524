"""Re-basing is recorded, so recovery stays deterministic: a random workload with wall clock
jumps both ways, within sessions and between them, recovers to the state it closed with."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from sync_queue import ManualClock, QueueConfig, SyncQueue
from sync_queue.persistence import open_store

from .test_replay import MODES, random_workload

HOUR = 3_600_000
JUMPS = [2 * HOUR, -2 * HOUR, 365 * 24 * HOUR, -365 * 24 * HOUR, 1500, -1500, 300, -300]


@pytest.mark.parametrize("durability", MODES)
def test_recovered_state_equals_the_closed_state_across_clock_jumps(
    tmp_path: Path, durability: str
) -> None:
    for seed in range(3):
        clock = ManualClock()
        config = QueueConfig(
            persistence_path=tmp_path / f"data-{seed}",
            durability=durability,  # type: ignore[arg-type]
            max_capacity=100_000,
            retention_period=20,
            base_retry_delay=0.1,
            max_retry_delay=2,
            breaker_failure_threshold=8,
            breaker_cooldown=1,
            lease_timeout=5,
        )
        rng = random.Random(seed)
        q = SyncQueue(config, clock=clock, rng=random.Random(seed), maintenance_thread=False)
        for session in range(4):
            for _ in range(6):
                random_workload(q, clock, rng, 40)
                clock.jump(rng.choice(JUMPS))  # the next call re-bases
            if session == 1:
                q.flush()  # a snapshot folded from records that include re-bases
            q.shutdown()
            live = q._state.fingerprint()
            state, persistence = open_store(config)
            try:
                assert state.fingerprint() == live
            finally:
                persistence.store.close()  # no last snapshot: the files stay as they are
            clock.advance(rng.choice([0, 5_000, 60_000]))
            clock.jump(rng.choice(JUMPS))  # wrong (or fixed) while closed
            q = SyncQueue(config, clock=clock, rng=random.Random(seed), maintenance_thread=False)
            now = q.poll()[2]
            assert abs(now - clock.now_ms()) <= 1000
            for item in q.list(limit=1000).items:
                assert item.created_at <= now and item.updated_at <= now
        q.shutdown()
