"""Retention by count (``max_finished``): the oldest finished items go first, journaled as
``Drop`` records, so a reopened queue holds exactly what the live one held."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from sync_queue import InvalidParams, ManualClock, QueueConfig, SyncItem, SyncQueue
from sync_queue import core as core_module
from sync_queue.persistence import open_store
from sync_queue.state import QueueState

from .test_replay import random_workload


def _finished_ids(q: SyncQueue) -> list[str]:
    return [
        item.id
        for status in ("completed", "failed", "cancelled")
        for item in q.list(status=status, limit=1000).items
    ]


def _index_holds_only_retained(state: QueueState) -> None:
    """The retention index references no dropped item (it would keep it in memory)."""
    for _, item in state.finished:
        assert state.items.get(item.id) is item


def test_oldest_finished_items_are_dropped_beyond_the_bound() -> None:
    q = SyncQueue(QueueConfig(max_finished=16), maintenance_thread=False)
    ids = []
    for n in range(100):
        ids.append(q.push(SyncItem.new(n).with_id(f"item-{n:03}")))
        item = q.pop()
        assert item is not None
        q.mark_completed(item.id)
    retained = _finished_ids(q)
    # Over the bound it drops down to 7/8 of it (16 - 2), then refills to 16.
    assert 14 <= len(retained) <= 16
    assert retained == ids[-len(retained) :]  # the newest are kept, in push order
    assert q.metrics().total_completed == 100  # counters are not history
    # A dropped id may be pushed again (deduplication covers retained items).
    q.push(SyncItem.new("again").with_id("item-000"))
    _index_holds_only_retained(q._engine.core.state)
    q.shutdown()


def test_zero_keeps_no_finished_item_and_none_keeps_all() -> None:
    zero = SyncQueue(QueueConfig(max_finished=0), maintenance_thread=False)
    unbounded = SyncQueue(QueueConfig(max_finished=None), maintenance_thread=False)
    for q in (zero, unbounded):
        for n in range(50):
            q.push(SyncItem.new(n))
            item = q.pop()
            assert item is not None
            q.mark_completed(item.id)
        q.run_maintenance()
    assert _finished_ids(zero) == []
    assert len(_finished_ids(unbounded)) == 50
    zero.shutdown()
    unbounded.shutdown()


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10"])
def test_a_bad_bound_is_refused_by_name(bad: object) -> None:
    with pytest.raises(InvalidParams) as e:
        QueueConfig(max_finished=bad)  # type: ignore[arg-type]
    assert e.value.data["field"] == "max_finished"
    assert QueueConfig.from_mapping({"max_finished": None}).max_finished is None


@pytest.mark.parametrize("durability", ["always", "snapshot"])
def test_replay_of_count_drops_equals_the_live_state(tmp_path: Path, durability: str) -> None:
    for seed in range(3):
        clock = ManualClock()
        config = QueueConfig(
            persistence_path=tmp_path / f"data-{seed}",
            durability=durability,  # type: ignore[arg-type]
            max_capacity=100_000,
            max_finished=5,
            base_retry_delay=0.1,
            max_retry_delay=2,
            lease_timeout=5,
        )
        q = SyncQueue(config, clock=clock, rng=random.Random(seed), maintenance_thread=False)
        rng = random.Random(seed)
        random_workload(q, clock, rng, 300)
        if seed % 2:
            q.flush()  # the fold replays the drops too
            random_workload(q, clock, rng, 100)
        q.shutdown()
        live = q._engine.core.state
        assert len(_finished_ids(q)) <= 5
        state, persistence = open_store(config)
        try:
            assert state.fingerprint() == live.fingerprint()
            _index_holds_only_retained(state)
        finally:
            persistence.close(lambda: b"")


def test_a_lowered_bound_drops_the_excess_on_open_in_small_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "data"
    q = SyncQueue(QueueConfig(persistence_path=path, max_finished=None), maintenance_thread=False)
    for n in range(40):
        q.push(SyncItem.new(n).with_id(f"i{n:02}"))
    for item in q.pop_batch(40):
        q.mark_completed(item.id)
    q.shutdown()
    monkeypatch.setattr(core_module, "MAX_DROP_IDS", 7)
    config = QueueConfig(persistence_path=path, max_finished=8)
    q = SyncQueue(config, maintenance_thread=False)
    kept = _finished_ids(q)
    assert kept == [f"i{n:02}" for n in range(40 - len(kept), 40)]
    assert 7 <= len(kept) <= 8
    live = q._engine.core.state.fingerprint()
    q.shutdown()
    state, persistence = open_store(config)
    try:
        assert state.fingerprint()["items"] == live["items"]
    finally:
        persistence.close(lambda: b"")


def test_a_churning_replay_is_repacked_into_the_same_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a replay of many more records than items, open re-encodes the state into
    fresh memory (persistence._repack); the result is the state replay built."""
    from sync_queue import persistence

    config = QueueConfig(persistence_path=tmp_path / "data", max_finished=3)
    q = SyncQueue(config, maintenance_thread=False)
    for n in range(30):
        q.push(SyncItem.new({"n": n}).with_metadata("k", str(n)))
    for item in q.pop_batch(25):
        q.mark_completed(item.id)
    q.shutdown()
    live = q._engine.core.state.fingerprint()
    repacked: list[int] = []
    real = persistence._repack

    def spy(config: QueueConfig, state: QueueState) -> QueueState:
        repacked.append(len(state.items))
        return real(config, state)

    monkeypatch.setattr(persistence, "TRIM_AFTER_RECORDS", 0)
    monkeypatch.setattr(persistence, "_repack", spy)
    state, store = open_store(config)
    try:
        assert repacked == [len(live["items"])]
        assert state.fingerprint() == live
        assert state.ready_now(state.last_t) == 5  # the indexes were rebuilt too
    finally:
        store.close(lambda: b"")
