"""Memory and start-up of the sidecar (issue 13), each figure beside its target and a floor.

    .venv/bin/python bench/memory_bench.py [--quick] [--only memory|startup]

``memory_rows(quick)`` and ``startup_rows(quick)`` return rows ``(figure, measured,
compared with, ratio)`` (``bench/bench.py`` prints them too). Memory is the sidecar
process's own (``VmRSS``, peak ``VmHWM`` from ``/proc/<pid>/status``, Linux), driven over
its pipe like the plugin drives it: ``pushBatch`` of 1,000, then ``popBatch`` of 1,000 and a
JSON-RPC batch of 1,000 ``complete`` calls, on a data directory (``durability`` default
``"always"``). Full size is 1 M items (``--quick``: 100 k; the targets are for 1 M).

Floors, measured in the same run: the RSS of a sidecar that has just started on an empty
directory (what any run costs), the bytes of the payloads alone as Python objects (what an
item cannot go below while the engine keeps its payload), the spawn of a minimal Python
NDJSON echo process (``sidecar_bench``), and ``orjson.loads`` of the snapshot's own lines
(the parse every recovery does).
"""

from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sidecar_bench import (
    PAYLOAD,
    Proc,
    prefill,
    sidecar,
    time_to_first_reply,
    time_to_ready,
)

Row = tuple[str, str, str, str]
MB = 1e6
BATCH = 1000


def _status(proc: Proc, field: str) -> int:
    """A ``/proc/<pid>/status`` size field of the sidecar, in bytes."""
    with open(f"/proc/{proc.proc.pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc status")


def _call(proc: Proc, line: bytes, marker: bytes) -> bytes:
    proc.stdin.write(line)
    return proc.read_until_id(marker)


def _push_all(proc: Proc, n: int) -> None:
    item = {"payload": PAYLOAD}
    for k in range(0, n, BATCH):
        count = min(BATCH, n - k)
        params = {"items": [item] * count}
        req = {"jsonrpc": "2.0", "id": k, "method": "pushBatch", "params": params}
        _call(proc, orjson.dumps(req) + b"\n", b'"id":%d,' % k)


def _pop_complete_all(proc: Proc, base_id: int) -> int:
    """Pop and complete until nothing is left; returns how many."""
    done = 0
    rid = base_id
    while True:
        rid += 1
        req = {"jsonrpc": "2.0", "id": rid, "method": "popBatch", "params": {"max": BATCH}}
        reply = orjson.loads(_call(proc, orjson.dumps(req) + b"\n", b'"id":%d,' % rid))
        items = reply["result"]
        if not items:
            return done
        rid += 1
        batch = [
            {
                "jsonrpc": "2.0",
                "id": rid * 10_000 + n,
                "method": "complete",
                "params": {"id": i["id"]},
            }
            for n, i in enumerate(items)
        ]
        proc.stdin.write(orjson.dumps(batch) + b"\n")
        proc.read_until_id(b'"id":%d' % (rid * 10_000))
        done += len(items)


def _shutdown(proc: Proc) -> None:
    proc.stdin.write(b'{"jsonrpc":"2.0","id":-1,"method":"shutdown"}\n')
    proc.close()


def _config(base: str, name: str, **values: object) -> str:
    path = os.path.join(base, name)
    Path(path).write_bytes(orjson.dumps({"max_capacity": 10_000_000, **values}))
    return path


def _cycle(base: str, data: str, config: str, n: int) -> dict[str, int]:
    """``n`` pushes then pop + complete of all, through one sidecar; its RSS figures."""
    proc = sidecar("--data-dir", data, "--config", config)
    figures = {"start": _status(proc, "VmRSS")}
    _push_all(proc, n)
    figures["pushed"] = _status(proc, "VmRSS")
    figures["peak_push"] = _status(proc, "VmHWM")
    _pop_complete_all(proc, n)
    figures["peak"] = _status(proc, "VmHWM")
    proc.stdin.write(b'{"jsonrpc":"2.0","id":-2,"method":"flush"}\n')
    proc.read_until_id(b'"id":-2')
    figures["peak"] = max(figures["peak"], _status(proc, "VmHWM"))
    _shutdown(proc)
    return figures


def _rss_after_ready(data: str, config: str) -> int:
    proc = sidecar("--data-dir", data, "--config", config)
    rss = _status(proc, "VmRSS")
    _shutdown(proc)
    return rss


def _payload_floor(n: int) -> float:
    """Bytes per payload kept as the objects the wire's JSON decodes to."""
    gc.collect()
    line = orjson.dumps(PAYLOAD)
    before = _self_rss()
    kept = [orjson.loads(line) for _ in range(n)]
    per = (_self_rss() - before) / n
    del kept
    return per


def _self_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _verdict(value: float, target: float) -> str:
    return f"{value / target:.2f}× of target: {'met' if value <= target else 'NOT met'}"


def memory_rows(quick: bool) -> list[Row]:
    n = 100_000 if quick else 1_000_000
    base = tempfile.mkdtemp(prefix="sq-mem-", dir=os.environ.get("SYNC_QUEUE_BENCH_DIR"))
    try:
        default = _config(base, "default.json")
        keep_all = _config(base, "keep-all.json", max_finished=None)
        empty_rss = _rss_after_ready(os.path.join(base, "empty"), default)
        run = _cycle(base, os.path.join(base, "default"), default, n)
        after_default = _rss_after_ready(os.path.join(base, "default"), default)
        kept = _cycle(base, os.path.join(base, "keep-all"), keep_all, n)
        after_keep_all = _rss_after_ready(os.path.join(base, "keep-all"), keep_all)
        per_item = (run["pushed"] - run["start"]) / n
        floor = _payload_floor(min(n, 100_000))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    k = f"{n // 1000:,} k" if n < 1_000_000 else "1 M"
    empty = f"sidecar on an empty dir {empty_rss / MB:,.0f} MB"
    return [
        (
            f"peak RSS, {k} push → pop → complete (default config)",
            f"{run['peak'] / MB:,.0f} MB (after the pushes {run['peak_push'] / MB:,.0f} MB)",
            f"target 1,200 MB; {empty}",
            _verdict(run["peak"] / MB, 1200),
        ),
        (
            "… the same with every finished item kept (`max_finished: null`)",
            f"{kept['peak'] / MB:,.0f} MB",
            "default config above",
            f"{kept['peak'] / run['peak']:.2f}×",
        ),
        (
            f"RSS after start-up on that directory ({k} finished, 10 k retained)",
            f"{after_default / MB:,.0f} MB",
            f"target 300 MB; {empty}",
            _verdict(after_default / MB, 300),
        ),
        (
            f"RSS after start-up with {k} retained finished items",
            f"{after_keep_all / MB:,.0f} MB",
            f"target 300 MB; {empty}",
            _verdict(after_keep_all / MB, 300),
        ),
        (
            "memory per pending item (100 B payload, sidecar RSS)",
            f"{per_item:,.0f} B",
            f"target 1,024 B; the payload alone as objects {floor:,.0f} B",
            _verdict(per_item, 1024),
        ),
    ]


def _recovery_seconds(path: str, n: int) -> tuple[float, float, float]:
    """Open ``n`` items from the journal, then from a snapshot (in-process ``open_store``);
    and the floor: ``orjson.loads`` of the snapshot blob's lines."""
    from sync_queue import QueueConfig
    from sync_queue.persistence import _lines, open_store

    config = QueueConfig(persistence_path=Path(path), max_capacity=n + 1)
    prefill(path, n)
    start = time.perf_counter()
    state, store = open_store(config)
    journal_s = time.perf_counter() - start
    store.close(lambda: b"")
    del state
    from sync_queue import SyncQueue

    q = SyncQueue(config, maintenance_thread=False)
    q.flush()
    q.shutdown()
    gc.collect()
    start = time.perf_counter()
    state, store = open_store(config)
    snapshot_s = time.perf_counter() - start
    blob = store.encode(state)
    store.close(lambda: b"")
    del state
    gc.disable()
    start = time.perf_counter()
    parsed = [orjson.loads(line) for line in _lines(blob)]
    parse_s = time.perf_counter() - start
    gc.enable()
    del parsed
    return journal_s, snapshot_s, parse_s


def startup_rows(quick: bool) -> list[Row]:
    base = tempfile.mkdtemp(prefix="sq-start-", dir=os.environ.get("SYNC_QUEUE_BENCH_DIR"))
    runs = 3 if quick else 5
    try:
        floor = time_to_first_reply(runs)
        empty = time_to_ready("--data-dir", os.path.join(base, "empty"), runs=runs)
        full = os.path.join(base, "100k")
        prefill(full, 100_000)
        journal = time_to_ready("--data-dir", full, runs=runs)
        proc = sidecar("--data-dir", full)
        _call(proc, b'{"jsonrpc":"2.0","id":0,"method":"flush"}\n', b'"id":0')
        _shutdown(proc)
        snapshot = time_to_ready("--data-dir", full, runs=runs)
        n = 100_000 if quick else 1_000_000
        rec_journal, rec_snapshot, parse = _recovery_seconds(os.path.join(base, "rec"), n)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    k = f"{n // 1000:,} k" if n < 1_000_000 else "1 M"
    echo = f"echo floor spawn → reply {floor * 1000:,.0f} ms; empty dir {empty * 1000:,.0f} ms"
    return [
        (
            "spawn → `ready`, 100 k items on disk (journal)",
            f"{journal * 1000:,.0f} ms",
            f"target 300 ms; {echo}",
            _verdict(journal * 1000, 300),
        ),
        (
            "spawn → `ready`, 100 k items on disk (snapshot, after `flush`)",
            f"{snapshot * 1000:,.0f} ms",
            f"target 300 ms; {echo}",
            _verdict(snapshot * 1000, 300),
        ),
        (
            f"recover {k} items from the journal (in-process open)",
            f"{rec_journal:.2f} s",
            f"target 2 s; orjson.loads of the snapshot's lines {parse:.2f} s",
            _verdict(rec_journal, 2.0),
        ),
        (
            f"recover {k} items from a snapshot (in-process open)",
            f"{rec_snapshot:.2f} s",
            f"target 2 s; orjson.loads of the snapshot's lines {parse:.2f} s",
            _verdict(rec_snapshot, 2.0),
        ),
    ]


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 k instead of 1 M items")
    parser.add_argument("--only", choices=["memory", "startup"], action="append")
    args = parser.parse_args()
    sections = {"memory": memory_rows, "startup": startup_rows}
    print("| figure | sync-queue | compared with | ratio |")
    print("|---|---:|---|---:|")
    for name in args.only or list(sections):
        for row in sections[name](args.quick):
            print("| " + " | ".join(row) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
