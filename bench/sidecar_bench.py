"""The sidecar over its real pipes, against floors measured in the same run (issue 4).

    .venv/bin/python bench/sidecar_bench.py [--quick]

``sidecar_section(quick)`` returns the markdown lines (``bench/bench.py`` prints them too).
Every figure sits beside what it is measured against:

- the **echo floor**: a minimal Python NDJSON process (read a line, ``orjson.loads``,
  ``orjson.dumps``, write, flush): what any Python process on a pipe costs;
- the **fsync floor**: ``write`` + ``fdatasync`` of a small record in a temp directory;
- **persist-queue**: ``SQLiteAckQueue.put`` in-process, on disk, default settings.

The sidecar is ``$SYNC_QUEUE_SIDECAR`` (a frozen binary) if set, else ``python -m
sync_queue`` from this checkout. Nothing here tunes the sidecar: default config except
``max_capacity`` (so that the pushes fit).

A little over 400 lines on purpose: it also runs on its own, and the process harness (spawn,
pipelined writer and reader, echo floor) serves only the figures below it.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson
from floors import fsync_floor

ROOT = Path(__file__).resolve().parents[1]
PAYLOAD = {"data": "x" * 100}

# The pipe + JSON floor: read a line, parse it, answer it, flush. Nothing else.
ECHO_FLOOR = r"""
import sys, orjson
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    req = orjson.loads(line)
    out.write(orjson.dumps({"jsonrpc": "2.0", "id": req["id"], "result": {"pong": True}}) + b"\n")
    out.flush()
"""


# ------------------------------------------------------------------------------ processes


def sidecar_argv() -> list[str]:
    frozen = os.environ.get("SYNC_QUEUE_SIDECAR")
    return shlex.split(frozen) if frozen else [sys.executable, "-m", "sync_queue"]


def shown_argv() -> str:
    """``sidecar_argv`` for a report: paths inside this checkout relative to it, so a table
    pasted into the README names no machine's directories."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    return " ".join(word.removeprefix(root) for word in sidecar_argv())


def _env() -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("SYNC_QUEUE_KEY", "SYNC_QUEUE_DATA_DIR")
    }
    src = str(ROOT / "sidecar")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


class Proc:
    """A child speaking NDJSON on its stdin/stdout; stderr discarded."""

    def __init__(self, argv: list[str]) -> None:
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin = self.proc.stdin
        self.raw_out = self.proc.stdout
        self.out = io.BufferedReader(self.proc.stdout, 1 << 16)  # type: ignore[type-var]

    def read_until_id(self, marker: bytes) -> bytes:
        """Lines until the response whose id is ``marker`` (skips notifications)."""
        while True:
            got = self.out.readline()
            if not got:
                raise RuntimeError("the process closed stdout")
            if marker in got:
                return got

    def wait_ready(self) -> float:
        """Seconds from spawn to the ``ready`` notification."""
        first = self.out.readline()
        if b'"ready"' not in first:
            raise RuntimeError(f"expected ready, got {first[:200]!r}")
        return time.perf_counter() - self.started

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError):
            self.stdin.close()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def sidecar(*args: str) -> Proc:
    proc = Proc([*sidecar_argv(), *args])
    proc.wait_ready()
    return proc


def echo_floor() -> Proc:
    return Proc([sys.executable, "-c", ECHO_FLOOR])


# ------------------------------------------------------------------------------ measures


def round_trips(proc: Proc, make_line: Callable[[int], bytes], count: int) -> list[float]:
    """One request at a time: seconds per round trip."""
    times = []
    write, readline = proc.stdin.write, proc.out.readline
    for n in range(count):
        data = make_line(n)
        marker = b'"id":%d,' % n
        start = time.perf_counter()
        write(data)
        while marker not in readline():  # a notification may come first
            pass
        times.append(time.perf_counter() - start)
    return times


def pipelined(proc: Proc, data: bytes, expected: int) -> float:
    """Write ``data`` from a thread, read until the final ``ping`` with id "end" is
    answered; return requests per second (``expected`` responses, all checked)."""
    data += b'{"jsonrpc":"2.0","id":"end","method":"ping"}\n'
    writer = threading.Thread(target=proc.stdin.write, args=(data,), daemon=True)
    received = bytearray()
    start = time.perf_counter()
    writer.start()
    read = proc.raw_out.read
    while True:
        chunk = read(1 << 20)
        if not chunk:
            raise RuntimeError("the process closed stdout")
        tail = len(received)
        received += chunk
        if b'"id":"end"' in received[max(0, tail - 16) :]:
            break
    elapsed = time.perf_counter() - start
    writer.join()
    responses = received.count(b'{"jsonrpc":"2.0","id":') - 1
    errors = received.count(b'"error":{')
    if responses != expected or errors:
        raise RuntimeError(f"{responses} responses ({errors} errors), expected {expected}")
    return expected / elapsed


def percentile(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def persist_queue_puts(directory: str, n: int, seconds: float) -> float | None:
    """persist-queue's SQLiteAckQueue.put, in-process, on disk, default settings."""
    try:
        import persistqueue
    except ImportError:
        return None
    q = persistqueue.SQLiteAckQueue(os.path.join(directory, "persist-queue"))
    q.put(PAYLOAD)
    done = 0
    start = time.perf_counter()
    stop = start + seconds
    while done < n and time.perf_counter() < stop:
        q.put(PAYLOAD)
        done += 1
    return done / (time.perf_counter() - start)


def prefill(directory: str, count: int) -> None:
    """``count`` pending items on disk, through the Python API (journal only)."""
    from sync_queue import QueueConfig, SyncItem, SyncQueue

    q = SyncQueue(QueueConfig(persistence_path=Path(directory), max_capacity=count + 1))
    for start in range(0, count, 10_000):
        q.push_batch([SyncItem.new(PAYLOAD) for _ in range(min(10_000, count - start))])
    q.shutdown()


def time_to_ready(*args: str, runs: int) -> float:
    """Median seconds from spawn to ``ready`` (the process is then closed)."""
    times = []
    for _ in range(runs):
        proc = Proc([*sidecar_argv(), *args])
        times.append(proc.wait_ready())
        proc.close()
    return statistics.median(times)


def time_to_first_reply(runs: int) -> float:
    """The floor for start-up: spawn the echo process, one ping answered."""
    times = []
    for _ in range(runs):
        proc = echo_floor()
        proc.stdin.write(b'{"jsonrpc":"2.0","id":0,"method":"ping"}\n')
        proc.read_until_id(b'"id":0')
        times.append(time.perf_counter() - proc.started)
        proc.close()
    return statistics.median(times)


# ------------------------------------------------------------------------------ the section


def _ping(n: int) -> bytes:
    return b'{"jsonrpc":"2.0","id":%d,"method":"ping"}\n' % n


_PAYLOAD_JSON = orjson.dumps(PAYLOAD)


def _push(n: int) -> bytes:
    return b'{"jsonrpc":"2.0","id":%d,"method":"push","params":{"payload":%s}}\n' % (
        n,
        _PAYLOAD_JSON,
    )


def _cycle_stream(count: int, block: int = 1000) -> bytes:
    """``count`` pushes, pops and completes: each block of pushes, then pop+complete pairs
    (FIFO, so the n-th pop hands out item n and the complete names it)."""
    parts = []
    n = 0
    for start in range(0, count, block):
        ids = range(start, min(count, start + block))
        for i in ids:
            parts.append(
                b'{"jsonrpc":"2.0","id":%d,"method":"push","params":{"id":"c%d","payload":%s}}\n'
                % (n, i, _PAYLOAD_JSON)
            )
            n += 1
        for i in ids:
            parts.append(b'{"jsonrpc":"2.0","id":%d,"method":"pop"}\n' % n)
            parts.append(
                b'{"jsonrpc":"2.0","id":%d,"method":"complete","params":{"id":"c%d"}}\n'
                % (n + 1, i)
            )
            n += 2
    return b"".join(parts)


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} µs"


def _rate(x: float, unit: str) -> str:
    return f"{x / 1000:,.1f} k {unit}/s" if x >= 1000 else f"{x:,.0f} {unit}/s"


Row = tuple[str, str, str, str]


def sidecar_section(quick: bool) -> list[str]:
    trips = 2_000 if quick else 10_000
    cycle_items = 20_000 if quick else 100_000
    durable_items = 30_000 if quick else 100_000
    on_disk = 100_000
    base = tempfile.mkdtemp(prefix="sq-sidecar-bench-", dir=os.environ.get("SYNC_QUEUE_BENCH_DIR"))
    config = os.path.join(base, "config.json")
    Path(config).write_bytes(orjson.dumps({"max_capacity": 10_000_000}))
    rows: list[Row] = []
    try:
        round_trip_rows, floor_rate = _round_trip_rows(config, trips, cycle_items)
        rows += round_trip_rows
        rows.append(_memory_cycle_row(config, cycle_items, floor_rate))
        rows += _durable_push_rows(base, config, durable_items, quick)
        rows += _startup_rows(base, on_disk, quick)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    lines = [
        "### Sidecar, JSON-RPC over stdio (100-byte payload)",
        "",
        "| figure | sync-queue | floor / peer | ratio |",
        "|---|---:|---|---:|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    lines += [
        "",
        f"Round trips: {trips:,} sequential requests each. Pipelined: all requests written "
        f"by one thread while another reads ({cycle_items:,} items → {3 * cycle_items:,} "
        f"requests; {durable_items:,} durable pushes). Sidecar: `{shown_argv()}`.",
    ]
    return lines


def _round_trip_rows(config: str, trips: int, cycle_items: int) -> tuple[list[Row], float]:
    """Round trips of the sidecar and the echo floor, same lines, same client code; and the
    echo floor's pipelined rate (for the next row)."""
    floor = echo_floor()
    floor_ping = round_trips(floor, _ping, trips)
    floor_push = round_trips(floor, _push, trips)
    floor_rate = pipelined(floor, b"".join(_ping(n) for n in range(cycle_items)), cycle_items)
    floor.close()
    mem = sidecar("--memory", "--config", config)
    ping = round_trips(mem, _ping, trips)
    push = round_trips(mem, _push, trips)
    mem.close()
    rows: list[Row] = []
    for name, ours, theirs in (
        ("ping", ping, floor_ping),
        ("push (--memory)", push, floor_push),
    ):
        for label, q in (("p50", 0.50), ("p99", 0.99)):
            a, b = percentile(ours, q), percentile(theirs, q)
            rows.append(
                (
                    f"`{name}` round trip {label} (target ≤ 2× floor)",
                    _us(a),
                    f"echo floor {_us(b)}",
                    f"{a / b:.2f}×",
                )
            )
    return rows, floor_rate


def _memory_cycle_row(config: str, cycle_items: int, floor_rate: float) -> Row:
    """Pipelined push, pop, complete in memory."""
    mem = sidecar("--memory", "--config", config)
    cycle_rate = pipelined(mem, _cycle_stream(cycle_items), 3 * cycle_items)
    mem.close()
    return (
        "pipelined push → pop + complete, --memory (target ≥ 100 k req/s)",
        _rate(cycle_rate, "req"),
        f"echo floor {_rate(floor_rate, 'req')}",
        f"{cycle_rate / floor_rate:.2f}×",
    )


def _durable_push_rows(base: str, config: str, durable_items: int, quick: bool) -> list[Row]:
    """Pipelined durable pushes, "always", against persist-queue and the fsync floor."""
    data = os.path.join(base, "durable")
    disk = sidecar("--data-dir", data, "--config", config)
    durable_rate = pipelined(disk, b"".join(_push(n) for n in range(durable_items)), durable_items)
    disk.close()
    fsyncs = fsync_floor(base, 300 if quick else 1000)
    peer = persist_queue_puts(base, 2_000 if quick else 5_000, 3.0 if quick else 8.0)
    return [
        (
            'pipelined durable `push`, "always" (target ≥ 50 k items/s, ≥ 10× peer)',
            _rate(durable_rate, "items"),
            "persist-queue SQLiteAckQueue.put (defaults, on disk; sequential, so NOT equal "
            "concurrency: `bench.py --targets` sets it beside SQLite fed the same stream) "
            + (_rate(peer, "items") if peer else "not installed"),
            f"{durable_rate / peer:.1f}×" if peer else "—",
        ),
        (
            'pipelined durable `push`, "always", vs the fsync floor',
            _rate(durable_rate, "items"),
            f"fsync floor (write + fdatasync, 120 B) {_rate(fsyncs, 'fsync')}",
            f"{durable_rate / fsyncs:.1f} items per fsync time",
        ),
    ]


def _startup_rows(base: str, on_disk: int, quick: bool) -> list[Row]:
    """Spawn to ``ready``: empty, ``on_disk`` items in the journal, then in a snapshot."""
    runs = 3 if quick else 5
    spawn_floor = time_to_first_reply(runs)
    empty_dir = os.path.join(base, "empty")
    ready_empty = time_to_ready("--data-dir", empty_dir, runs=runs)
    rows: list[Row] = [
        (
            "spawn → `ready`, empty data dir",
            f"{ready_empty * 1000:,.0f} ms",
            f"echo floor spawn → first reply {spawn_floor * 1000:,.0f} ms",
            f"{ready_empty / spawn_floor:.2f}×",
        )
    ]
    full_dir = os.path.join(base, "full")
    prefill(full_dir, on_disk)
    ready_journal = time_to_ready("--data-dir", full_dir, runs=1 if quick else 2)
    rows.append(
        (
            f"spawn → `ready`, {on_disk // 1000} k items on disk (journal)",
            f"{ready_journal * 1000:,.0f} ms",
            f"empty {ready_empty * 1000:,.0f} ms",
            f"{ready_journal / ready_empty:.2f}×",
        )
    )
    compact = sidecar("--data-dir", full_dir)
    compact.stdin.write(b'{"jsonrpc":"2.0","id":0,"method":"flush"}\n')
    compact.read_until_id(b'"id":0')
    compact.close()
    ready_snapshot = time_to_ready("--data-dir", full_dir, runs=1 if quick else 2)
    rows.append(
        (
            f"spawn → `ready`, {on_disk // 1000} k items on disk (after `flush`: snapshot)",
            f"{ready_snapshot * 1000:,.0f} ms",
            f"empty {ready_empty * 1000:,.0f} ms",
            f"{ready_snapshot / ready_empty:.2f}×",
        )
    )
    return rows


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (smoke test)")
    arguments = parser.parse_args()
    for text in sidecar_section(arguments.quick):
        print(text)
