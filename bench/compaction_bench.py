"""Does the sidecar keep answering while it compacts? (issue 9 §4)

    .venv/bin/python bench/compaction_bench.py [--quick]

``compaction_section(quick)`` returns the markdown lines (``bench/bench.py --only compaction``
prints them too). One sidecar over a data directory holding 1 M pending items in its journal
(100 k with ``--quick``), default settings but ``persistence_interval``. A client sends one
``ping`` every ``GAP_S`` and waits for its reply:

- **idle**: with nothing else going on (the figure everything is compared against);
- **during `flush`**: a ``flush`` is sent, then pings until the ``flush`` reply arrives;
- **during background compaction**: one ``push``, then pings from the moment the
  compaction rotates the journal (a new segment appears) until its snapshot is installed.

The sidecar is ``$SYNC_QUEUE_SIDECAR`` (a frozen binary) if set, else ``python -m
sync_queue`` from this checkout.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sidecar_bench import Proc, percentile, shown_argv, sidecar_argv

GAP_S = 0.005  # between a reply and the next ping
IDLE_PINGS = 400
TARGET_S = 0.050


def prefill(directory: str, count: int) -> None:
    """``count`` pending items with distinct 100-byte payloads, in the journal only."""
    from sync_queue import QueueConfig, SyncItem, SyncQueue

    q = SyncQueue(
        QueueConfig(persistence_path=Path(directory), max_capacity=count + 1),
        maintenance_thread=False,
    )
    for start in range(0, count, 10_000):
        q.push_batch(
            [
                SyncItem.new({"data": os.urandom(50).hex()})
                for _ in range(min(10_000, count - start))
            ]
        )
    q.shutdown()


class Client:
    """One request at a time over a sidecar's pipes; remembers which other replies it saw."""

    def __init__(self, proc: Proc) -> None:
        self.proc = proc
        self.seen: set[bytes] = set()
        self.n = 0

    def send(self, line: bytes) -> None:
        self.proc.stdin.write(line)

    def ping(self) -> float:
        """Seconds for one ping round trip."""
        self.n += 1
        marker = b'"id":%d,' % self.n
        start = time.perf_counter()
        self.send(b'{"jsonrpc":"2.0","id":%d,"method":"ping"}\n' % self.n)
        while True:
            line = self.proc.out.readline()
            if not line:
                raise RuntimeError("the sidecar closed stdout")
            if marker in line:
                return time.perf_counter() - start
            if b'"id":"' in line:
                self.seen.add(line)

    def saw(self, marker: bytes) -> bool:
        return any(marker in line for line in self.seen)


def _files(directory: str, prefix: str) -> set[str]:
    return {n for n in os.listdir(directory) if n.startswith(prefix) and not n.endswith(".tmp")}


def _measure(directory: str, config: str) -> dict[str, object]:
    proc = Proc([*sidecar_argv(), "--data-dir", directory, "--config", config])
    proc.wait_ready()
    client = Client(proc)
    try:
        for _ in range(20):  # warm up
            client.ping()
        idle = []
        for _ in range(IDLE_PINGS):
            idle.append(client.ping())
            time.sleep(GAP_S)

        # -- flush: pings from 20 ms after it until its reply
        flush_start = time.perf_counter()
        client.send(b'{"jsonrpc":"2.0","id":"flush","method":"flush"}\n')
        time.sleep(0.020)
        during_flush: list[float] = []
        while not client.saw(b'"id":"flush"'):
            during_flush.append(client.ping())
            time.sleep(GAP_S)
        flush_s = time.perf_counter() - flush_start
        reply = next(line for line in client.seen if b'"id":"flush"' in line)
        if b'"result":{}' not in reply:
            raise RuntimeError(f"flush failed: {reply[:300]!r}")

        # -- background compaction: one push; the next tick compacts
        segments, snapshots = _files(directory, "journal-"), _files(directory, "snapshot-")
        client.send(b'{"jsonrpc":"2.0","id":"push","method":"push","params":{"payload":1}}\n')
        deadline = time.monotonic() + 60
        while _files(directory, "journal-") <= segments:  # not rotated by a compaction yet
            client.ping()
            time.sleep(GAP_S)
            if time.monotonic() > deadline:
                raise RuntimeError("no background compaction started")
        during_background: list[float] = []
        background_start = time.perf_counter()
        while _files(directory, "snapshot-") <= snapshots:
            during_background.append(client.ping())
            time.sleep(GAP_S)
        background_s = time.perf_counter() - background_start
    finally:
        proc.close()
    return {
        "idle": idle,
        "flush": during_flush,
        "flush_s": flush_s,
        "background": during_background,
        "background_s": background_s,
    }


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def compaction_section(quick: bool) -> list[str]:
    items = 100_000 if quick else 1_000_000
    label = f"{items // 1000:,} k" if items < 1_000_000 else f"{items // 1_000_000} M"
    base = tempfile.mkdtemp(
        prefix="sq-compaction-bench-", dir=os.environ.get("SYNC_QUEUE_BENCH_DIR")
    )
    try:
        config = os.path.join(base, "config.json")
        Path(config).write_bytes(
            orjson.dumps({"max_capacity": 10_000_000, "persistence_interval": 0.5})
        )
        data = os.path.join(base, "data")
        prefill(data, items)
        m = _measure(data, config)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    idle = m["idle"]
    assert isinstance(idle, list)
    idle_p99 = percentile(idle, 0.99)
    rows: list[tuple[str, str, str, str, str]] = []
    for name, key, took in (
        ("`flush`", "flush", m["flush_s"]),
        ("background compaction", "background", m["background_s"]),
    ):
        times = m[key]
        assert isinstance(times, list) and isinstance(took, float)
        p99 = percentile(times, 0.99)
        rows.append(
            (
                f"`ping` p99 during {name}, {label} items ({len(times)} pings in {took:.1f} s)",
                _ms(p99),
                _ms(idle_p99),
                f"≤ {_ms(TARGET_S)}",
                f"{p99 / TARGET_S:.2f}×",
            )
        )
        rows.append(
            (
                f"… the slowest `ping` during {name}",
                _ms(max(times)),
                _ms(max(idle)),
                "—",
                "—",
            )
        )
    lines = [
        f"### Sidecar during compaction ({label} items on disk)",
        "",
        "| figure | sync-queue | idle, same sidecar | target | measured / target |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows]
    lines += [
        "",
        f"One `ping` at a time, {GAP_S * 1000:.0f} ms apart; idle: {IDLE_PINGS} pings before "
        f"the `flush`. Sidecar: `{shown_argv()}`.",
    ]
    return lines


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 k items instead of 1 M")
    arguments = parser.parse_args()
    for text in compaction_section(arguments.quick):
        print(text)
