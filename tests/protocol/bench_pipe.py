"""Rough numbers for the stdio server through real pipes (not a test; run by hand).

    .venv/bin/python -m tests.protocol.bench_pipe [--requests 200000] [--round-trips 5000]

Measures, with the fake method table: pipelined ``ping`` throughput (a writer thread
streams all requests while the main thread counts reply lines), and one-at-a-time ``ping``
round-trip latency against the floor of a minimal Python NDJSON echo process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The floor: read a line, parse it, answer it, flush. Nothing else.
ECHO_FLOOR = r"""
import sys, orjson
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    req = orjson.loads(line)
    out.write(orjson.dumps({"jsonrpc": "2.0", "id": req["id"], "result": {"pong": True}}) + b"\n")
    out.flush()
"""


def spawn(argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
    )


def sidecar() -> subprocess.Popen[bytes]:
    return spawn([sys.executable, "-m", "tests.protocol.fake_sidecar"])


def pipelined(count: int) -> float:
    proc = sidecar()
    assert proc.stdin is not None and proc.stdout is not None
    payload = b"".join(b'{"jsonrpc":"2.0","id":%d,"method":"ping"}\n' % i for i in range(count))

    def write() -> None:
        assert proc.stdin is not None
        proc.stdin.write(payload)

    start = time.perf_counter()
    writer = threading.Thread(target=write)
    writer.start()
    seen = 0
    while seen < count:
        chunk = proc.stdout.read(1 << 20)
        if not chunk:
            raise RuntimeError("sidecar closed stdout early")
        seen += chunk.count(b"\n")
    elapsed = time.perf_counter() - start
    writer.join()
    proc.stdin.close()
    proc.wait()
    return count / elapsed


def round_trips(proc: subprocess.Popen[bytes], count: int) -> list[float]:
    assert proc.stdin is not None and proc.stdout is not None
    times = []
    for i in range(count):
        line = b'{"jsonrpc":"2.0","id":%d,"method":"ping"}\n' % i
        start = time.perf_counter()
        proc.stdin.write(line)
        got = proc.stdout.readline()
        times.append(time.perf_counter() - start)
        assert got.endswith(b"\n"), got
    proc.stdin.close()
    proc.wait()
    return times


def describe(times: list[float]) -> str:
    ordered = sorted(times)
    p50 = statistics.median(ordered) * 1e6
    p99 = ordered[int(len(ordered) * 0.99)] * 1e6
    return f"p50 {p50:.0f} us, p99 {p99:.0f} us"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--round-trips", type=int, default=5_000)
    args = parser.parse_args()
    rate = pipelined(args.requests)
    print(f"pipelined ping: {rate:,.0f} requests/s ({args.requests} requests)")
    floor = round_trips(spawn([sys.executable, "-c", ECHO_FLOOR]), args.round_trips)
    ours = round_trips(sidecar(), args.round_trips)
    print(f"echo floor round trip: {describe(floor)}")
    print(f"sidecar ping round trip: {describe(ours)}")
    ratio = statistics.median(ours) / statistics.median(floor)
    print(f"p50 ratio sidecar/floor: {ratio:.2f}")


if __name__ == "__main__":
    main()
