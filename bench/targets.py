"""Every target of issue 13 in one table: figure, floor or peer from the same run, ratio,
target, met or not (``bench/bench.py --targets``; under 6 minutes on a 2-core machine).

A little over 400 lines on purpose: every row's measurement sits beside its floor or peer
here, so a reader checks the fairness of a row in one place.

Each per-call figure is measured ``REPEATS`` times, interleaved with its floor or peer, and
the table shows the median of each (the ratio is of the medians): the figures move with the
machine's load, their ratios much less. The memory and start-up rows come from
``bench/memory_bench.py`` (``memory_rows``, ``startup_rows``) when it is there.

Floors and peers:

- **Python floor** (engine): the least Python that does a push, pop and complete: a dict of
  items and a deque of ids (no priorities, leases, retries, ids checked, or time);
- **echo floor** (sidecar): a minimal Python NDJSON process (``sidecar_bench.ECHO_FLOOR``);
- **fsync floor**: ``write`` + ``fdatasync`` of what a push writes, into preallocated space
  as the journal writes (the floor), and appended to a growing file (shown beside it);
- **peers**: persist-queue and litequeue, which store a payload as serialized bytes in
  SQLite; the engine row beside them serializes its payload too (orjson), so both sides do
  the same work. The pipelined durable row's peer is SQLite itself (both peers' ``put``
  commit every row, so neither can take a stream a group at a time): the same stream of
  serialized payloads, one transaction per pipe-read's worth of requests, fsync per commit.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import statistics
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import sidecar_bench as sb

from sync_queue import QueueConfig, SyncItem, SyncQueue
from sync_queue.engine import Engine

PAYLOAD = {"data": "x" * 100}
REPEATS = 3


@dataclass
class Target:
    """One row of the table."""

    name: str
    figure: str
    compared: str
    ratio: str
    target: str
    met: str


def _median_of(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def _met(ok: bool) -> str:
    return "**met**" if ok else "not met"


# ------------------------------------------------------------------------- engine


def engine_cycles(ops: int) -> float:
    """push -> pop -> complete per second through ``Engine`` + ``QueueCore``, the API the
    sidecar's dispatcher drives (``begin_change`` catches up with time, then the core call)."""
    engine = Engine(QueueConfig(max_capacity=10_000_000))
    engine.start()
    core, begin = engine.core, engine.begin_change
    for _ in range(1000):
        core.push(begin(), SyncItem.new(PAYLOAD))
    start = time.perf_counter()
    for _ in range(ops):
        core.push(begin(), SyncItem.new(PAYLOAD))
        item = core.pop(begin(), 1)[0]
        core.complete(begin(), item.id)
    return ops / (time.perf_counter() - start)


def python_floor_cycles(ops: int) -> float:
    """The same cycle with the least Python that does it (see the module docstring)."""
    items: dict[int, list[Any]] = {}
    ready: deque[int] = deque()
    ids = itertools.count()
    for _ in range(1000):
        n = next(ids)
        items[n] = [PAYLOAD, 0]
        ready.append(n)
    start = time.perf_counter()
    for _ in range(ops):
        n = next(ids)
        items[n] = [PAYLOAD, 0]
        ready.append(n)
        got = ready.popleft()
        items[got][1] = 1
        del items[got]
    return ops / (time.perf_counter() - start)


def serialized_cycles(ops: int) -> float:
    """The public ``SyncQueue`` API, payload serialized on push and parsed on pop (orjson),
    as the SQLite peers do."""
    q = SyncQueue(QueueConfig(max_capacity=10_000_000), maintenance_thread=False)
    dumps, loads = orjson.dumps, orjson.loads
    for _ in range(1000):
        q.push(SyncItem.new(dumps(PAYLOAD)))
    start = time.perf_counter()
    for _ in range(ops):
        q.push(SyncItem.new(dumps(PAYLOAD)))
        item = q.pop()
        assert item is not None
        loads(item.payload)
        q.mark_completed(item.id)
    rate = ops / (time.perf_counter() - start)
    q.shutdown()
    return rate


def peer_cycles(ops: int) -> float | None:
    """litequeue (SQLite ``:memory:``): put, pop, done."""
    try:
        from litequeue import LiteQueue
    except ImportError:
        return None
    q = LiteQueue(":memory:")
    for _ in range(1000):
        q.put(orjson.dumps(PAYLOAD).decode())
    start = time.perf_counter()
    for _ in range(ops):
        q.put(orjson.dumps(PAYLOAD).decode())
        message = q.pop()
        orjson.loads(message.data)
        q.done(message.message_id)
    return ops / (time.perf_counter() - start)


def engine_targets(quick: bool) -> list[Target]:
    ops = 20_000 if quick else 50_000
    ours = _median_of([(engine_cycles(ops), python_floor_cycles(ops)) for _ in range(REPEATS)])
    peer_ops = 1_000 if quick else 2_000
    fair = _median_of(
        [(serialized_cycles(peer_ops), peer_cycles(peer_ops) or 0.0) for _ in range(REPEATS)]
    )
    rows = [
        Target(
            "in-memory push → pop → complete (Engine + QueueCore, as the sidecar drives it)",
            f"{ours[0]:,.0f} cycles/s",
            f"Python floor (dict + deque) {ours[1]:,.0f}/s",
            f"{ours[0] / ours[1]:.2f}× floor",
            "≥ 150,000 cycles/s",
            _met(ours[0] >= 150_000),
        )
    ]
    if fair[1]:
        rows.append(
            Target(
                "same cycle through SyncQueue, payload serialized like the peer's (1 k queued)",
                f"{fair[0]:,.0f} cycles/s",
                f"litequeue (SQLite :memory:) {fair[1]:,.0f}/s",
                f"{fair[0] / fair[1]:.1f}× peer",
                "same work on both sides",
                "**met** (both serialize)",
            )
        )
    return rows


# ------------------------------------------------------------------------- sidecar


def sidecar_targets(quick: bool, config: str) -> list[Target]:
    trips = 2_000 if quick else 5_000
    pushes = 30_000 if quick else 100_000
    push_stream = b"".join(sb._push(n) for n in range(pushes))
    trip_runs, pipe_runs = [], []
    for _ in range(REPEATS):
        floor = sb.echo_floor()
        floor_p50 = sb.percentile(sb.round_trips(floor, sb._push, trips), 0.5)
        floor_rate = sb.pipelined(floor, push_stream, pushes)
        floor.close()
        mem = sb.sidecar("--memory", "--config", config)
        p50 = sb.percentile(sb.round_trips(mem, sb._push, trips), 0.5)
        mem.close()
        mem = sb.sidecar("--memory", "--config", config)
        rate = sb.pipelined(mem, push_stream, pushes)
        mem.close()
        trip_runs.append((p50, floor_p50))
        pipe_runs.append((rate, floor_rate))
    p50, floor_p50 = _median_of(trip_runs)
    rate, floor_rate = _median_of(pipe_runs)
    return [
        Target(
            "`push` round trip p50, --memory",
            f"{p50 * 1e6:,.1f} µs",
            f"echo floor {floor_p50 * 1e6:,.1f} µs",
            f"{p50 / floor_p50:.2f}× floor",
            "≤ 1.5× echo floor",
            _met(p50 <= 1.5 * floor_p50),
        ),
        Target(
            f"pipelined `push`, --memory ({pushes:,} in one stream)",
            f"{rate:,.0f} pushes/s",
            f"echo floor {floor_rate:,.0f} lines/s",
            f"{rate / floor_rate:.2f}× floor",
            "≥ 200,000 pushes/s",
            _met(rate >= 200_000),
        ),
    ]


# ------------------------------------------------------------------------- durable


class _FloorFile:
    """A file taking ``size``-byte writes, each followed by fdatasync: appended to a file
    that grows, or written in turn into space preallocated (as the journal does)."""

    def __init__(self, path: str, size: int, n: int, preallocated: bool) -> None:
        flags = os.O_WRONLY | os.O_CREAT | (0 if preallocated else os.O_APPEND)
        self.fd = os.open(path, flags, 0o600)
        if preallocated:
            os.posix_fallocate(self.fd, 0, (n + 1) * size)
        self.record = b"x" * size

    def rate(self, n: int) -> float:
        fd, record = self.fd, self.record
        start = time.perf_counter()
        for _ in range(n):
            os.write(fd, record)
            os.fdatasync(fd)
        return n / (time.perf_counter() - start)


def sequential_vs_floors(base: str, n: int, rounds: int) -> tuple[float, float, float, int]:
    """Sequential durable pushes ("always") and the two fsync floors, ``rounds`` chunks of
    ``n`` each, taking turns (the disk's load changes by the second on a shared machine):
    median rates of ours, the preallocated floor, the appending floor; bytes per push."""
    path = os.path.join(base, "seq")
    shutil.rmtree(path, ignore_errors=True)
    q = SyncQueue(
        QueueConfig(
            persistence_path=Path(path), max_capacity=10_000_000, persistence_interval=3600
        ),
        maintenance_thread=False,
    )
    q.push(SyncItem.new(PAYLOAD))
    before = _journal_bytes(q)
    for _ in range(n):
        q.push(SyncItem.new(PAYLOAD))
    size = (_journal_bytes(q) - before) // n  # what a push writes: the floors write that
    total = n * rounds
    floors = [_FloorFile(os.path.join(base, f"floor-{p}"), size, total, p) for p in (True, False)]
    ours, prealloc, append = [], [], []
    try:
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(n):
                q.push(SyncItem.new(PAYLOAD))
            ours.append(n / (time.perf_counter() - start))
            prealloc.append(floors[0].rate(n))
            append.append(floors[1].rate(n))
    finally:
        q.shutdown()
        for f in floors:
            os.close(f.fd)
    median = statistics.median
    return median(ours), median(prealloc), median(append), size


def _journal_bytes(q: SyncQueue) -> int:
    """The journal's logical size (its files are preallocated ahead of it)."""
    return int(q.metrics().storage["journalBytes"])


def peer_grouped_puts(directory: str, n: int, group: int) -> float:
    """SQLite (the store under persist-queue and litequeue; their ``put`` commits every
    row), WAL, synchronous=FULL, one transaction per ``group`` serialized payloads: a stream
    of pushes made durable a group at a time, as the sidecar's group commit does."""
    import sqlite3

    path = os.path.join(directory, "sqlite-grouped.db")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")  # fsync at every commit: equal durability
    db.execute("CREATE TABLE queue (id INTEGER PRIMARY KEY, data BLOB, status INTEGER)")
    dumps = orjson.dumps
    start = time.perf_counter()
    for first in range(0, n, group):
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO queue (data, status) VALUES (?, 0)",
            [(dumps(PAYLOAD),) for _ in range(min(group, n - first))],
        )
        db.execute("COMMIT")
    rate = n / (time.perf_counter() - start)
    db.close()
    return rate


def durable_batches(directory: str, n: int, group: int) -> float:
    """``SyncQueue.push_batch`` of ``group`` items at a time, "always": one fsync each."""
    shutil.rmtree(directory, ignore_errors=True)
    q = SyncQueue(
        QueueConfig(
            persistence_path=Path(directory), max_capacity=10_000_000, persistence_interval=3600
        ),
        maintenance_thread=False,
    )
    start = time.perf_counter()
    for first in range(0, n, group):
        q.push_batch([SyncItem.new(PAYLOAD) for _ in range(min(group, n - first))])
    rate = n / (time.perf_counter() - start)
    q.shutdown()
    return rate


def durable_targets(quick: bool, base: str, config: str) -> list[Target]:
    n_seq = 300 if quick else 1_000
    ours_seq, prealloc, appending, size = sequential_vs_floors(base, n_seq // 10, 10 * REPEATS)
    seq = (ours_seq, prealloc)
    pushes = 20_000 if quick else 50_000
    stream = b"".join(sb._push(n) for n in range(pushes))
    # What one read of a full pipe (64 KiB on Linux) hands the sidecar: its group size at most.
    group = 65536 // len(sb._push(pushes))
    runs, batch_runs = [], []
    for _ in range(REPEATS):
        batch_runs.append(
            (
                durable_batches(os.path.join(base, "batches"), pushes, group),
                peer_grouped_puts(base, pushes, group),
            )
        )
        data = os.path.join(base, "durable")
        shutil.rmtree(data, ignore_errors=True)
        disk = sb.sidecar("--data-dir", data, "--config", config)
        rate = sb.pipelined(disk, stream, pushes)
        disk.close()
        runs.append((rate, peer_grouped_puts(base, pushes, group)))
    ours, peer = _median_of(runs)
    batches, batch_peer = _median_of(batch_runs)
    return [
        Target(
            'sequential durable push (SyncQueue, "always")',
            f"{seq[0]:,.0f} pushes/s",
            f"fsync floor: {size} B (what a push writes) + fdatasync into preallocated "
            f"space {seq[1]:,.0f}/s; appending to a growing file {appending:,.0f}/s",
            f"{seq[0] / seq[1]:.2f}× floor ({seq[0] / appending:.2f}× appending)",
            "≥ 0.85× fsync floor",
            _met(seq[0] >= 0.85 * seq[1]),
        ),
        Target(
            f'pipelined durable `push` (sidecar, "always", {pushes:,} in one stream)',
            f"{ours:,.0f} pushes/s",
            f"SQLite in-process (no pipe, no JSON-RPC), WAL, synchronous=FULL, a transaction "
            f"per {group} rows (one pipe read): {peer:,.0f}/s",
            f"{ours / peer:.2f}× peer",
            "beside a peer of equal concurrency and durability",
            "shown; slower than the peer" if ours < peer else "shown; faster than the peer",
        ),
        Target(
            f'durable `push_batch({group})` in-process (SyncQueue, "always")',
            f"{batches:,.0f} items/s",
            f"the same SQLite peer: {batch_peer:,.0f}/s",
            f"{batches / batch_peer:.2f}× peer",
            "equal work: in-process, same groups, fsync per group",
            "shown; slower than the peer"
            if batches < batch_peer
            else "shown; faster than the peer",
        ),
    ]


# ------------------------------------------------------------------------- the table


def _memory_helper_rows(quick: bool) -> list[Target]:
    """Rows of ``bench/memory_bench.py`` (the memory and start-up targets), if present."""
    try:
        from memory_bench import memory_rows, startup_rows
    except ImportError:
        return [
            Target(name, "n/a (module missing)", "—", "—", target, "—")
            for name, target in (
                ("peak RSS, 1 M push → pop → complete", "≤ 1.2 GB"),
                ("RSS after start-up, 1 M retained finished items", "≤ 300 MB"),
                ("memory per pending item, 100 B payload", "≤ 1 KiB"),
                ("spawn → `ready`, 100 k items on disk", "≤ 300 ms"),
                ("recovery of 1 M items", "≤ 2 s"),
            )
        ]
    return [_from_memory_row(row) for row in [*memory_rows(quick), *startup_rows(quick)]]


def _from_memory_row(row: tuple[str, ...]) -> Target:
    """memory_bench's (name, figure, "target X; floor", "r× of target: met") as a Target;
    a row without a target (a comparison) keeps its text as it is."""
    name, figure, compared, ratio = (str(c) for c in row)
    if not compared.startswith("target "):
        return Target(name, figure, compared, ratio, "—", "—")
    target, _, floor = compared.partition("; ")
    ratio, _, verdict = ratio.partition(": ")
    met = "**met**" if verdict == "met" else "not met" if verdict else "—"
    return Target(name, figure, floor or "—", ratio, target.removeprefix("target "), met)


def _section(title: str, make: Callable[[], list[Target]]) -> list[Target]:
    start = time.perf_counter()
    rows = make()
    print(f"  {title}: {time.perf_counter() - start:.0f} s", flush=True)
    return rows


def targets_section(quick: bool) -> list[str]:
    base = tempfile.mkdtemp(prefix="sq-targets-", dir=os.environ.get("SYNC_QUEUE_BENCH_DIR"))
    config = os.path.join(base, "config.json")
    with open(config, "wb") as f:
        f.write(orjson.dumps({"max_capacity": 10_000_000}))
    load = os.getloadavg()[0]
    try:
        rows = _section("memory and start-up", lambda: _memory_helper_rows(quick))
        rows += _section("engine", lambda: engine_targets(quick))
        rows += _section("sidecar", lambda: sidecar_targets(quick, config))
        rows += _section("durable", lambda: durable_targets(quick, base, config))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    lines = [
        "### Issue 13 targets",
        "",
        "| target | figure | floor / peer (same run) | ratio | target | met? |",
        "|---|---:|---|---:|---|---|",
    ]
    lines += [
        f"| {r.name} | {r.figure} | {r.compared} | {r.ratio} | {r.target} | {r.met} |" for r in rows
    ]
    lines += [
        "",
        f"Per-call rows: median of {REPEATS} runs, each interleaved with its floor or peer. "
        f"Load average at the start: {load:.1f} on {os.cpu_count()} cores. "
        f"Sidecar: `{sb.shown_argv()}`.",
    ]
    return lines
