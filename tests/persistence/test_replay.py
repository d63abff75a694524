"""Replay equals live: random operation sequences, close, recover; the states are equal.

For every durability mode, with compression and encryption on and off. The recovered state
is compared before the reopened queue releases interrupted leases (which is itself a change).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import orjson
import pytest

from sync_queue import (
    InvalidState,
    ManualClock,
    Priority,
    PushResult,
    QueueConfig,
    QueueError,
    SyncItem,
    SyncQueue,
)
from sync_queue.entry import OLD_RECORD_LENGTH, Entry
from sync_queue.ops import Complete, Fail, Push, decode_op, encode_op
from sync_queue.persistence import open_store

LONG = os.environ.get("SYNC_QUEUE_LONG_TESTS") == "1"
KEY = bytes(range(32))


def outbox_step(q: SyncQueue, rng: random.Random, live: list[str]) -> None:
    """One of issue 12's changes: a push with a destination, hold or unique key; a release
    or reject; a destination pop failed with dead/retryAfterMs/charge, or completed."""
    roll = rng.random()
    if roll < 0.4:
        it = SyncItem.new({"n": rng.randrange(1000)}, rng.choice(list(Priority)))
        if rng.random() < 0.6:
            it.with_destination(rng.choice(["http://127.0.0.1:8080", "https://x.test"]))
        if rng.random() < 0.3:
            it.with_hold()
        if rng.random() < 0.3:
            it.with_partition_key(rng.choice("abc"))
        if rng.random() < 0.5:
            it.with_unique(rng.choice(["u", "v"]), rng.choice(["keep", "replace", "append"]))
        if rng.random() < 0.1:
            it.with_ttl(3.0)
        live.append(q.push(it))
    elif roll < 0.6 and live:
        victim = rng.choice(live)
        q.release(victim) if rng.random() < 0.6 else q.reject(victim, "no")
    else:
        skip = rng.choice([(), ("https://x.test",)])
        for it in q.pop_batch(rng.randrange(1, 4), except_destinations=skip):
            how = rng.random()
            if how < 0.3:
                q.mark_completed(it.id, it.lease_id)
            elif how < 0.5:
                q.mark_failed(it.id, "HTTP 404", it.lease_id, dead=True)
            elif how < 0.7:
                q.mark_failed(it.id, "HTTP 429", it.lease_id, retry_after=rng.choice([0, 2]))
            else:
                q.mark_failed(it.id, "offline", it.lease_id, charge=False)


def random_workload(
    q: SyncQueue, clock: ManualClock, rng: random.Random, steps: int, outbox: float = 0.0
) -> None:
    live: list[str] = []
    for _ in range(steps):
        roll = rng.random()
        try:
            if rng.random() < outbox:
                outbox_step(q, rng, live)
            elif roll < 0.35:
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
        random_workload(q, clock, rng, 1500 if LONG else 400, outbox=0.2)
        if rng.random() < 0.5:
            q.flush()  # a snapshot in the middle, then more journal
            random_workload(q, clock, rng, 200, outbox=0.2)
        q.shutdown()  # records the queue's time on close (a change, see queue._mark_time)
        live = q._engine.core.state.fingerprint()
        state, persistence = open_store(config)
        try:
            assert state.fingerprint() == live
        finally:
            persistence.close(lambda: b"")


def test_outbox_state_survives_snapshot_journal_and_compaction(tmp_path: Path) -> None:
    """Held, unique and destination items, and the destinations' last errors: compacted
    into a snapshot, more changes journaled after it, reopened: the same state, and the
    same behaviour (the held item still blocks its key, the append chain still waits)."""
    clock = ManualClock()
    config = QueueConfig(persistence_path=tmp_path, base_retry_delay=0, max_retry_delay=0)
    q = SyncQueue(config, clock=clock, maintenance_thread=False)
    a = "http://127.0.0.1:8080"
    q.push(SyncItem.new(1).with_id("h").with_hold().with_partition_key("k").with_destination(a))
    q.push(SyncItem.new(2).with_id("k2").with_partition_key("k"))
    q.push(SyncItem.new(3).with_id("u1").with_unique("u", "append"))
    q.push(SyncItem.new(4).with_id("d").with_destination(a))
    [d] = q.pop_batch(1, except_destinations=())
    q.mark_failed(d.id, "HTTP 503", d.lease_id, retry_after=0)
    assert [i.id for i in q.pop_batch(10)] == ["u1"]  # processing when the process stops
    q.flush()  # into a snapshot
    q.push(SyncItem.new(5).with_id("u2").with_unique("u", "append"))
    # u2 is recalled; u1 cannot be (processing), so u3 waits behind it.
    assert q.push_with_result(SyncItem.new(6).with_id("u3").with_unique("u", "replace")) == (
        PushResult("u3", "appended", "u2")
    )
    q.push(SyncItem.new(7).with_id("r").with_hold())
    q.reject("r", "no")
    q.shutdown()
    live = q._engine.core.state.fingerprint()
    state, persistence = open_store(config)
    try:
        assert state.fingerprint() == live
    finally:
        persistence.close(lambda: b"")
    q = SyncQueue(config, clock=clock, maintenance_thread=False)
    try:
        assert q._engine.core.state.fingerprint()["lines"] == live["lines"]
        assert q.get("h").status.value == "held" and q.get("u2").last_error == "replaced"
        assert q.destinations()[a]["lastError"] == "HTTP 503"
        # u1 was interrupted: pending again. k2 waits behind h, u3 behind u1.
        assert [i.id for i in q.pop_batch(10)] == ["u1"]
        q.mark_completed("u1")
        assert [i.id for i in q.pop_batch(10)] == ["u3"]
        q.release("h")
        assert [i.id for i in q.pop_batch(10, except_destinations=())] == ["h", "d"]
    finally:
        q.shutdown()


def test_records_written_before_issue_12_still_read() -> None:
    """A journal or snapshot item record of the older, shorter format (no destination, no
    unique key) reads as an item without them."""
    item = Entry.admit(SyncItem.new({"x": 1}).with_id("old"), 5, 3)
    old = item.to_record()
    assert len(old) == OLD_RECORD_LENGTH  # uses no new field: written as before
    again = Entry.from_record(old)
    assert again.to_record() == old
    assert (again.destination, again.unique_key) == (None, None)
    new = Entry.admit(SyncItem.new(1).with_id("n").with_destination("http://h"), 5, 3)
    record = new.to_record()
    assert len(record) == OLD_RECORD_LENGTH + 2 and record[-2:] == ["http://h", None]
    assert Entry.from_record(record).destination == "http://h"
    push = b'{"t":5,"items":[' + orjson.dumps(old) + b'],"op":"push"}'
    op = decode_op(push)
    assert isinstance(op, Push) and op.replaced == () and op.items[0].id == "old"
    fail = decode_op(b'{"t":6,"id":"old","error":null,"retry_at":7,"op":"fail"}')
    assert isinstance(fail, Fail) and (fail.dead, fail.charge) == (False, True)
    # And the new fields are written only when used, so a record that does not use them
    # is what an older version wrote.
    assert b"replaced" not in encode_op(Push(5, (item,)))
    assert encode_op(Fail(6, "old", None, 7)) == encode_op(fail)


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


def test_a_complete_record_is_written_as_every_version_wrote_it() -> None:
    """``encode_op`` builds the commonest record directly: the bytes of the general form."""
    op = Complete(1_700_000_000_123, 'id "quoted" é')
    assert encode_op(op) == orjson.dumps({**op._asdict(), "op": "complete"})
    assert encode_op(Complete(5, "a")) == b'{"t":5,"id":"a","op":"complete"}'
    assert decode_op(encode_op(op)) == op
