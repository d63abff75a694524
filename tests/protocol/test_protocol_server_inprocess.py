"""The stdio server in this process, over os.pipe(): the hooks that need no subprocess."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sync_queue.server import TIMER_SLACK_SECONDS, StdioServer, timer_moves_earlier

from .rpc_checks import check_output, line, request
from .rpc_fakes import FakeDispatcher


class PipedServer:
    def __init__(self) -> None:
        self.dispatcher = FakeDispatcher()
        request_read, self.request_write = os.pipe()
        self.reply_read, reply_write = os.pipe()
        self.server = StdioServer(self.dispatcher, in_fd=request_read, out_fd=reply_write)
        self.status: list[int] = []
        # Not the main thread: the server leaves signal handling alone.
        self.thread = threading.Thread(target=lambda: self.status.append(self.server.run()))
        self.thread.start()
        self._fds = [request_read, self.request_write, self.reply_read, reply_write]
        self._pending = b""

    def send(self, *messages: Any) -> None:
        os.write(self.request_write, b"".join(line(m) for m in messages))

    def read_message(self) -> Any:
        while b"\n" not in self._pending:
            chunk = os.read(self.reply_read, 65536)
            assert chunk, "server closed its output"
            self._pending += chunk
        raw, self._pending = self._pending.split(b"\n", 1)
        return check_output(raw + b"\n")[0]

    def close(self) -> None:
        os.close(self.request_write)
        self._fds.remove(self.request_write)
        self.thread.join(10)

    def cleanup(self) -> None:
        for fd in self._fds:
            os.close(fd)


@pytest.fixture
def piped() -> Iterator[PipedServer]:
    server = PipedServer()
    yield server
    if server.thread.is_alive():
        server.close()
    server.cleanup()


def test_wake_from_another_thread_runs_a_cycle(piped: PipedServer) -> None:
    piped.send(request("ping", 1))
    assert piped.read_message()["id"] == 1
    ticks = piped.dispatcher.ticks
    assert piped.dispatcher.link is not None
    piped.dispatcher.link.wake()
    deadline = time.monotonic() + 10
    while piped.dispatcher.ticks == ticks:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_eof_ends_serve_with_close_and_status_zero(piped: PipedServer) -> None:
    piped.send(request("ping", 1))
    assert piped.read_message()["result"] == {"pong": True}
    piped.close()
    assert piped.status == [0]
    assert piped.dispatcher.closed


def test_close_failure_is_exit_status_one(piped: PipedServer) -> None:
    def broken_close() -> None:
        raise OSError("disk gone")

    piped.dispatcher.close = broken_close  # type: ignore[method-assign]
    piped.close()
    assert piped.status == [1]


def test_timer_is_armed_again_only_when_the_deadline_moves_earlier(piped: PipedServer) -> None:
    piped.send(request("push", 1, item="late", delayMs=60_000))
    assert piped.read_message()["id"] == 1
    # The reply is written before its cycle arms the timer: one more cycle, and it is armed.
    piped.send(request("ping", 0))
    assert piped.read_message()["id"] == 0
    armed: list[float] = []
    loop = piped.server._loop
    call_at = loop.call_at

    def counting_call_at(when: float, callback: Any, *args: Any) -> Any:
        armed.append(when)
        return call_at(when, callback, *args)

    loop.call_at = counting_call_at  # type: ignore[method-assign]
    for n in range(2, 52):  # 50 cycles, each ticking; the deadline stays a minute away
        piped.send(request("ping", n))
        assert piped.read_message()["id"] == n
    assert armed == []
    # An earlier deadline re-arms at once: the waiter gets the item after ~0.2 s, not 60 s.
    started = time.monotonic()
    piped.send(request("pop", "w", timeoutMs=10_000), request("push", 99, item="x", delayMs=200))
    replies = {m["id"]: m["result"] for m in (piped.read_message(), piped.read_message())}
    assert replies == {99: {}, "w": "x"}
    assert 0.15 < time.monotonic() - started < 5
    assert armed, "the earlier deadline armed the timer"


def test_timer_moves_earlier_only_for_an_earlier_deadline() -> None:
    assert timer_moves_earlier(None, 5.0)
    assert timer_moves_earlier(5.0, 4.0)
    assert not timer_moves_earlier(5.0, 5.0)
    # The same deadline computed a moment later comes out a hair earlier: not a move.
    assert not timer_moves_earlier(5.0, 5.0 - TIMER_SLACK_SECONDS / 2)
    assert timer_moves_earlier(5.0, 5.0 - 2 * TIMER_SLACK_SECONDS)
    assert not timer_moves_earlier(5.0, 6.0)  # the armed one fires early: one cheap cycle
    assert not timer_moves_earlier(5.0, None)
    assert not timer_moves_earlier(None, None)
