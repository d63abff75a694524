"""A 100 MB line: answered with MessageTooLarge while it streams, never held whole."""

from __future__ import annotations

import threading
import time

import pytest

from .harness import SidecarProcess

pytestmark = pytest.mark.process  # about the process: see conftest.py

MIB = 1024 * 1024


def test_100mb_line_keeps_rss_bounded(mem: SidecarProcess) -> None:
    mem.result("push", id="before", payload="x" * 1000)
    mem.sync()
    baseline = mem.rss_bytes()
    peak = baseline
    chunk = b'{"jsonrpc":"2.0","id":1,"method":"push","params":{"payload":"' + b"x" * (MIB - 64)
    total = 0
    done = threading.Event()

    def write() -> None:
        nonlocal total
        try:
            while total < 100 * MIB:
                mem.send_raw(chunk)
                total += len(chunk)
            mem.send_raw(b'"}}\n')
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    while not done.is_set():
        peak = max(peak, mem.rss_bytes())
        time.sleep(0.002)
    writer.join()
    reply = mem.reply(None, timeout=30)
    assert reply["error"]["code"] == -32600
    assert reply["error"]["data"]["kind"] == "MessageTooLarge"
    assert not mem.has_reply(1)
    peak = max(peak, mem.rss_bytes())
    growth = peak - baseline
    assert total >= 100 * MIB
    assert growth < 50 * MIB, f"RSS grew by {growth / MIB:.1f} MiB"
    # The next request works, and the queue is as it was.
    assert mem.result("get", id="before")["payload"] == "x" * 1000
    assert mem.result("stats")["currentSize"] == 1
