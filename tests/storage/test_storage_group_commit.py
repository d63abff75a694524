"""Group commit: many threads committing share fsyncs; order and tickets stay right."""

from __future__ import annotations

import threading

from storage_helpers import LONG, FaultyIO

from sync_queue.storage import Store


def test_sixteen_threads_share_fsyncs(tmp_path):
    io = FaultyIO()
    d = str(tmp_path / "q")
    s = Store.open(d, durability="always", io=io)
    per_thread = 400 if LONG else 100
    engine_lock = threading.Lock()  # the engine's lock: append happens under it
    acked: list[list[bytes]] = [[] for _ in range(16)]
    base = io.fsyncs
    start = threading.Barrier(16)

    def worker(k: int) -> None:
        start.wait()
        for i in range(per_thread):
            rec = f"{k}:{i}".encode()
            with engine_lock:
                t = s.append([rec])
            s.commit(t)
            acked[k].append(rec)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    commits = 16 * per_thread
    fsyncs = io.fsyncs - base
    assert 0 < fsyncs < commits, (fsyncs, commits)
    s.close()

    s = Store.open(d)
    got = list(s.take_recovery().records())
    s.close()
    assert len(got) == commits
    # Per thread, records come back in the order they were appended.
    for k in range(16):
        mine = [r for r in got if r.startswith(f"{k}:".encode())]
        assert mine == acked[k]
