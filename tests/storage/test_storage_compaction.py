"""Background compaction: commits keep flowing while a snapshot is folded, superseded
segments are deleted, and a reopen gives back the same records."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator

from storage_helpers import LONG, fold_json, state_of

from sync_queue.storage import Store


def test_compaction_does_not_stall_commits(tmp_path):
    d = str(tmp_path / "q")
    folds = []

    def slow_fold(prev: bytes | None, records: Iterator[bytes]) -> bytes:
        t0 = time.monotonic()
        out = fold_json(prev, records)
        json.loads(out)  # some CPU, as a real engine's replay would use
        time.sleep(0.15)  # and some wall time: the fold must not hold any store lock
        folds.append((t0, time.monotonic()))
        return out

    s = Store.open(d, fold=slow_fold, compact_after_bytes=48 * 1024, segment_max_bytes=16 * 1024)
    duration = 6.0 if LONG else 2.0
    stop = time.monotonic() + duration
    latencies: list[tuple[float, float]] = []
    lock = threading.Lock()
    written: list[list[bytes]] = [[] for _ in range(4)]

    def worker(k: int) -> None:
        i = 0
        while time.monotonic() < stop:
            rec = f"{k}-{i}-".encode() + b"p" * 200
            with lock:
                t = s.append([rec])
            t0 = time.monotonic()
            s.commit(t)
            latencies.append((t0, time.monotonic() - t0))
            written[k].append(rec)
            i += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    st = s.stats()
    s.close()

    assert len(folds) >= 2, "compaction never ran"
    during = sorted(lat for t0, lat in latencies if any(a <= t0 <= b for a, b in folds))
    assert len(during) > 50
    p99 = during[int(len(during) * 0.99)]
    # The bound is 50 ms per operation; on a loaded 2-core CI box one fsync alone
    # can spike, so the hard assertion is on the 99th percentile plus a generous max.
    assert p99 < 0.050, f"p99 commit latency during compaction {p99 * 1000:.1f} ms"
    assert during[-1] < 0.250, f"max commit latency during compaction {during[-1] * 1000:.1f} ms"
    # Superseded segments are gone: the journal starts right after the snapshot.
    names = os.listdir(d)
    snaps = [int(n[9:29]) for n in names if n.startswith("snapshot-")]
    journals = sorted(int(n[8:28]) for n in names if n.startswith("journal-"))
    assert len(snaps) == 1 and journals[0] == snaps[0] + 1, (snaps, journals)
    assert st.snapshot_seq > 0 and st.compactions >= 2

    s = Store.open(d)
    got = state_of(s.take_recovery())
    s.close()
    assert sorted(got) == sorted(r for w in written for r in w)
    for k in range(4):
        assert [r for r in got if r.startswith(f"{k}-".encode())] == written[k]


def test_compact_on_request_and_wait_false(tmp_path):
    d = str(tmp_path / "q")
    s = Store.open(d, fold=fold_json, compact_after_bytes=None)
    s.commit(s.append([b"a", b"b"]))
    s.compact(wait=False)
    deadline = time.monotonic() + 5
    while s.stats().snapshot_seq != 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert s.stats().snapshot_seq == 2
    s.commit(s.append([b"c"]))
    s.compact()
    s.compact()  # nothing new: a no-op
    assert s.stats().snapshot_seq == 3
    s.close()
    names = sorted(os.listdir(d))
    assert names == [
        "LOCK",
        "journal-00000000000000000004.log",
        "snapshot-00000000000000000003.snap",
    ]
    s = Store.open(d)
    assert state_of(s.take_recovery()) == [b"a", b"b", b"c"]
    s.close()


def test_interrupted_compaction_leftovers(tmp_path):
    """A crash after the snapshot was installed but before old files were deleted."""
    import shutil

    d = str(tmp_path / "q")
    s = Store.open(d, fold=fold_json, segment_max_bytes=4096)
    s.commit(s.append([b"a"]))
    s.compact()
    s.commit(s.append([os.urandom(2500).hex().encode() for _ in range(3)]))
    s.close()
    keep = str(tmp_path / "keep")
    shutil.copytree(d, keep)  # the state before the second compaction
    s = Store.open(keep)
    expect = state_of(s.take_recovery())
    s.close()
    s = Store.open(d, fold=fold_json, segment_max_bytes=4096)
    s.compact()
    s.close()
    # Put the superseded files back, as if the deletions never happened.
    for n in os.listdir(keep):
        if not os.path.exists(os.path.join(d, n)):
            shutil.copy(os.path.join(keep, n), os.path.join(d, n))
    s = Store.open(d)
    got = state_of(s.take_recovery())
    s.close()
    assert got == expect and len(got) == 4
    assert len([n for n in os.listdir(d) if n.startswith("snapshot-")]) == 1
