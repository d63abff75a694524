"""End to end: one sidecar session with the wall clock 2 h ahead, then one with the right
clock (``$SYNC_QUEUE_TEST_WALL_OFFSET_MS`` moves the sidecar's wall clock, not the machine's).
The second session must hand out what is due within its own short times, not 2 h later."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from sync_queue.clock import WALL_OFFSET_ENV

from .conftest import Spawn
from .harness import Sidecar, write_config

TWO_HOURS = 2 * 3600 * 1000
PATIENCE_S = 15.0  # generous for a loaded machine; the stalled queue waited 2 h


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def until(sidecar: Sidecar, what: str, check: Any) -> Any:
    deadline = sidecar.monotonic() + PATIENCE_S
    while not (result := check()):
        assert sidecar.monotonic() < deadline, f"{what}: not within {PATIENCE_S} s"
        sidecar.advance(0.02)
    return result


@pytest.mark.blackbox
def test_a_session_two_hours_ahead_does_not_stall_the_next_one(
    spawn: Spawn, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    config = write_config(tmp_path / "c.json", base_retry_delay=0.05, max_retry_delay=0.05)
    ahead = spawn("--data-dir", data, "--config", config, env={WALL_OFFSET_ENV: str(TWO_HOURS)})
    ahead.result("push", id="early", payload=1)
    ahead.result("push", id="delayed", payload=2, delayMs=200)
    assert ahead.result("get", id="early")["createdAt"] >= now_ms() + TWO_HOURS - 60_000
    assert ahead.shutdown() == 0

    right = spawn("--data-dir", data, "--config", config)
    start = right.wall_ms()
    for item_id in ("early", "delayed"):
        item = right.result("get", id=item_id)
        assert item["createdAt"] <= right.wall_ms() + 1000, item  # not in the future any more
    # The 200 ms delay is kept (at most), not stretched by two hours.
    popped: set[str] = set()

    def pop_delayed() -> bool:
        item = right.result("pop", {"leaseMs": 60_000})
        if item is not None:
            popped.add(item["id"])
        return "delayed" in popped

    until(right, "the delayMs 200 item", pop_delayed)
    # A 500 ms lease runs out after 500 ms; the retry (50 ms backoff) is handed out again.
    right.result("push", id="leased", payload=3)
    item = until(right, "a pop", lambda: right.result("pop", {"leaseMs": 500}))
    leased_id = item["id"]
    assert item["leaseExpiresAt"] <= right.wall_ms() + 500
    until(
        right, "the 500 ms lease", lambda: right.result("get", id=leased_id)["status"] == "pending"
    )
    again = until(right, "the retry", lambda: right.result("pop", {"leaseMs": 60_000}))
    failed = right.result("fail", id=again["id"], leaseId=again["leaseId"], error="x")
    assert failed["retry"] is True
    until(right, "the retry after fail", lambda: right.result("pop", {"leaseMs": 60_000}))
    assert right.wall_ms() - start < PATIENCE_S * 4 * 1000
    assert right.shutdown() == 0
