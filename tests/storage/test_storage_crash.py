"""kill -9 at random moments while four threads commit in "always" mode (with background
compaction running): every acknowledged record survives, in order, nothing is invented."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

from storage_helpers import LONG

from sync_queue.storage import EncryptionService, Store

CHILD = os.path.join(os.path.dirname(__file__), "crash_child.py")


def recover(d: str, key: bytes | None) -> list[int]:
    s = Store.open(d, key=key)
    try:
        rec = s.take_recovery()
        items = [int(x) for x in json.loads(rec.snapshot)] if rec.snapshot else []
        items += [int(r) for r in rec.records()]
        return items
    finally:
        s.close()


def test_kill_9_loses_nothing_acknowledged(tmp_path):
    rounds = 100 if LONG else 30
    key = EncryptionService.generate_key()
    d = str(tmp_path / "q")
    acked: set[int] = set()
    starts: list[int] = []
    next_start = 0
    rnd = random.Random(1234)
    for _ in range(rounds):
        starts.append(next_start)
        p = subprocess.Popen(
            [sys.executable, CHILD, d, str(next_start), key.hex()],
            stdout=subprocess.PIPE,
        )
        assert p.stdout is not None
        assert p.stdout.readline() == b"READY\n"
        time.sleep(rnd.uniform(0.0, 0.25))
        os.kill(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        acked |= {int(line.split()[1]) for line in out.splitlines() if line.startswith(b"ACK ")}
        items = recover(d, key)
        assert not acked - set(items), (
            f"lost acknowledged records: {sorted(acked - set(items))[:10]}"
        )
        # Each child numbers its records in append order, and the journal keeps append
        # order, so what survives of each child is exactly a prefix start, start+1, ...:
        # no holes, no reordering, no duplicates, nothing that was never appended.
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else None
            mine = [x for x in items if x >= start and (end is None or x < end)]
            assert mine == list(range(start, start + len(mine))), f"round {i} is not a prefix"
        next_start = max([next_start, *items, *acked]) + 10_000
    assert len(acked) > 1000
