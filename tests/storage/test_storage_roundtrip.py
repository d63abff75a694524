"""Round trips through close/reopen for every durability mode x compression x encryption."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from storage_helpers import fold_json, state_of

from sync_queue.errors import InvalidParams, PersistenceError
from sync_queue.storage import EncryptionService, Store

KEY = EncryptionService.generate_key()
MODES = ["always", "periodic", "snapshot"]


def records(n: int, start: int = 0) -> list[bytes]:
    # Mix of tiny, empty and compressible records.
    return [
        (f"rec-{i}-" + "x" * (i % 50)).encode() if i % 7 else b"" for i in range(start, start + n)
    ]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("level", [0, 6])
@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "aes"])
def test_round_trip(tmp_path, mode, level, key):
    d = str(tmp_path / "q")
    opts = dict(durability=mode, compression_level=level, key=key, fold=fold_json)
    s = Store.open(d, segment_max_bytes=4096, **opts)
    rec = s.take_recovery()
    assert rec.snapshot is None and list(rec.records()) == []
    first = records(300)
    for i in range(0, 300, 3):
        s.commit(s.append(first[i : i + 3]))
    if mode == "snapshot":
        s.write_snapshot(fold_json(None, iter(first)))
    s.close()

    s = Store.open(d, **opts)
    assert state_of(s.take_recovery()) == first
    more = records(50, 300)
    s.commit(s.append(more))
    if mode == "snapshot":
        s.write_snapshot(fold_json(None, iter(first + more)))
    else:
        s.compact()
        assert s.stats().snapshot_seq == 350
        s.commit(s.append([b"after-compaction"]))
        more.append(b"after-compaction")
    s.close()

    s = Store.open(d, **opts)
    assert state_of(s.take_recovery()) == first + more
    st = s.stats()
    assert st.bytes_on_disk > 0 and st.last_snapshot_at is not None
    s.close()
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    for name in os.listdir(d):
        assert stat.S_IMODE(os.stat(os.path.join(d, name)).st_mode) == 0o600, name


def test_segments_rotate_and_seq_continues(tmp_path):
    d = str(tmp_path / "q")
    s = Store.open(d, segment_max_bytes=4096)
    recs = [os.urandom(100) for _ in range(400)]
    for r in recs:
        s.commit(s.append([r]))
    assert s.stats().segments > 5
    s.close()
    s = Store.open(d, segment_max_bytes=4096)
    rec = s.take_recovery()
    assert list(rec.records()) == recs and rec.last_seq == 400
    assert s.append([b"x"]) == 401
    s.close()


def test_write_snapshot_through_keeps_later_records(tmp_path):
    d = str(tmp_path / "q")
    s = Store.open(d)
    s.commit(s.append([b"a", b"b"]))
    t = s.append([b"c"])
    s.append([b"d"])
    # The engine captured its state at ticket t, then more was appended.
    s.write_snapshot(fold_json(None, iter([b"a", b"b", b"c"])), through=t)
    s.commit(s.append([b"e"]))
    s.close()
    s = Store.open(d)
    rec = s.take_recovery()
    assert rec.snapshot_seq == 3
    assert state_of(rec) == [b"a", b"b", b"c", b"d", b"e"]
    s.close()


def test_large_group_and_big_records(tmp_path):
    d = str(tmp_path / "q")
    s = Store.open(d, compression_level=3, key=KEY)
    recs = [os.urandom(3 * 1024 * 1024)] + [b"y" * i for i in range(2000)]
    s.commit(s.append(recs))
    s.close()
    s = Store.open(d, key=KEY)
    assert list(s.take_recovery().records()) == recs
    s.close()


def test_mode_switch_journal_then_snapshot_then_journal(tmp_path):
    d = str(tmp_path / "q")
    s = Store.open(d, durability="always")
    s.commit(s.append([b"1", b"2"]))
    s.close()
    s = Store.open(d, durability="snapshot")
    rec = s.take_recovery()
    got = state_of(rec)
    assert got == [b"1", b"2"]
    s.write_snapshot(fold_json(None, iter([*got, b"3"])))
    s.close()
    assert not [n for n in os.listdir(d) if n.startswith("journal-")]
    s = Store.open(d, durability="always")
    assert state_of(s.take_recovery()) == [b"1", b"2", b"3"]
    s.commit(s.append([b"4"]))
    s.close()
    s = Store.open(d, durability="periodic")
    assert state_of(s.take_recovery()) == [b"1", b"2", b"3", b"4"]
    s.close()


def test_invalid_params(tmp_path):
    d = str(tmp_path / "q")
    with pytest.raises(InvalidParams):
        Store.open(d, durability="sometimes")  # type: ignore[arg-type]
    with pytest.raises(InvalidParams):
        Store.open(d, compression_level=10)
    with pytest.raises(InvalidParams):
        Store.open(d, key=b"short")
    s = Store.open(d)
    with pytest.raises(InvalidParams):
        s.append(["not bytes"])  # type: ignore[list-item]
    with pytest.raises(InvalidParams):
        s.commit(99)
    s.close()
    with pytest.raises(PersistenceError):
        s.append([b"closed"])
    f = tmp_path / "file"
    f.write_bytes(b"")
    with pytest.raises(PersistenceError):
        Store.open(str(f))


def test_leftover_temp_and_superseded_files_are_cleaned(tmp_path):
    d = str(tmp_path / "q")
    s = Store.open(d, fold=fold_json)
    s.commit(s.append([b"a"]))
    s.compact()
    s.commit(s.append([b"b"]))
    s.close()
    # A crash mid snapshot write leaves a temp file; an older snapshot may linger.
    Path(d, "snapshot-00000000000000000002.snap.123-abcd.tmp").write_bytes(b"junk")
    s = Store.open(d, fold=fold_json)
    assert state_of(s.take_recovery()) == [b"a", b"b"]
    s.close()
    assert not [n for n in os.listdir(d) if n.endswith(".tmp")]


def test_periodic_syncs_in_background(tmp_path):
    from storage_helpers import FaultyIO

    io = FaultyIO()
    s = Store.open(str(tmp_path / "q"), durability="periodic", fsync_interval=0.05, io=io)
    base = io.fsyncs
    for i in range(20):
        s.commit(s.append([b"%d" % i]))
    assert io.fsyncs == base  # commit itself never fsyncs in periodic mode
    import time

    deadline = time.monotonic() + 5
    while io.fsyncs == base and time.monotonic() < deadline:
        time.sleep(0.01)
    assert io.fsyncs > base
    s.close()
