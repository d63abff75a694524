"""Notifications (docs/protocol.md §2, §6) and the settled edge cases of §7 that involve time:
long polls, delays, TTLs, leases, the 100 ms window, shutdown answering waiting pops.

In process the sidecar's clock skips to its next deadline instead of sleeping (inprocess.py),
so ``advance`` and ``monotonic`` are the sidecar's time; against a process they are real."""

from __future__ import annotations

import itertools
import os
import signal
from pathlib import Path

import pytest

import sync_queue

from .conftest import Spawn
from .harness import ENV_EXECUTABLE, Sidecar, SidecarProcess, notification, request, write_config

EMPTY_COUNTS = {
    "pending": 0,
    "processing": 0,
    "completed": 0,
    "failed": 0,
    "cancelled": 0,
    "held": 0,
}


# -- ready ---------------------------------------------------------------------------------


@pytest.mark.blackbox
def test_ready_memory(spawn: Spawn) -> None:
    sidecar = spawn("--memory", ready=False)
    ready = sidecar.wait_ready()
    assert type(ready["version"]) is str and ready["version"]
    if not os.environ.get(ENV_EXECUTABLE):  # from this checkout: its own version
        assert ready["version"] == sync_queue.__version__
    assert ready["protocol"] == 1
    assert ready["dataDir"] is None
    assert ready["recovered"] == EMPTY_COUNTS
    assert "durability" in ready


@pytest.mark.process
def test_ready_data_dir_and_recovered_counts(spawn: Spawn, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = spawn("--data-dir", data, ready=False)
    ready = first.wait_ready()
    assert ready["protocol"] == 1 and ready["dataDir"] == str(data)
    assert ready["durability"] == "always"
    assert ready["recovered"] == EMPTY_COUNTS
    first.result(
        "pushBatch",
        items=[{"payload": n, "id": str(n), "maxRetries": 0 if n == 1 else 3} for n in range(6)],
    )
    for item_id in ("0", "1", "2", "3"):
        assert first.result("pop")["id"] == item_id
    first.result("complete", id="0")
    first.result("fail", id="1")
    first.result("cancel", id="2")
    # "3" is processing: recovery puts in-flight items back to pending before counting
    # (as an expired lease: a failed attempt, and it has a retry left).
    first.kill9()
    second = spawn("--data-dir", data, ready=False)
    assert second.wait_ready()["recovered"] == {
        "pending": 3,
        "processing": 0,
        "completed": 1,
        "failed": 1,
        "cancelled": 1,
        "held": 0,
    }
    assert second.result("get", id="3")["status"] == "pending"


@pytest.mark.blackbox
def test_ready_with_periodic_durability(spawn: Spawn, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.json", durability="periodic")
    sidecar = spawn("--data-dir", tmp_path / "d", "--config", config, ready=False)
    assert sidecar.wait_ready()["durability"] == "periodic"


@pytest.mark.blackbox
def test_requests_sent_before_ready_are_answered_after_it(spawn: Spawn) -> None:
    sidecar = spawn("--memory", ready=False)
    sidecar.send(request("ping", "early"))  # most likely before recovery finished
    assert sidecar.reply("early")["result"] == {"pong": True}
    assert sidecar.notes("ready"), "ready came first"
    assert sidecar.lines[0][1].startswith(b'{"jsonrpc":"2.0","method":"ready"')


# -- itemsAvailable, itemFailed ----------------------------------------------------------------


@pytest.mark.blackbox
def test_items_available_after_push_to_empty_queue(mem: Sidecar) -> None:
    assert mem.notes("itemsAvailable") == []
    mem.result("push", payload=1)
    assert mem.wait_notification("itemsAvailable", timeout=2) == {"pending": 1}
    mem.result("push", payload=2)  # not from none to some: no new notification
    mem.result("pop")
    mem.result("pop")
    mem.advance(0.15)
    mem.sync()
    assert len(mem.notes("itemsAvailable")) == 1


def test_items_available_after_resume(mem: Sidecar) -> None:
    mem.result("pause")
    mem.result("push", payload=1)
    mem.advance(0.15)
    mem.sync()
    assert mem.notes("itemsAvailable") == [], "nothing can be handed out while paused"
    mem.result("resume")
    assert mem.wait_notification("itemsAvailable", timeout=2) == {"pending": 1}


@pytest.mark.blackbox
def test_items_available_when_a_delay_runs_out(mem: Sidecar) -> None:
    mem.result("push", id="later", payload=1, delayMs=300)
    start = mem.monotonic()
    assert mem.result("pop") is None
    assert mem.notes("itemsAvailable") == []
    # No request is sent: the sidecar's own timer notices the delay ran out.
    assert mem.wait_notification("itemsAvailable", timeout=5) == {"pending": 1}
    assert mem.monotonic() - start >= 0.25
    assert mem.result("pop")["id"] == "later"


def test_items_available_when_a_lease_expires(mem: Sidecar) -> None:
    mem.result("push", id="a", payload=1, maxRetries=5)
    mem.wait_notification("itemsAvailable")
    mem.result("pop", leaseMs=50)
    # Back to pending after the lease expired, then ready after its backoff (1 s base).
    mem.wait_notification("itemsAvailable", 2, timeout=6)
    assert mem.result("get", id="a")["lastError"] == "lease expired"


def test_items_available_at_most_once_per_100ms(mem: Sidecar) -> None:
    # Flip between "none ready" and "some ready" as fast as round trips go.
    start = mem.monotonic()
    flips = 0
    while mem.monotonic() - start < 0.6:
        mem.result("push", payload=flips)
        item = mem.result("pop")
        # Completed, so a fast loop (in process: thousands of flips) never fills the queue.
        mem.result("complete", id=item["id"], leaseId=item["leaseId"])
        flips += 1
    # Leave one ready: a notification held back by the window is sent when it ends.
    mem.result("push", id="last", payload=None)
    held_from = mem.monotonic()
    mem.sync()
    mem.advance(0.25)
    mem.sync()
    times = [t for t, m in mem.notifications if m["method"] == "itemsAvailable"]
    assert flips > 10, "the check needs many flips per window"
    assert len(times) <= (mem.monotonic() - start) / 0.1 + 2, (len(times), flips)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= 0.05 for gap in gaps), gaps  # client-side arrival times: some jitter
    assert times[-1] >= held_from - 0.1, "the held-back notification came at the window's end"
    assert mem.notes("itemsAvailable")[-1] == {"pending": 1}


@pytest.mark.blackbox
def test_item_failed_notification(mem: Sidecar) -> None:
    mem.result("push", id="a", payload=1, maxRetries=0)
    mem.result("pop")
    assert mem.result("fail", id="a", error="bad payload") == {"retry": False}
    assert mem.wait_notification("itemFailed") == {
        "id": "a",
        "attempts": 1,
        "error": "bad payload",
    }


def test_item_failed_when_the_last_lease_expires(mem: Sidecar) -> None:
    mem.result("push", id="a", payload=1, maxRetries=0)
    mem.result("pop", leaseMs=50)
    # No request needed: the lease runs out on the sidecar's own timer.
    note = mem.wait_notification("itemFailed", timeout=3)
    assert note["id"] == "a" and note["attempts"] == 1 and note["error"] == "lease expired"
    assert mem.result("get", id="a")["status"] == "failed"


def test_ttl_expiry(mem: Sidecar) -> None:
    mem.result("push", id="short", payload=1, ttlMs=50, delayMs=100)
    mem.result("push", id="long", payload=2, ttlMs=60_000)
    mem.advance(0.15)
    assert mem.result("pop")["id"] == "long"
    assert mem.result("pop") is None
    item = mem.result("get", id="short")
    assert item["status"] == "cancelled" and item["lastError"] == "expired"


# -- long polls ----------------------------------------------------------------------------


@pytest.mark.blackbox
def test_long_poll_answered_when_an_item_is_pushed(mem: Sidecar) -> None:
    mem.send(request("pop", "wait", {"timeoutMs": 20_000}))
    # Other requests flow past the waiting pop.
    mem.send(request("ping", "p1"))
    assert mem.reply("p1")["result"] == {"pong": True}
    assert mem.result("stats")["byStatus"]["processing"] == 0
    assert not mem.has_reply("wait")
    start = mem.monotonic()
    mem.send(request("push", "push", {"id": "x", "payload": 42}))
    item = mem.reply("wait", timeout=5)["result"]
    assert mem.monotonic() - start < 1.0, "answered the moment an item was pushed"
    assert item["id"] == "x" and item["status"] == "processing" and item["payload"] == 42
    assert mem.reply("push")["result"] == {"id": "x"}
    assert mem.order.index("p1") < mem.order.index("wait")


@pytest.mark.blackbox
def test_long_poll_times_out_with_null(mem: Sidecar) -> None:
    start = mem.monotonic()
    mem.send(request("pop", "a", {"timeoutMs": 300}), request("popBatch", "b", {"timeoutMs": 300}))
    assert mem.reply("a", timeout=5)["result"] is None
    assert mem.reply("b", timeout=5)["result"] == []
    elapsed = mem.monotonic() - start
    assert 0.28 <= elapsed < 3, elapsed


def test_waiting_pops_are_served_in_the_order_read(mem: Sidecar) -> None:
    mem.send(
        request("pop", "w1", {"timeoutMs": 20_000}),
        request("popBatch", "w2", {"timeoutMs": 20_000, "max": 2}),
        request("pop", "w3", {"timeoutMs": 20_000}),
    )
    mem.sync()
    mem.result("push", id="i1", payload=1)
    assert mem.reply("w1")["result"]["id"] == "i1"
    mem.result("pushBatch", items=[{"payload": 2, "id": "i2"}, {"payload": 3, "id": "i3"}])
    assert [i["id"] for i in mem.reply("w2")["result"]] == ["i2", "i3"]
    # A new pop read after w3 must not jump the line.
    mem.send(request("pop", "late", {"timeoutMs": 20_000}))
    mem.sync()
    mem.result("push", id="i4", payload=4)
    assert mem.reply("w3")["result"]["id"] == "i4"
    assert not mem.has_reply("late")
    mem.result("push", id="i5", payload=5)
    assert mem.reply("late")["result"]["id"] == "i5"


@pytest.mark.blackbox
def test_waiting_pop_gets_a_delayed_item_when_ready(mem: Sidecar) -> None:
    mem.result("push", id="d", payload=1, delayMs=200)
    start = mem.monotonic()
    item = mem.reply(mem.request("pop", {"timeoutMs": 10_000}), timeout=5)["result"]
    assert item["id"] == "d"
    assert 0.15 <= mem.monotonic() - start < 2


def test_timeouts_are_ignored_inside_a_batch(mem: Sidecar) -> None:
    start = mem.monotonic()
    replies = mem.batch(
        [
            request("pop", 1, {"timeoutMs": 10_000}),
            request("popBatch", 2, {"timeoutMs": 10_000}),
            request("ping", 3),
        ],
        timeout=5,
    )
    assert mem.monotonic() - start < 2
    assert {r["id"]: r["result"] for r in replies} == {1: None, 2: [], 3: {"pong": True}}


def test_pop_as_a_notification_hands_out_nothing(mem: Sidecar) -> None:
    mem.result("pushBatch", items=[{"payload": 1, "id": "a"}, {"payload": 2, "id": "b"}])
    lines_before = len(mem.lines)
    mem.send(
        notification("pop", {}),
        notification("popBatch", {"max": 10}),
        notification("pop", {"timeoutMs": 1000}),
        [notification("pop"), notification("popBatch")],
    )
    mem.sync()
    assert len(mem.lines) == lines_before + 1, "only the ping's reply"
    for item_id in ("a", "b"):
        item = mem.result("get", id=item_id)
        assert item["status"] == "pending" and item["attempts"] == 0
    assert mem.result("stats")["totalDequeued"] == 0


@pytest.mark.blackbox
def test_shutdown_answers_waiting_polls_at_once(mem: Sidecar) -> None:
    mem.send(
        request("pop", "w1", {"timeoutMs": 60_000}),
        request("popBatch", "w2", {"timeoutMs": 60_000}),
    )
    mem.sync()
    start = mem.monotonic()
    mem.send(request("shutdown", "bye"))
    assert mem.reply("w1", timeout=5)["result"] is None
    assert mem.reply("w2", timeout=5)["result"] == []
    assert mem.reply("bye")["result"] == {}
    assert mem.wait_exit() == 0
    assert mem.monotonic() - start < 3


@pytest.mark.parametrize("how", ["eof", "sigterm"])
@pytest.mark.process
def test_stopping_answers_waiting_polls(mem: SidecarProcess, how: str) -> None:
    mem.send(request("pop", "w", {"timeoutMs": 60_000}))
    mem.sync()
    if how == "eof":
        mem.close_stdin()
    else:
        mem.signal(signal.SIGTERM)
    assert mem.reply("w", timeout=5)["result"] is None
    assert mem.wait_exit() == 0


# -- deduplication off, capacity after recovery ------------------------------------------------


def test_deduplication_off_keeps_live_ids_unique(spawn: Spawn, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.json", enable_deduplication=False)
    sidecar = spawn("--memory", "--config", config)
    sidecar.result("push", id="a", payload=1)
    assert sidecar.error("push", id="a", payload=2)["data"]["kind"] == "DuplicateItem"
    sidecar.result("pop")
    assert sidecar.error("push", id="a", payload=2)["data"]["kind"] == "DuplicateItem"
    sidecar.result("complete", id="a")
    assert sidecar.result("push", id="a", payload=3) == {"id": "a"}
    item = sidecar.result("get", id="a")
    assert item["status"] == "pending" and item["payload"] == 3


def test_capacity_after_recovery(spawn: Spawn, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = spawn("--data-dir", data)
    first.result("pushBatch", items=[{"payload": n} for n in range(5)])
    assert first.shutdown() == 0
    config = write_config(tmp_path / "c.json", max_capacity=3)
    second = spawn("--data-dir", data, "--config", config)
    assert second.result("stats")["currentSize"] == 5, "recovered items are all kept"
    assert second.error("push", payload=9)["code"] == -32001
    for _ in range(3):
        item = second.result("pop")
        second.result("complete", id=item["id"])
    assert second.result("push", payload=9)["id"]  # 2 live: below capacity again
    assert second.error("push", payload=10)["code"] == -32001
