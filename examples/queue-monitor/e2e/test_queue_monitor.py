"""End to end: the queue monitor example, built for release, in a real WebKitGTK window
under Xvfb, driven through tauri-driver and WebKitWebDriver (selenium is the client).

One scenario, in the order a person would meet it: items pushed from the window are
synced; a failing endpoint brings retries, the breaker opening and dead letters; a
requeued dead letter goes through once the endpoint is back; an endpoint that never
answers or is down fails an attempt with the reason; Quit leaves no sidecar
process and no ``_MEI*`` directory; the next start finds the pending items again; a
``kill -9`` of the sidecar is survived by the next action; and the last screenshot is
saved to ``e2e/out/queue-monitor.png``.

Run it (after ``scripts/install-e2e-tools``) with ``.venv/bin/pytest examples/queue-monitor/e2e``.
It builds the app first (``SYNC_QUEUE_MONITOR_APP=/path/to/queue-monitor`` uses one
already built). Nothing is skipped: a missing tool is a failure that says how to install it.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from app_harness import OUT, Run, session, sidecar_name, wait_until, webdriver_server, x_server
from monitor_page import Monitor

APP_NAME = "queue-monitor"


def test_queue_monitor_end_to_end(app: Path, run: Run) -> None:
    with x_server() as display, webdriver_server({**run.env, "DISPLAY": display}) as url:
        parked = first_start(Monitor(url, app), run)
        second_start(Monitor(url, app), run, parked)


def first_start(ui: Monitor, run: Run) -> list[str]:
    with session(ui, "first-start"):
        ui.wait_ready()
        items_are_synced(ui)
        failing_endpoint(ui)
        silent_and_gone_endpoint(ui)
        parked = park_items(ui)
        quit_leaves_nothing(ui, run)
        # The onefile launcher removed the directory it unpacked into.
        assert run.mei_dirs() == [], run.mei_dirs()
    return parked


def second_start(ui: Monitor, run: Run, parked: list[str]) -> None:
    with session(ui, "second-start"):
        ui.wait_ready()
        ui.wait(lambda: "3 pending" in ui.text("recovered"), "recovered: 3 pending")
        ui.wait(lambda: ui.row_ids("pending") == parked, f"{parked} still pending")
        assert ui.shown("paused"), "pause is durable too"
        ui.toggle_pause(False)
        ui.wait(
            lambda: all(ui.logged("synced", f"{i} synced") for i in parked),
            "the parked items synced after resume",
        )
        survives_kill_9(ui, run)
        burst = ui.push(count=20, priority="normal", payload='{"note": "burst"}')
        ui.wait(lambda: all(ui.logged("synced", f"{i} synced") for i in burst), "a burst synced")
        ui.wait(lambda: ui.number("count-pending") == 0, "the counts to catch up")
        ui.screenshot(OUT / "queue-monitor.png")
        quit_leaves_nothing(ui, run)
        # At most the directory of the launcher killed with -9: nothing was left to
        # remove it. Everything else was cleaned up.
        assert len(run.mei_dirs()) <= 1, run.mei_dirs()


def items_are_synced(ui: Monitor) -> None:
    ids = ui.push(count=5, priority="high")
    ui.wait(lambda: all(ui.logged("synced", f"{i} synced") for i in ids), "5 items synced")
    ui.wait(lambda: ui.number("count-completed") >= 5, "5 completed in the counts")
    ui.wait(lambda: ui.number("endpoint-received") >= 5, "the endpoint to have 5 items")


def failing_endpoint(ui: Monitor) -> None:
    ui.set_endpoint("fail")
    doomed = ui.push(count=2, retries=1, payload='{"note": "doomed"}')
    # Threshold 3 and cool-down 4 s (tauri.conf.json): the third failed attempt opens
    # the breaker; the last attempt waits for the half-open probe.
    ui.wait(lambda: ui.number("total-retries") >= 1, "a retry")
    ui.wait(lambda: ui.logged("breaker-changed", "breaker open"), "the breaker to open")
    ui.wait(lambda: set(doomed) <= set(ui.row_ids("dead-letters")), f"{doomed} dead-lettered")
    for item in doomed:
        assert ui.logged("item-failed", f"{item} dead-lettered after 2 attempts"), item
    assert ui.number("count-failed") == 2

    ui.set_endpoint("ok")
    ui.requeue(doomed[0])
    ui.wait(
        lambda: ui.logged("synced", f"{doomed[0]} synced"),
        "the requeued item synced once the breaker lets a probe through",
    )
    ui.wait(lambda: ui.text("breaker") == "closed", "the breaker to close")
    ui.wait(lambda: ui.row_ids("dead-letters") == [doomed[1]], "one dead letter left")


def silent_and_gone_endpoint(ui: Monitor) -> None:
    """An endpoint that never answers, then one that is down: each a failed attempt."""
    dead_before = ui.row_ids("dead-letters")
    dead_letter_when(ui, "timeout", "no answer within 2000 ms")
    dead_letter_when(ui, "down", "endpoint unreachable")
    ui.set_endpoint("ok")
    # Two failures in a row after a success: below the breaker's threshold of 3.
    assert ui.text("breaker") == "closed"
    assert len(ui.row_ids("dead-letters")) == len(dead_before) + 2


def dead_letter_when(ui: Monitor, mode: str, error: str) -> None:
    ui.set_endpoint(mode)
    (item,) = ui.push(retries=0, payload=f'{{"note": "endpoint {mode}"}}')
    ui.wait(lambda: ui.logged("dead", f"{item} attempt 1 failed ({error}"), f"{mode}: {error}")
    ui.wait(lambda: item in ui.row_ids("dead-letters"), f"{item} dead-lettered")


def park_items(ui: Monitor) -> list[str]:
    """Pause the queue and push three items: they stay pending (pause is durable)."""
    ui.toggle_pause(True)
    parked = ui.push(count=3, priority="low", payload='{"note": "kept across a restart"}')
    ui.wait(lambda: ui.row_ids("pending") == parked, "3 items pending")
    ui.wait(lambda: ui.number("count-pending") == 3, "3 pending in the counts")
    return parked


def quit_leaves_nothing(ui: Monitor, run: Run) -> None:
    apps, sidecars = run.processes(APP_NAME), run.processes(sidecar_name())
    assert len(apps) == 1, apps
    # The onefile launcher the plugin started, and the Python process it unpacked.
    assert len(sidecars) == 2, sidecars
    ui.quit_app()
    wait_until(lambda: not run.processes(APP_NAME), "the app to exit")
    # The plugin stopped the sidecar before the app exited: nothing is left to wait for.
    assert run.processes(sidecar_name()) == []
    ui.end_session()


def survives_kill_9(ui: Monitor, run: Run) -> None:
    (app_proc,) = run.processes(APP_NAME)
    (launcher,) = [p for p in run.processes(sidecar_name()) if p.ppid == app_proc.pid]
    exits = len(ui.log_lines("sidecar-exited"))
    os.kill(launcher.pid, signal.SIGKILL)
    # The very next action, sent while the plugin restarts the sidecar, waits for it.
    (item,) = ui.push(count=1, priority="critical", payload='{"note": "after kill -9"}')
    ui.wait(lambda: ui.logged("synced", f"{item} synced"), "the next item synced")
    assert len(ui.log_lines("sidecar-exited")) == exits + 1
    assert ui.logged("sidecar-exited", "signal 9"), ui.log_lines("sidecar-exited")
    # The window shows what its last refresh (every 500 ms) read: wait for the next one.
    ui.wait(lambda: ui.text("sidecar-state") == "ready", "the window to show the sidecar ready")
    new = [p for p in run.processes(sidecar_name()) if p.ppid == app_proc.pid]
    assert len(new) == 1 and new[0].pid != launcher.pid, new
