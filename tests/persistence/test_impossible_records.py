"""Records and snapshots that pass their checksum but make no sense (issue 9 §2).

Recovery checks each record against the state it applies to (``QueueState.check``) before
the store changes anything on disk: an impossible record refuses the open with a
``PersistenceError`` naming file, offset and sequence number, and every file stays
byte-identical (even a torn tail after it is not truncated). Plain and encrypted. The
records are written with the storage layer's own ``Store``, so their checksums and tags
are valid.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from sync_queue import ManualClock, QueueConfig, SyncItem, SyncQueue
from sync_queue.entry import RECORD_FIELDS, Entry
from sync_queue.errors import PersistenceError
from sync_queue.persistence import encode_state, open_store
from sync_queue.state import QueueState
from sync_queue.storage import Store

KEY = bytes(range(32))
T = 1_700_000_000_000


def hashes(path: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.iterdir())
        if p.is_file()
    }


def config(path: Path, key: bytes | None) -> QueueConfig:
    c = QueueConfig(persistence_path=path, max_retries=1)
    return c.replace(enable_encryption=True, encryption_key=key) if key else c


def seed(path: Path, key: bytes | None) -> None:
    """``pending`` and ``p2`` pending, ``busy`` processing, ``gone`` cancelled, and two items
    of one partition key: ``head`` (ready) and ``waiting`` (blocked behind it)."""
    q = SyncQueue(config(path, key), clock=ManualClock(T), maintenance_thread=False)
    q.push(SyncItem("x", id="busy"))
    assert q.pop() is not None
    q.push(SyncItem("x", id="pending"))
    q.push(SyncItem("x", id="p2"))
    q.push(SyncItem("x", id="gone"))
    q.cancel("gone")
    q.push(SyncItem("x", id="head").with_partition_key("k"))
    q.push(SyncItem("x", id="waiting").with_partition_key("k"))
    # Not shutdown(): that would release the lease of "busy" on the next open anyway, but
    # keep the directory as a crash leaves it (only the journal).
    q._engine.storage.store.close()  # type: ignore[union-attr]


def push_record(item_id: str, **changes: Any) -> dict[str, Any]:
    """A push of ``item_id``; ``replaced`` (a list of [index, id]) goes on the record, any
    other change on the item's record (the fields added later are then written too)."""
    spec = SyncItem("x", id=item_id).with_destination("http://h")
    record = Entry.admit(spec, T, 1).to_record()
    record[-2] = None  # a full-length record with no destination
    fields = [f.name for f in RECORD_FIELDS]
    replaced = changes.pop("replaced", None)
    for name, value in changes.items():
        record[fields.index(name)] = value
    op: dict[str, Any] = {"op": "push", "t": T, "items": [record]}
    if replaced is not None:
        op["replaced"] = replaced
    return op


IMPOSSIBLE: dict[str, dict[str, Any]] = {
    "cancel of an unknown id": {"op": "cancel", "t": T, "id": "nobody"},
    "cancel of a cancelled item": {"op": "cancel", "t": T, "id": "gone"},
    "complete of a pending item": {"op": "complete", "t": T, "id": "pending"},
    "fail of a pending item": {"op": "fail", "t": T, "id": "pending", "error": None, "retry_at": T},
    "lease expiry of a pending item": {
        "op": "leaseExpired",
        "t": T,
        "id": "pending",
        "error": "x",
        "retry_at": T,
    },
    "pop of a processing item": {"op": "pop", "t": T, "ids": ["busy"], "lease_ms": 1000},
    "pop of an item waiting in its line": {
        "op": "pop",
        "t": T,
        "ids": ["waiting"],
        "lease_ms": 1000,
    },
    "pop of the same item twice": {
        "op": "pop",
        "t": T,
        "ids": ["pending", "pending"],
        "lease_ms": 1000,
    },
    "pop with a negative lease": {"op": "pop", "t": T, "ids": ["pending"], "lease_ms": -1},
    "duplicate push of a live item": push_record("pending"),
    "push of a processing item": push_record("new", status=1),
    "push with a time out of range": push_record("new", createdAt=10**16),
    "push with a negative due time": push_record("new", availableAt=-1),
    "push with an id that is not a string": push_record("new", id=7),
    "expire of a processing item": {"op": "expire", "t": T, "ids": ["busy"]},
    "release of a pending item": {"op": "release", "t": T, "id": "pending"},
    "reject of a pending item": {"op": "reject", "t": T, "id": "pending", "error": "no"},
    "reject whose reason is not a string": {"op": "reject", "t": T, "id": "pending", "error": 5},
    "fail both dead and uncharged": {
        "op": "fail",
        "t": T,
        "id": "busy",
        "error": None,
        "retry_at": T,
        "dead": True,
        "charge": False,
    },
    "fail whose charge is not a boolean": {
        "op": "fail",
        "t": T,
        "id": "busy",
        "error": None,
        "retry_at": T,
        "charge": "no",
    },
    "push replacing an unknown item": push_record("new", replaced=[[0, "nobody"]]),
    "push replacing a processing item": push_record("new", replaced=[[0, "busy"]]),
    "push replacing at no item's index": push_record("new", replaced=[[1, "pending"]]),
    "push replacing the same item twice": push_record(
        "new", replaced=[[0, "pending"], [0, "pending"]]
    ),
    "push replaced that is not pairs": push_record("new", replaced=["pending"]),
    "push with a destination that is not a string": push_record("new", destination=7),
    "push with an empty unique key": push_record("new", uniqueKey=""),
    "push of a completed item": push_record("new", status=2),
    "requeue of a pending item": {"op": "requeue", "t": T, "id": "pending"},
    "extendLease of a pending item": {
        "op": "extendLease",
        "t": T,
        "id": "pending",
        "expires_at": T + 5,
    },
    "purge of pending items": {"op": "purge", "t": T, "status": "pending"},
    "drop of a live item": {"op": "drop", "t": T, "ids": ["pending"]},
    "time before 1970": {"op": "cancel", "t": -1, "id": "pending"},
    "time after year 9999": {"op": "cancel", "t": 10**15, "id": "pending"},
    "time that is not an integer": {"op": "cancel", "t": 1.5, "id": "pending"},
    "id of the wrong type": {"op": "cancel", "t": T, "id": ["pending"]},
    "unknown field": {"op": "cancel", "t": T, "id": "pending", "extra": 1},
    "missing field": {"op": "cancel", "t": T},
    "unknown operation": {"op": "explode", "t": T},
    "not an object": [1, 2, 3],
}


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "aes"])
@pytest.mark.parametrize("case", list(IMPOSSIBLE))
def test_impossible_record_refuses_with_file_offset_and_seq(
    tmp_path: Path, key: bytes | None, case: str
) -> None:
    seed(tmp_path, key)
    store = Store.open(tmp_path, key=key)
    seg = os.path.join(tmp_path, sorted(n for n in os.listdir(tmp_path) if "journal" in n)[-1])
    offset = os.path.getsize(seg)
    seq = store.append([orjson.dumps(IMPOSSIBLE[case])])
    store.commit(seq)
    store.close()
    with open(seg, "ab") as f:
        f.write(b"\x01torn")  # a torn tail after it: must not be truncated either
    before = hashes(tmp_path)
    with pytest.raises(PersistenceError) as exc:
        open_store(config(tmp_path, key))
    assert exc.value.data == {"file": seg, "offset": offset, "seq": seq}
    assert f"record {seq}" in exc.value.message and seg in exc.value.message
    assert hashes(tmp_path) == before


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "aes"])
def test_legal_records_after_the_seed_still_open(tmp_path: Path, key: bytes | None) -> None:
    """The checks refuse only what is impossible: each legal transition replays."""
    seed(tmp_path, key)
    store = Store.open(tmp_path, key=key)
    legal = [
        {"op": "complete", "t": T + 1, "id": "busy"},
        {"op": "cancel", "t": T + 2, "id": "pending"},
        push_record("gone"),  # a finished item's id may be reused (deduplication off)
        {"op": "pop", "t": T + 3, "ids": ["head"], "lease_ms": 10},
        {"op": "extendLease", "t": T + 4, "id": "head", "expires_at": T + 99},
        {"op": "fail", "t": T + 5, "id": "head", "error": "e", "retry_at": T + 6},
        {"op": "requeue", "t": T + 7, "id": "pending"},
        {"op": "purge", "t": T + 8, "status": "completed"},
        {"op": "setPaused", "t": T + 9, "paused": True},
        push_record("h", status=5, destination="http://h"),  # held
        {"op": "release", "t": T + 10, "id": "h"},
        push_record("h2", status=5, uniqueKey="u"),
        {"op": "reject", "t": T + 11, "id": "h2", "error": "no"},
        push_record("r", replaced=[[0, "p2"]]),  # unique work's replace of a pending item
        {"op": "pop", "t": T + 12, "ids": ["r"], "lease_ms": 10},
        {"op": "fail", "t": T + 13, "id": "r", "error": "x", "retry_at": T + 13, "charge": False},
        {"op": "pop", "t": T + 14, "ids": ["r"], "lease_ms": 10},
        {"op": "fail", "t": T + 15, "id": "r", "error": "404", "retry_at": T + 15, "dead": True},
    ]
    store.commit(store.append([orjson.dumps(r) for r in legal]))
    store.close()
    state, persistence = open_store(config(tmp_path, key))
    persistence.close(lambda: b"")
    assert "busy" not in state.items  # purged
    assert state.items["pending"].status.value == "pending" and state.paused
    assert state.items["h"].status.value == "pending" and state.items["h2"].last_error == "no"
    assert state.items["p2"].last_error == "replaced"
    r = state.items["r"]
    assert (r.status.value, r.attempts) == ("failed", 1)  # the uncharged attempt gave back


def snapshot_blob(tmp_path: Path, change: Any) -> bytes:
    state = QueueState(QueueConfig())
    q = SyncQueue(state=state, clock=ManualClock(T), maintenance_thread=False)
    q.push(SyncItem("x", id="a"))
    assert q.pop() is not None
    lines = encode_state(state).split(b"\n")
    header, items = orjson.loads(lines[0]), orjson.loads(lines[1])
    change(header, items)
    return b"\n".join([orjson.dumps(header), orjson.dumps(items)])


def _no_lease(header: dict[str, Any], items: list[list[Any]]) -> None:
    items[0][[f.name for f in RECORD_FIELDS].index("leaseExpiresAt")] = None


def _bad_time(header: dict[str, Any], items: list[list[Any]]) -> None:
    header["lastT"] = -3


def _bad_paused(header: dict[str, Any], items: list[list[Any]]) -> None:
    header["paused"] = "yes"


def _duplicate(header: dict[str, Any], items: list[list[Any]]) -> None:
    items.append(items[0])
    header["count"] = 2


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "aes"])
@pytest.mark.parametrize("change", [_no_lease, _bad_time, _bad_paused, _duplicate])
def test_impossible_snapshot_refuses_naming_the_file(
    tmp_path: Path, key: bytes | None, change: Any
) -> None:
    store = Store.open(tmp_path, key=key)
    store.commit(store.append([b"{}"]))  # the snapshot covers seq 1
    store.write_snapshot(snapshot_blob(tmp_path, change))
    store.close()
    [snap] = [n for n in os.listdir(tmp_path) if n.startswith("snapshot-")]
    before = hashes(tmp_path)
    with pytest.raises(PersistenceError) as exc:
        open_store(config(tmp_path, key))
    assert exc.value.data["file"] == os.path.join(tmp_path, snap)
    assert "does not hold a queue state" in exc.value.message
    assert hashes(tmp_path) == before


@pytest.mark.parametrize("durability", ["always", "periodic", "snapshot"])
def test_no_mode_rewrites_the_directory_on_an_impossible_record(
    tmp_path: Path, durability: str
) -> None:
    """Whatever the mode (``"snapshot"`` writes a snapshot of what it recovered), the
    refusal comes before any write: same files, same bytes."""
    seed(tmp_path, None)
    store = Store.open(tmp_path)
    store.commit(store.append([orjson.dumps(IMPOSSIBLE["cancel of an unknown id"])]))
    store.close()
    before = hashes(tmp_path)
    with pytest.raises(PersistenceError, match="cancel of unknown item 'nobody'"):
        SyncQueue(config(tmp_path, None).replace(durability=durability), maintenance_thread=False)
    assert hashes(tmp_path) == before
