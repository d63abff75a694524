"""The compact layouts: the fold's unindexed state (payloads kept as JSON bytes) writes the
same snapshot bytes as the live state; the shared empty metadata is never changed; a
replay that builds its heaps once at the end pops in the live order."""

from __future__ import annotations

from pathlib import Path

from sync_queue import Priority, QueueConfig, SyncItem, SyncQueue
from sync_queue.engine import Engine
from sync_queue.entry import NO_METADATA
from sync_queue.persistence import decode_state, encode_state, open_store

ODD_PAYLOADS = [None, 0, -7, 1.5e300, 'é"\\\n\u2028', [1, None, True], {"a": {"b": []}}, {}]


def _engine_with_history() -> Engine:
    engine = Engine(QueueConfig(max_finished=None, max_retries=0))
    core = engine.core
    for n in range(700):
        item = SyncItem.new(ODD_PAYLOADS[n % len(ODD_PAYLOADS)], list(Priority)[n % 5])
        if n % 7 == 0:
            item.with_metadata("k", str(n)).with_partition_key(f"key-{n % 3}")
        if n % 11 == 0:
            item.with_id(f'id "{n}" \\ é')
        core.push(engine.now(), item)
    for n, item in enumerate(core.pop(engine.now(), 90)):
        if n % 2:
            core.complete(engine.now(), item.id)
        else:
            core.fail(engine.now(), item.id, "boom")
    return engine


def test_the_folds_state_writes_the_live_states_bytes() -> None:
    engine = _engine_with_history()
    blob = encode_state(engine.core.state)
    folded = decode_state(QueueConfig(), blob, indexed=False)
    assert all(type(item.payload) is bytes for item in folded.iter_items())
    assert encode_state(folded) == blob
    assert encode_state(folded, cooperative=True) == blob


def test_the_shared_empty_metadata_stays_empty() -> None:
    q = SyncQueue(QueueConfig(), maintenance_thread=False)
    plain = q.push(SyncItem.new(1))
    q.push(SyncItem.new(2).with_metadata("k", "v"))
    view = q.get(plain)
    view.metadata["changed"] = "by a caller"  # a copy: the queue is not changed
    assert q.get(plain).metadata == {}
    assert NO_METADATA == {}
    q.shutdown()


def test_replay_with_heaps_built_at_the_end_pops_in_the_live_order(tmp_path: Path) -> None:
    config = QueueConfig(persistence_path=tmp_path / "data", max_capacity=10_000)
    q = SyncQueue(config, maintenance_thread=False)
    for n in range(300):
        q.push(SyncItem.new(n, list(Priority)[(n * 7) % 5]))
    for item in q.pop_batch(40):
        q.mark_failed(item.id, "retry later")  # back to pending with a backoff
    q.shutdown()
    state, store = open_store(config)
    try:
        live = QueueConfig(max_capacity=10_000)
        expected = decode_state(live, encode_state(state))  # heaps built by the snapshot path
        far = state.last_t + 10**9
        assert state.select(10_000, None, far) == expected.select(10_000, None, far)
    finally:
        store.close(lambda: b"")


def test_pushes_applied_while_heaps_are_deferred_give_the_same_state() -> None:
    """``QueueState._push_appending`` (replay on open) against ``_push`` (live)."""
    from sync_queue.entry import Entry
    from sync_queue.ops import Push
    from sync_queue.state import QueueState

    config = QueueConfig(max_capacity=10_000)
    specs = []
    for n in range(400):
        spec = SyncItem.new({"n": n}, list(Priority)[n % 5]).with_id(f"i{n}")
        if n % 3 == 0:
            spec.with_delay(5)
        if n % 50 == 7:  # some batches take the general path (a key, a time-to-live)
            spec.with_partition_key("k") if n % 100 == 7 else spec.with_ttl(60)
        specs.append(spec)
    states = [QueueState(config), QueueState(config)]
    states[1].defer_heaps()
    for state in states:
        for start in range(0, 400, 25):
            batch = specs[start : start + 25]
            entries = tuple(Entry.admit(spec, 1_000 + start, 3) for spec in batch)
            state.check(Push(1_000 + start, entries))
            state.apply(Push(1_000 + start, entries))
    states[1].build_heaps()
    live, replayed = states
    assert replayed.fingerprint() == live.fingerprint()
    assert (replayed.ready_count, replayed.delayed_count) == (live.ready_count, live.delayed_count)
    assert replayed.select(1000, None, 10**6) == live.select(1000, None, 10**6)
