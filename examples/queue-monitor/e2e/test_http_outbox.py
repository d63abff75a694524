"""End to end: the queue monitor's HTTP outbox mode against a real HTTP server.

The plugin's dispatcher (not the window) sends the requests the window enqueues with
``enqueueRequest``; the server (``outbox_server.py``, on 127.0.0.1 in this process) keeps
the idempotency contract and records what it applied. In the order a person would meet it:
requests over three partition keys are applied; the server goes away (its port closed)
and the window shows the destination offline, with the requests enqueued meanwhile waiting
uncharged; the server comes back on the same port and the window shows it online and
everything drained; the app switched offline sends nothing until switched back; a request
the server refuses with 400 is dead at once, shown with its status, and does not hold up
its key; requests held for approval wait, without holding up other keys, until the
window releases one (it is sent) and rejects the other (it never is); a 401 holds the
destination until the window sets headers. On the server side, every item is applied
exactly once, each key's items in the order enqueued.

Run it with ``.venv/bin/pytest examples/queue-monitor/e2e`` (see test_queue_monitor.py).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from app_harness import OUT, Run, session, webdriver_server, x_server
from monitor_page import Monitor
from outbox_server import OutboxServer

KEYS = ["a", "b", "c"]
# How long the outage lasts: long enough for the dispatcher to probe the closed port a few
# times (the example's outbox.probeMaxMs is 1 s). A scenario's length, not an assertion.
OUTAGE_S = 3.0


@pytest.fixture
def server() -> Iterator[OutboxServer]:
    server = OutboxServer()
    yield server
    if server.running:
        server.stop()


def test_http_outbox_end_to_end(app: Path, run: Run, server: OutboxServer) -> None:
    enqueued: list[str] = []  # every /items request, in the order enqueued
    with x_server() as display, webdriver_server({**run.env, "DISPLAY": display}) as url:
        ui = Monitor(url, app)
        with session(ui, "http-outbox"):
            ui.wait_ready()
            ui.outbox_mode()
            enqueued += requests_are_applied(ui, server)
            enqueued += outage_then_recovery(ui, server)
            enqueued += app_offline(ui, server)
            enqueued += rejected_is_dead(ui, server)
            enqueued += approval(ui, server)
            auth_hold(ui, server)
            ui.wait(lambda: ui.number("count-pending") == 0, "nothing left pending")
            ui.screenshot(OUT / "http-outbox.png")
    assert_applied_once_in_key_order(server, enqueued)


def items_url(server: OutboxServer, path: str = "/items") -> str:
    return f"{server.origin}{path}"


def wait_applied(ui: Monitor, server: OutboxServer, ids: list[str], what: str) -> None:
    ui.wait(lambda: set(ids) <= {e.key for e in server.ledger.applied()}, what)


def requests_are_applied(ui: Monitor, server: OutboxServer) -> list[str]:
    ids = ui.enqueue_requests(items_url(server), count=9, keys=",".join(KEYS))
    wait_applied(ui, server, ids, "9 requests applied by the server")
    ui.wait_destination(server.origin, "online")
    ui.wait(lambda: ui.number("progress-succeeded") >= 9, "9 succeeded in the progress counters")
    return ids


def outage_then_recovery(ui: Monitor, server: OutboxServer) -> list[str]:
    server.stop()
    # One retry each: an outage that charged attempts would send these to the dead letters.
    ids = ui.enqueue_requests(items_url(server), count=6, keys=",".join(KEYS), retries=1)
    ui.wait_destination(server.origin, "offline")
    ui.wait(lambda: ui.logged("destination-offline", server.origin), "destination-offline")
    time.sleep(OUTAGE_S)
    assert not set(ids) & {e.key for e in server.ledger.applied()}
    server.start()  # the same port
    came_back = time.monotonic()
    ui.wait_destination(server.origin, "online")
    wait_applied(ui, server, ids, "the 6 requests applied once the server is back")
    drained_s = time.monotonic() - came_back
    print(f"outage: drained {len(ids)} requests {drained_s:.1f} s after the server came back")
    assert ui.logged("destination-online", server.origin)
    assert ui.dead_requests() == {}, "the outage cost attempts"
    return ids


def app_offline(ui: Monitor, server: OutboxServer) -> list[str]:
    ui.set_app_online(False)
    ids = ui.enqueue_requests(items_url(server), count=3, keys=",".join(KEYS))
    ui.wait_destination(server.origin, "appOffline")
    ui.wait(lambda: ui.number("count-pending") >= 3, "3 requests pending while offline")
    assert not set(ids) & {e.key for e in server.ledger.applied()}, "sent while offline"
    ui.set_app_online(True)
    ui.wait_destination(server.origin, "online")
    wait_applied(ui, server, ids, "the 3 requests applied once the app is online")
    return ids


def rejected_is_dead(ui: Monitor, server: OutboxServer) -> list[str]:
    (rejected,) = ui.enqueue_requests(items_url(server, "/reject"), count=1, keys="z")
    (behind,) = ui.enqueue_requests(items_url(server), count=1, keys="z")
    ui.wait(lambda: ui.dead_requests().get(rejected) == "400", f"{rejected} dead with 400")
    assert server.ledger.requests_to("/reject") == 1, "a 400 is not retried"
    # A dead request finishes its turn: the next one of its key goes.
    wait_applied(ui, server, [behind], "the request behind the dead one applied")
    assert ui.dead_requests() == {rejected: "400"}
    return [behind]


def approval(ui: Monitor, server: OutboxServer) -> list[str]:
    released, rejected = ui.enqueue_requests(items_url(server), count=2, keys="h", hold=True)
    (other,) = ui.enqueue_requests(items_url(server), count=1, keys="g")
    wait_applied(ui, server, [other], "another key's request sent while two await approval")
    ui.wait(lambda: set(ui.held_requests()) == {released, rejected}, "both shown awaiting approval")
    assert not {released, rejected} & {e.key for e in server.ledger.applied()}, "sent unapproved"
    ui.approve(rejected, release=False)
    ui.wait(lambda: ui.held_requests() == [released], f"{rejected} gone once rejected")
    ui.approve(released, release=True)
    wait_applied(ui, server, [released], "the released request sent")
    ui.wait(lambda: ui.held_requests() == [], "nothing left awaiting approval")
    assert rejected not in {e.key for e in server.ledger.applied()}, "a rejected request sent"
    return [other, released]


def auth_hold(ui: Monitor, server: OutboxServer) -> None:
    ids = ui.enqueue_requests(items_url(server, "/auth"), count=2, keys="u")
    ui.wait_destination(server.origin, "authRequired")
    ui.wait(lambda: ui.logged("auth-required", server.origin), "auth-required")
    assert not set(ids) & {e.key for e in server.ledger.applied("/auth")}
    ui.set_token(server.ledger.token)
    ui.wait_destination(server.origin, "online")
    ui.wait(
        lambda: set(ids) <= {e.key for e in server.ledger.applied("/auth")},
        "the held requests applied with the new headers",
    )
    applied = [e.key for e in server.ledger.applied("/auth")]
    assert applied == ids, "once each, in their key's order"


def assert_applied_once_in_key_order(server: OutboxServer, enqueued: list[str]) -> None:
    effects = server.ledger.applied()
    counts = Counter(e.key for e in effects)
    assert {k for k, n in counts.items() if n > 1} == set(), "applied more than once"
    assert set(counts) == set(enqueued), "applied: exactly the items enqueued"
    order = {item: n for n, item in enumerate(enqueued)}
    for key in {e.body.get("key") for e in effects}:
        mine = [e.key for e in effects if e.body.get("key") == key]
        assert mine == sorted(mine, key=order.__getitem__), f"key {key} out of order: {mine}"
