"""Background compaction: commits keep flowing while a snapshot is folded, superseded
segments are deleted, and a reopen gives back the same records."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator

import pytest
from storage_helpers import LONG, fold_json, state_of

from sync_queue.errors import PersistenceError, ShuttingDown
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


# -- compact_soon: a compaction the caller can wait for without running it -------------


class _GatedFold:
    """fold_json that waits for ``gate`` (so a test holds a compaction mid-fold) and
    records the thread it ran in."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()
        self.threads: list[threading.Thread] = []

    def __call__(self, prev: bytes | None, records: Iterator[bytes]) -> bytes:
        self.threads.append(threading.current_thread())
        self.started.set()
        assert self.gate.wait(10), "the test never opened the gate"
        return fold_json(prev, records)


def test_compact_soon_folds_in_the_background_and_covers_what_came_before(tmp_path):
    d = str(tmp_path / "q")
    fold = _GatedFold()
    s = Store.open(d, fold=fold, compact_after_bytes=None)
    s.commit(s.append([b"a", b"b"]))
    first = s.compact_soon()
    assert fold.started.wait(5)
    # Commits go on while the fold runs; a second request comes in meanwhile.
    s.commit(s.append([b"c"]))
    second = s.compact_soon()
    assert not first.done() and not second.done()
    fold.gate.set()
    first.result(5)
    assert s.stats().snapshot_seq >= 2
    # The second request is served by a compaction that started after it: it covers "c".
    second.result(5)
    assert s.stats().snapshot_seq == 3
    assert fold.threads and threading.current_thread() not in fold.threads
    s.close()
    s = Store.open(d)
    assert state_of(s.take_recovery()) == [b"a", b"b", b"c"]
    s.close()


def test_compact_soon_reports_a_failed_fold(tmp_path):
    def broken(prev: bytes | None, records: Iterator[bytes]) -> bytes:
        raise RuntimeError("fold bug")

    s = Store.open(str(tmp_path / "q"), fold=broken, compact_after_bytes=None)
    s.commit(s.append([b"a"]))
    future = s.compact_soon()
    with pytest.raises(PersistenceError, match="fold bug"):
        future.result(5)
    s.commit(s.append([b"b"]))  # the store still works
    s.close()


def test_compact_soon_still_waiting_at_close_fails_with_shutting_down(tmp_path):
    fold = _GatedFold()
    s = Store.open(str(tmp_path / "q"), fold=fold, compact_after_bytes=None)
    s.commit(s.append([b"a"]))
    running = s.compact_soon()
    assert fold.started.wait(5)
    s.commit(s.append([b"b"]))
    waiting = s.compact_soon()  # needs a second compaction, which close() does not run
    closer = threading.Thread(target=s.close)
    closer.start()
    deadline = time.monotonic() + 10
    while not s._stop.is_set():  # close() has told the thread to stop: no new compaction
        assert time.monotonic() < deadline
        time.sleep(0.001)
    fold.gate.set()
    closer.join(10)
    running.result(5)
    with pytest.raises(ShuttingDown):
        waiting.result(5)
    with pytest.raises(PersistenceError):
        s.compact_soon()  # closed
