"""sync-queue benchmarks: every figure beside what it is measured against, in the same run.

    .venv/bin/python bench/bench.py            # full run (1 k, 100 k and 1 M queued items)
    .venv/bin/python bench/bench.py --quick    # smaller sizes, for a smoke test

Engine section (issue 2): push, pop+complete and a full push->pop->complete cycle per second
with N items already queued, for sync-queue's in-memory engine and, side by side, the same
workload through persist-queue's SQLiteAckQueue and litequeue (both on SQLite ``:memory:``,
so all three are in memory); memory per queued item with a 100-byte payload.
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

from sync_queue import QueueConfig, SyncItem, SyncQueue

PAYLOAD = {"data": "x" * 100}


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
        q.push_batch([SyncItem.new(PAYLOAD) for _ in range(min(10_000, n - start))])


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (smoke test)")
    args = parser.parse_args()
    print(
        f"# sync-queue benchmark — Python {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} cores\n"
    )
    for line in engine_section(args.quick):
        print(line)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
