"""The sidecar's CPU per item on the outbox's dispatch cycle, over its real pipes.

    .venv/bin/python bench/dispatch_cycle_bench.py [--items N] [--runs R] [--only memory|disk]

The Tauri plugin's HTTP outbox drains the queue with ``popBatch`` (``max`` 32, ``timeoutMs``,
``leaseMs``, ``destinations: {"except": []}``) and ``completeBatch`` of what it sent, the
next ``popBatch`` written with the ``completeBatch`` (both in flight at once). This drives
the real sidecar (``--memory``, then ``--data-dir`` on a temp directory, durability
``"always"``) the same way, after ``push``-ing N items shaped like the outbox's (an HTTP
request description as payload, a ``destination``, a client-chosen id), and reports:

- the sidecar's CPU per item over the cycle only (pop + complete; the pushes are measured
  apart): the sum of ``/proc/<pid>/task/*/schedstat`` run times, in nanoseconds, so the
  group commit thread counts too;
- wall items per second of the cycle;
- the same CPU per request of pipelined ``ping`` to the sidecar and to the echo floor of
  ``sidecar_bench`` (a minimal Python NDJSON process): the ratio to the echo floor is what
  to compare between runs on a loaded machine.

Linux only (``/proc``). ``--runs`` repeats each measurement and reports the median.
``bench/bench.py --only cycle`` prints the same table (``--quick``: 5,000 items, one run).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sidecar_bench import Proc, echo_floor, pipelined, shown_argv, sidecar

POP_MAX = 32
DESTINATION = "http://127.0.0.1:1"
PAYLOAD = {
    "method": "POST",
    "url": DESTINATION + "/x",
    "headers": {"content-type": "application/json"},
    "body": {"n": 1, "note": "an edit to sync"},
}
POP_PARAMS = {
    "max": POP_MAX,
    "timeoutMs": 5000,
    "leaseMs": 65000,
    "destinations": {"except": []},
}


def cpu_ns(pid: int) -> int:
    """CPU time of every live thread of ``pid`` (ns, ``schedstat``'s first field)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:  # the thread ended meanwhile
            pass
    return total


def _line(n: int | str, method: str, params: object) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": n, "method": method, "params": params}) + b"\n"


def push_all(proc: Proc, ids: list[str]) -> float:
    """Pipelined ``push`` of every id (as the plugin pushes): sidecar CPU µs per item."""
    data = b"".join(
        _line(f"p{n}", "push", {"id": i, "payload": PAYLOAD, "destination": DESTINATION})
        for n, i in enumerate(ids)
    )
    before = cpu_ns(proc.proc.pid)
    pipelined(proc, data, len(ids))
    return (cpu_ns(proc.proc.pid) - before) / 1000 / len(ids)


class Replies:
    """Replies by JSON-RPC id, read in order; one read before it is asked for is kept."""

    def __init__(self, proc: Proc) -> None:
        self.proc = proc
        self.early: dict[int, bytes] = {}

    def get(self, call: int) -> bytes:
        while call not in self.early:
            got = self.proc.out.readline()
            if not got:
                raise RuntimeError("the sidecar closed stdout")
            if b'"error"' in got:
                raise RuntimeError(f"error reply: {got[:300]!r}")
            reply = orjson.loads(got)
            if "id" in reply:  # not a notification
                self.early[reply["id"]] = got
        return self.early.pop(call)


def cycle(proc: Proc, count: int, chunk: int) -> tuple[float, float]:
    """Drain ``count`` items with popBatch + completeBatch; (sidecar CPU µs per item, wall
    items/s). The next pop is written with the first complete of each popped batch. ``chunk``
    0: one completeBatch per popped batch, its reply read with the next pop's; else
    completeBatch calls of ``chunk`` members, each answered before the next is written (every
    call then wakes the sidecar and, on disk, commits on its own: the slow end of what the
    plugin's completer does)."""
    pid = proc.proc.pid
    before = cpu_ns(pid)
    start = time.perf_counter()
    popped = completed = call = 0
    replies = Replies(proc)
    proc.stdin.write(_line(call, "popBatch", POP_PARAMS))
    pending_pop: int | None = call
    while pending_pop is not None:
        items = orjson.loads(replies.get(pending_pop))["result"]
        popped += len(items)
        refs = [{"id": i["id"], "leaseId": i["leaseId"]} for i in items]
        step = chunk or len(refs)
        pending_pop = None
        for first in range(0, len(refs), step):
            call += 1
            complete_id = call
            out = _line(call, "completeBatch", {"items": refs[first : first + step]})
            if first == 0 and popped < count:
                call += 1
                pending_pop = call
                out += _line(call, "popBatch", POP_PARAMS)
            proc.stdin.write(out)
            got = replies.get(complete_id)
            completed += len(orjson.loads(got)["result"]["completed"])
    wall = time.perf_counter() - start
    used = cpu_ns(pid) - before
    if completed != count:
        raise RuntimeError(f"completed {completed} of {count}")
    return used / 1000 / count, count / wall


def ping_cpu(proc: Proc, count: int) -> float:
    """CPU µs per pipelined ``ping`` of ``proc``."""
    data = b"".join(b'{"jsonrpc":"2.0","id":%d,"method":"ping"}\n' % n for n in range(count))
    before = cpu_ns(proc.proc.pid)
    pipelined(proc, data, count)
    return (cpu_ns(proc.proc.pid) - before) / 1000 / count


CHUNKS = (0, 8)  # one completeBatch per pop, pipelined; lockstep completeBatch calls of 8


def one_run(mode: str, base: str, config: str, count: int) -> dict[str, float]:
    args = ["--memory"] if mode == "memory" else ["--data-dir", os.path.join(base, "data")]
    proc = sidecar(*args, "--config", config)
    result: dict[str, float] = {}
    try:
        for chunk in CHUNKS:
            ids = [str(uuid.uuid4()) for _ in range(count)]
            result[f"push{chunk}"] = push_all(proc, ids)
            result[f"cycle{chunk}"], result[f"rate{chunk}"] = cycle(proc, count, chunk)
        result["ping"] = ping_cpu(proc, count)
    finally:
        proc.close()
        shutil.rmtree(os.path.join(base, "data"), ignore_errors=True)
    echo = echo_floor()
    try:
        result["echo"] = ping_cpu(echo, count)
    finally:
        echo.close()
    return result


def cycle_section(items: int, runs: int, modes: tuple[str, ...] = ("memory", "disk")) -> list[str]:
    """The table, as markdown lines (``bench/bench.py --only cycle`` prints it too)."""
    base = tempfile.mkdtemp(prefix="sq-cycle-bench-", dir=os.environ.get("SYNC_QUEUE_BENCH_DIR"))
    config = os.path.join(base, "config.json")
    Path(config).write_bytes(orjson.dumps({"max_capacity": 10_000_000}))
    lines = [
        "### The outbox's dispatch cycle: the sidecar's CPU per item (popBatch + completeBatch)",
        "",
        f"Sidecar: `{shown_argv()}`; {items:,} items per cycle, median of {runs} runs.",
        "",
        "| mode | completeBatch | cycle CPU µs/item | cycle items/s | push CPU µs/item "
        "| ping CPU µs/req | echo floor CPU µs/req | cycle / echo |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    try:
        for mode in modes:
            results = [one_run(mode, base, config, items) for _ in range(runs)]
            m = {k: statistics.median(r[k] for r in results) for k in results[0]}
            for chunk in CHUNKS:
                shape = f"lockstep ×{chunk}" if chunk else f"one per pop ({POP_MAX})"
                cpu = m[f"cycle{chunk}"]
                lines.append(
                    f"| {mode} | {shape} | {cpu:.1f} | {m[f'rate{chunk}']:,.0f} "
                    f"| {m[f'push{chunk}']:.1f} | {m['ping']:.1f} | {m['echo']:.1f} "
                    f"| {cpu / m['echo']:.2f}× |"
                )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=("memory", "disk"))
    args = parser.parse_args()
    modes = (args.only,) if args.only else ("memory", "disk")
    for text in cycle_section(args.items, args.runs, modes):
        print(text)


if __name__ == "__main__":
    main()
