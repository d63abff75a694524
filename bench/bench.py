"""sync-queue benchmarks: every figure beside what it is measured against, in the same run.

    .venv/bin/python bench/bench.py            # full run (1 k, 100 k and 1 M queued items)
    .venv/bin/python bench/bench.py --quick    # smaller sizes, for a smoke test
    .venv/bin/python bench/bench.py --targets  # issue 13: one table of every target (< 6 min)

Engine section (issue 2): push, pop+complete and a full push->pop->complete cycle per second
with N items already queued, for sync-queue's in-memory engine and, side by side, the same
workload through persist-queue's SQLiteAckQueue and litequeue (both on SQLite ``:memory:``,
so all three are in memory); memory per queued item with a 100-byte payload. The peers
serialize each payload into SQLite; sync-queue here keeps a reference to it (the table says
so); ``--targets`` has the row where sync-queue serializes too.

Longer than 400 lines on purpose: it is the one entry point of every section and holds the
engine and storage sections, which share its peer adapters and measuring helpers; the other
sections live beside it (``sidecar_bench.py``, ``compaction_bench.py``).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from floors import fsync_floor

from sync_queue import QueueConfig, SyncItem, SyncQueue

PAYLOAD = {"data": "x" * 100}


def payload() -> dict[str, str]:
    """A distinct 100-byte payload (hex of 50 random bytes: it compresses like real data,
    and memory figures count it, unlike one shared object)."""
    return {"data": os.urandom(50).hex()}


@dataclass
class Adapter:
    """One queue under test: how to fill it and do the three workloads."""

    name: str
    make: Callable[[], Any]
    push: Callable[[Any, Any], Any]
    pop: Callable[[Any], Any]
    complete: Callable[[Any, Any], None]
    fill: Callable[[Any, int], None]


def _sq_make() -> SyncQueue:
    return SyncQueue(QueueConfig(max_capacity=10_000_000), maintenance_thread=False)


def _sq_fill(q: SyncQueue, n: int) -> None:
    for start in range(0, n, 10_000):
        q.push_batch([SyncItem.new(payload()) for _ in range(min(10_000, n - start))])


SYNC_QUEUE = Adapter(
    "sync-queue",
    _sq_make,
    lambda q, p: q.push(SyncItem.new(p)),
    lambda q: q.pop(),
    lambda q, item: q.mark_completed(item.id),
    _sq_fill,
)


def _persist_queue() -> Adapter | None:
    try:
        import persistqueue
    except ImportError:
        return None

    def make() -> Any:
        return persistqueue.SQLiteAckQueue(":memory:", multithreading=False, auto_commit=True)

    def fill(q: Any, n: int) -> None:
        for _ in range(n):
            q.put(PAYLOAD)

    return Adapter(
        "persist-queue",
        make,
        lambda q, p: q.put(p),
        lambda q: q.get(block=False),
        lambda q, item: q.ack(item),
        fill,
    )


def _litequeue() -> Adapter | None:
    try:
        from litequeue import LiteQueue
    except ImportError:
        return None
    import orjson

    def make() -> Any:
        return LiteQueue(":memory:")

    def fill(q: Any, n: int) -> None:
        for _ in range(n):
            q.put(orjson.dumps(PAYLOAD).decode())

    return Adapter(
        "litequeue",
        make,
        lambda q, p: q.put(orjson.dumps(p).decode()),
        lambda q: q.pop(),
        lambda q, m: q.done(m.message_id),
        fill,
    )


def rate(ops: int, fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return ops / (time.perf_counter() - start)


def measure(adapter: Adapter, queued: int, ops: int) -> dict[str, float]:
    q = adapter.make()
    adapter.fill(q, queued)
    push, pop, complete = adapter.push, adapter.pop, adapter.complete

    def pushes() -> None:
        for _ in range(ops):
            push(q, PAYLOAD)

    def pops() -> None:
        for _ in range(ops):
            complete(q, pop(q))

    def cycles() -> None:
        for _ in range(ops):
            push(q, PAYLOAD)
            complete(q, pop(q))

    result = {
        "push": rate(ops, pushes),
        "pop+complete": rate(ops, pops),
        "cycle": rate(ops, cycles),
    }
    if hasattr(q, "shutdown"):
        q.shutdown()
    return result


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_per_item(n: int) -> float:
    gc.collect()
    before = rss_bytes()
    q = _sq_make()
    _sq_fill(q, n)
    gc.collect()
    per_item = (rss_bytes() - before) / n
    q.shutdown()
    return per_item


def fmt(x: float) -> str:
    return f"{x:,.0f}"


def engine_section(quick: bool) -> list[str]:
    sizes = [1_000, 20_000] if quick else [1_000, 100_000, 1_000_000]
    peer_sizes = set(sizes[:2])
    ops = 5_000 if quick else 20_000
    peers = [a for a in (_persist_queue(), _litequeue()) if a is not None]
    lines = [
        "### Engine, in memory (operations per second with N items already queued)",
        "",
        "The peers serialize each payload into SQLite; sync-queue keeps a reference to it "
        "(`bench.py --targets` compares the same work, serialized on both sides).",
        "",
        "| workload | N queued | sync-queue | "
        + " | ".join(p.name for p in peers)
        + " | "
        + " | ".join(f"× {p.name}" for p in peers)
        + " |",
        "|---|---:|---:|" + "---:|" * (2 * len(peers)),
    ]
    ours: dict[int, dict[str, float]] = {}
    for n in sizes:
        ours[n] = measure(SYNC_QUEUE, n, ops)
        theirs = [measure(p, n, min(ops, 5_000)) if n in peer_sizes else None for p in peers]
        for workload in ("push", "pop+complete", "cycle"):
            ours_rate = ours[n][workload]
            cells = [fmt(t[workload]) if t else "—" for t in theirs]
            ratios = [f"{ours_rate / t[workload]:.1f}×" if t else "—" for t in theirs]
            lines.append(
                f"| {workload} | {fmt(n)} | {fmt(ours_rate)} | "
                + " | ".join(cells)
                + " | "
                + " | ".join(ratios)
                + " |"
            )
    small, large = sizes[0], sizes[-1]
    lines += [
        "",
        f"| cost per operation, N = {fmt(large)} vs N = {fmt(small)} | ratio (target ≤ 1.5) |",
        "|---|---:|",
    ]
    for workload in ("push", "pop+complete", "cycle"):
        lines.append(f"| {workload} | {ours[small][workload] / ours[large][workload]:.2f} |")
    per_item = memory_per_item(100_000 if quick else 1_000_000)
    lines += [
        "",
        f"Memory per queued item (100-byte payload, RSS growth over "
        f"{'100 k' if quick else '1 M'} items): **{per_item:,.0f} bytes** "
        "(target ≤ 1024).",
    ]
    return lines


# ---------------------------------------------------------------- storage (issue 3)


def durable_queue(directory: str, **overrides: Any) -> SyncQueue:
    config = QueueConfig(
        persistence_path=directory, max_capacity=10_000_000, persistence_interval=3600, **overrides
    )
    return SyncQueue(config, maintenance_thread=False)


def threaded_rate(threads: int, seconds: float, op: Callable[[], None]) -> float:
    import threading

    counts = [0] * threads
    stop = time.monotonic() + seconds

    def run(i: int) -> None:
        n = 0
        while time.monotonic() < stop:
            op()
            n += 1
        counts[i] = n

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - start)


def persist_queue_durable(directory: str) -> Any:
    import persistqueue

    q = persistqueue.SQLiteAckQueue(directory, multithreading=True, auto_commit=True)
    for conn in {id(q._conn): q._conn, id(q._putter): q._putter}.values():
        conn.execute("PRAGMA synchronous=FULL")  # fsync every commit: equal durability
    return q


def du(directory: str) -> int:
    return sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory))


Row = tuple[str, str, str, str]


def storage_section(quick: bool) -> list[str]:
    import shutil
    import tempfile

    base = tempfile.mkdtemp(prefix="sq-bench-", dir=os.environ.get("SYNC_QUEUE_BENCH_DIR"))
    rows: list[Row] = []
    n_seq = 300 if quick else 1_000
    floor = fsync_floor(base, n_seq)
    rows.append(("fsync floor (write + fdatasync of 120 B)", f"{fmt(floor)}/s", "—", "—"))
    rows.append(_sequential_push_row(base, n_seq, floor))
    rows += _push_batch_rows(base, quick)
    rows.append(_group_commit_row(base, quick))
    n_rec = 100_000 if quick else 1_000_000
    for compression in (True, False):
        rows += _recovery_rows(os.path.join(base, f"recover-{compression}"), n_rec, compression)
    shutil.rmtree(base, ignore_errors=True)
    lines = [
        '### Storage, `durability="always"` unless said',
        "",
        "| figure | sync-queue | compared with | ratio |",
        "|---|---:|---|---:|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return lines


def _fresh_queue(base: str, name: str, **overrides: Any) -> SyncQueue:
    """A durable queue in an empty directory ``base/name``."""
    import shutil

    path = os.path.join(base, name)
    shutil.rmtree(path, ignore_errors=True)
    return durable_queue(path, **overrides)


def _sequential_push_row(base: str, n_seq: int, floor: float) -> Row:
    q = _fresh_queue(base, "seq")
    r = rate(n_seq, lambda: [q.push(SyncItem.new(PAYLOAD)) for _ in range(n_seq)] and None)
    q.shutdown()
    return (
        "sequential durable push",
        f"{fmt(r)}/s",
        "fsync floor",
        f"{r / floor:.2f}× (target ≥ 0.8)",
    )


def _push_batch_rows(base: str, quick: bool) -> list[Row]:
    from sync_queue.storage import EncryptionService

    def batch_rate(**overrides: Any) -> float:
        q = _fresh_queue(base, "batch", **overrides)
        batches = [
            [SyncItem.new(payload()) for _ in range(1000)] for _ in range(5 if quick else 20)
        ]
        r = rate(1000 * len(batches), lambda: [q.push_batch(b) for b in batches] and None)
        q.shutdown()
        return r

    plain = batch_rate(enable_compression=False)
    compressed = batch_rate()
    encrypted = batch_rate(enable_encryption=True, encryption_key=EncryptionService.generate_key())
    return [
        (
            "durable push_batch(1000), zstd",
            f"{fmt(compressed)} items/s",
            "target 200 k",
            f"{compressed / 200_000:.2f}×",
        ),
        (
            "… with AES-256-GCM too",
            f"{fmt(encrypted)} items/s",
            "without encryption",
            f"{encrypted / compressed:.2f}× (cost of encryption)",
        ),
        (
            "… without compression",
            f"{fmt(plain)} items/s",
            "with zstd",
            f"{plain / compressed:.2f}×",
        ),
    ]


def _group_commit_row(base: str, quick: bool) -> Row:
    seconds = 2.0 if quick else 5.0
    q = _fresh_queue(base, "threads")
    ours = threaded_rate(16, seconds, lambda: q.push(SyncItem.new(PAYLOAD)) and None)
    q.shutdown()
    pq = persist_queue_durable(os.path.join(base, "persist-queue"))
    theirs = threaded_rate(16, seconds, lambda: pq.put(PAYLOAD))
    return (
        "16 threads pushing, durable (group commit)",
        f"{fmt(ours)}/s",
        f"persist-queue SQLiteAckQueue, synchronous=FULL: {fmt(theirs)}/s",
        f"{ours / theirs:.1f}× (target ≥ 5×; ≥ 20 k/s)",
    )


def _recovery_rows(path: str, n_rec: int, compression: bool) -> list[Row]:
    """Time to reopen ``n_rec`` items from the journal, then from a snapshot; bytes of each."""
    import shutil

    q = durable_queue(path, enable_compression=compression)
    for _ in range(0, n_rec, 10_000):
        q.push_batch([SyncItem.new(payload()) for _ in range(10_000)])
    q.shutdown()
    journal_bytes = du(path)
    start = time.perf_counter()
    q = durable_queue(path, enable_compression=compression)
    replay_s = time.perf_counter() - start
    q.flush()
    q.shutdown()
    snapshot_bytes = du(path)
    start = time.perf_counter()
    q = durable_queue(path, enable_compression=compression)
    load_s = time.perf_counter() - start
    assert len(q) == n_rec
    q.shutdown()
    shutil.rmtree(path)
    label = "zstd" if compression else "no compression"
    return [
        (
            f"recover {fmt(n_rec)} items from the journal ({label})",
            f"{replay_s:.2f} s",
            "target 5 s",
            f"{replay_s / 5:.2f}×",
        ),
        (
            f"recover {fmt(n_rec)} items from a snapshot ({label})",
            f"{load_s:.2f} s",
            "target 5 s",
            f"{load_s / 5:.2f}×",
        ),
        (
            f"bytes on disk per item ({label}, 100-byte payload)",
            f"journal {journal_bytes / n_rec:.0f} B, snapshot {snapshot_bytes / n_rec:.0f} B",
            "—",
            "—",
        ),
    ]


def _sidecar_section(quick: bool) -> list[str]:
    """Issue 4: the sidecar over a real pipe (bench/sidecar_bench.py)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from sidecar_bench import sidecar_section

    lines: list[str] = sidecar_section(quick)
    return lines


def _compaction_section(quick: bool) -> list[str]:
    """Issue 9 §4: pings while the sidecar compacts 1 M items (bench/compaction_bench.py)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from compaction_bench import compaction_section

    lines: list[str] = compaction_section(quick)
    return lines


def _targets_section(quick: bool) -> list[str]:
    """Issue 13: every target with its floor or peer (bench/targets.py)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from targets import targets_section

    lines: list[str] = targets_section(quick)
    return lines


def _startup_section(quick: bool) -> list[str]:
    """Issue 5: start-up of the frozen builds (packaging/bench_startup.py; needs the builds)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, os.path.join(root, "packaging"))
    from bench_startup import startup_section

    lines: list[str] = startup_section(quick)
    return lines


def _memory_section(quick: bool) -> list[str]:
    """Issue 13: memory and start-up with data (bench/memory_bench.py)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from memory_bench import memory_rows, startup_rows

    lines = [
        "### Memory and start-up with data (the sidecar; 1 M items)",
        "",
        "| figure | sync-queue | compared with | ratio |",
        "|---|---:|---|---:|",
    ]
    lines += [
        f"| {a} | {b} | {c} | {d} |" for a, b, c, d in memory_rows(quick) + startup_rows(quick)
    ]
    return lines


def _cycle_section(quick: bool) -> list[str]:
    """The outbox's popBatch + completeBatch cycle: the sidecar's CPU per item
    (bench/dispatch_cycle_bench.py)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from dispatch_cycle_bench import cycle_section

    lines: list[str] = cycle_section(5_000 if quick else 20_000, 1 if quick else 3)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (smoke test)")
    parser.add_argument(
        "--only",
        action="append",
        choices=["engine", "storage", "sidecar", "cycle", "compaction", "startup", "memory"],
        help="run only this section (repeatable)",
    )
    parser.add_argument(
        "--targets",
        action="store_true",
        help="only the table of issue 13's targets (bench/targets.py), each beside its floor",
    )
    args = parser.parse_args()
    print(
        f"# sync-queue benchmark — Python {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} cores\n"
    )
    sections = {
        "engine": engine_section,
        "storage": storage_section,
        "sidecar": _sidecar_section,
        "cycle": _cycle_section,
        "compaction": _compaction_section,
        "startup": _startup_section,
        "memory": _memory_section,
    }
    if args.targets:
        if args.only:
            parser.error("--targets prints its own table; --only does not apply to it")
        sections = {"targets": _targets_section}
    for name in args.only or list(sections):
        for line in sections[name](args.quick):
            print(line)
        print()
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
