"""kill -9 at random moments under load: nothing acknowledged is lost or undone.

A child process (crash_child.py) pushes, pops, completes and fails from four threads in
"always" mode and reports each acknowledged call. The parent kills it with SIGKILL at a
random moment, reopens the data directory and checks: every acknowledged push is there,
every acknowledged completion is still completed, and nothing appears that was never tried.
The same directory is reused round after round, so recovery also recovers from recoveries
(and from compactions interrupted at random points: the child compacts every 50 ms).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from sync_queue import ItemStatus, QueueConfig, SyncQueue

ROUNDS = 200 if os.environ.get("SYNC_QUEUE_LONG_TESTS") == "1" else 30
CHILD = Path(__file__).with_name("crash_child.py")


def run_round(data_dir: Path, round_no: int, rng: random.Random) -> tuple[set[str], ...]:
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(data_dir), str(round_no)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    first = child.stdout.readline()
    assert first == b"READY\n", first + (child.stderr.read() if child.stderr else b"")
    time.sleep(rng.uniform(0.01, 0.25))
    child.send_signal(signal.SIGKILL)
    # Read through the same buffered reader as readline() above: communicate() would skip
    # whatever that reader had already buffered.
    out = child.stdout.read()
    err = child.stderr.read() if child.stderr else b""
    child.wait()
    assert child.returncode == -signal.SIGKILL, err.decode()
    tried, pushed, completed = set(), set(), set()
    for line in out.decode(errors="replace").split("\n")[:-1]:  # the last may be torn
        kind, _, item_id = line.partition(" ")
        {"T": tried, "P": pushed, "C": completed}[kind].add(item_id)
    return tried, pushed, completed


def test_kill9_loses_nothing_acknowledged(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("SYNC_QUEUE_TEST_SEED", "99")))
    tried_all: set[str] = set()
    pushed_all: set[str] = set()
    completed_all: set[str] = set()
    for round_no in range(ROUNDS):
        tried, pushed, completed = run_round(tmp_path, round_no, rng)
        tried_all |= tried
        pushed_all |= pushed
        completed_all |= completed
        q = SyncQueue(
            QueueConfig(persistence_path=tmp_path, max_capacity=1_000_000), maintenance_thread=False
        )
        try:
            items = q._engine.core.state.items
            missing = pushed_all - items.keys()
            assert not missing, f"round {round_no}: acknowledged pushes lost: {sorted(missing)[:5]}"
            undone = [i for i in completed_all if items[i].status is not ItemStatus.COMPLETED]
            assert not undone, f"round {round_no}: completions undone: {undone[:5]}"
            phantoms = items.keys() - tried_all
            assert not phantoms, f"round {round_no}: never pushed: {sorted(phantoms)[:5]}"
        finally:
            q.shutdown()
    assert len(pushed_all) > ROUNDS  # the child really worked
    assert completed_all
