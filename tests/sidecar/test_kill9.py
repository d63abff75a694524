"""kill -9 during pipelined work over the protocol (data dir, default "always" durability):
whatever was acknowledged survives the restart, and nothing that was never sent appears.

Each round starts a sidecar on the same directory, checks the previous rounds, streams
requests without waiting (in chunks of random size, so group commits vary), reads replies as
they come, and SIGKILLs the sidecar after a random number of replies, while part of the
stream is still held back (:func:`kill_mid_stream`): every kill lands mid-stream.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from .conftest import LONG, Spawn
from .harness import TIMEOUT, SidecarProcess, line, list_all, request, write_config

pytestmark = pytest.mark.process  # about the process: see conftest.py

ROUNDS = 60 if LONG else 10
SEED = int(os.environ.get("SYNC_QUEUE_TEST_SEED", "4"))


def stream(
    sidecar: SidecarProcess,
    lines: list[bytes],
    rng: random.Random,
    release: threading.Event,
    hold_at: int,
) -> threading.Thread:
    """Write ``lines`` in chunks of random size from a thread, until done or the pipe breaks.

    Only ``lines[:hold_at]`` go out until ``release`` is set; the rest is sent after it.
    """
    chunks: list[tuple[bytes, float, bool]] = []  # (data, pause after it, wait for release)
    for part, last in ((lines[:hold_at], True), (lines[hold_at:], False)):
        start = 0
        while start < len(part):
            size = rng.choice([1, 2, 7, 50, 300, 1000])
            pause = rng.choice([0.0, 0.002, 0.005, 0.01])  # gaps vary the group commits
            chunks.append((b"".join(part[start : start + size]), pause, False))
            start += size
        if last:
            chunks[-1] = (chunks[-1][0], 0.0, True)

    def write() -> None:
        try:
            for chunk, pause, hold in chunks:
                sidecar.send_raw(chunk)
                if hold:
                    release.wait(60)
                elif pause:
                    time.sleep(pause)
        except (BrokenPipeError, ValueError, OSError):
            pass  # killed

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    return writer


def kill_mid_stream(sidecar: SidecarProcess, lines: list[bytes], rng: random.Random) -> None:
    """Stream ``lines`` and SIGKILL the sidecar in the middle of the stream, by construction.

    The writer sends a random first part (``hold_at`` lines, at least one) and holds the rest
    back until the kill. The kill comes once a random number of replies, between 1 and
    ``hold_at``, has arrived: always reachable, since all those lines were sent, and it
    lands while the sidecar may still be applying and committing the rest of that part.
    The held-back lines are sent after the kill, into a broken pipe.
    """
    hold_at = rng.randrange(1, len(lines))
    release = threading.Event()
    target = len(sidecar.order) + 1 + rng.randrange(hold_at)
    writer = stream(sidecar, lines, rng, release, hold_at)
    try:
        sidecar._wait(lambda: len(sidecar.order) >= target, TIMEOUT, f"reply number {target}")
        assert sidecar.kill9() == -signal.SIGKILL
    finally:
        release.set()
    writer.join(10)
    assert not writer.is_alive()


def acknowledged(sidecar: SidecarProcess, request_ids: Iterable[str]) -> set[str]:
    """The ids whose reply was a success (read before the kill closed stdout)."""
    with sidecar._cond:
        return {
            rid
            for rid in request_ids
            if any("result" in r for r in sidecar.responses.get(("str", rid), []))
        }


def get_many(sidecar: SidecarProcess, ids: list[str]) -> dict[str, dict[str, Any]]:
    """``get`` for many ids, in JSON-RPC batches; id -> item (missing ids are left out)."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 5000):
        part = ids[start : start + 5000]
        replies = sidecar.batch([request("get", n, {"id": i}) for n, i in enumerate(part)])
        for reply in replies:
            if "result" in reply:
                found[reply["result"]["id"]] = reply["result"]
            else:
                assert reply["error"]["data"]["kind"] == "ItemNotFound", reply
    return found


def test_kill9_during_pipelined_pushes(spawn: Spawn, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    data = tmp_path / "data"
    config = write_config(tmp_path / "c.json", max_capacity=10_000_000)
    sent: set[str] = set()
    acked: set[str] = set()
    killed_mid_stream = 0
    for round_no in range(ROUNDS + 1):
        sidecar = spawn("--data-dir", data, "--config", config)
        if round_no:
            ready = sidecar.wait_ready()
            last_acked = {i for i in acked if i.startswith(f"r{round_no - 1}-")}
            present = get_many(sidecar, sorted(last_acked))
            lost = last_acked - set(present)
            assert not lost, f"round {round_no - 1}: {len(lost)} acknowledged pushes lost"
            pending = ready["recovered"]["pending"]
            assert len(acked) <= pending <= len(sent), (len(acked), pending, len(sent))
        if round_no == ROUNDS:
            ids = {item["id"] for item in list_all(sidecar)}
            assert acked <= ids, f"{len(acked - ids)} acknowledged pushes lost"
            assert ids <= sent, f"{len(ids - sent)} items appeared that were never pushed"
            break
        if round_no % 2:
            sidecar.result("flush")  # recover from a snapshot + journal, too (and faster)
        count = rng.choice([300, 1500, 4000])
        ids_now = [f"r{round_no}-{n}" for n in range(count)]
        lines = [
            line(request("push", i, {"id": i, "payload": {"n": n}})) for n, i in enumerate(ids_now)
        ]
        sent.update(ids_now)
        kill_mid_stream(sidecar, lines, rng)
        got = acknowledged(sidecar, ids_now)
        killed_mid_stream += len(got) < count
        acked |= got
    assert killed_mid_stream == ROUNDS, "every kill must land mid-stream"


def test_kill9_during_pipelined_completes(spawn: Spawn, tmp_path: Path) -> None:
    rng = random.Random(SEED + 1)
    data = tmp_path / "data"
    config = write_config(tmp_path / "c.json", max_capacity=10_000_000)
    sent: set[str] = set()  # items a complete was sent for
    acked: set[str] = set()  # items whose complete was acknowledged
    killed_mid_stream = 0
    for round_no in range(ROUNDS + 1):
        sidecar = spawn("--data-dir", data, "--config", config)
        if round_no:
            completed = {item["id"] for item in list_all(sidecar, status="completed")}
            undone = acked - completed
            assert not undone, f"{len(undone)} acknowledged completions undone"
            assert completed <= sent, f"{len(completed - sent)} completed that were never sent"
        if round_no == ROUNDS:
            break
        if round_no % 2:
            sidecar.result("flush")
        sidecar.result(
            "pushBatch",
            items=[
                {"id": f"c{round_no}-{n}", "payload": n, "maxRetries": 1000} for n in range(2000)
            ],
        )
        leased = sidecar.result("popBatch", max=1000) + sidecar.result("popBatch", max=1000)
        assert len(leased) == 2000
        order = rng.sample(leased, len(leased))
        lines = [
            line(request("complete", item["id"], {"id": item["id"], "leaseId": item["leaseId"]}))
            for item in order
        ]
        sent.update(item["id"] for item in order)
        kill_mid_stream(sidecar, lines, rng)
        got = acknowledged(sidecar, [item["id"] for item in order])
        killed_mid_stream += len(got) < len(order)
        acked |= got
    assert acked, "some completions must have been acknowledged"
    assert killed_mid_stream == ROUNDS, "every kill must land mid-stream"
