"""The sidecar in the test's own process: the real session, method table and queue, no I/O.

:class:`InProcessSidecar` speaks the same newline-delimited JSON-RPC bytes as a sidecar
process, but feeds them straight into the sans-IO ``RpcSession`` in front of the real
method table and queue, and runs the cycle the stdio server runs (``sync_queue.server``:
apply what was read, ``service``, commit, write) on the test's own thread: a failure is a
traceback through the method, not a timeout waiting for a pipe.

Time: each in-process sidecar runs on its own clock, the system's plus an offset that only
grows (:class:`SkippableClock`). When a test waits for something the sidecar will only do
later (a long poll's timeout, a lease running out, a delayed item, the breaker's cool-down,
the ``itemsAvailable`` window), the harness skips the clock to the sidecar's next deadline
instead of sleeping, and runs that cycle: the same cycles in the same order as a process
would run them, with no wait. ``advance(seconds)`` is a test's "sleep".

:func:`open_dispatcher` is the one place that builds the engine: when its constructors
change, only it changes.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from sync_queue import cli
from sync_queue.clock import WALL_OFFSET_ENV, SystemClock, clock_from_env
from sync_queue.methods import QueueDispatcher
from sync_queue.persistence import open_engine
from sync_queue.protocol import RpcSession

from .client import TIMEOUT, Sidecar, SidecarError, split_lines

__all__ = ["InProcessSidecar", "SkippableClock", "open_dispatcher"]


class SkippableClock:
    """The system clock plus ``skipped_ms``, which only grows: a ``sync_queue.clock.Clock``
    for the engine and the method table, and ``monotonic()`` in seconds (the same reading)
    for the session."""

    def __init__(self, system: SystemClock) -> None:
        self.skipped_ms = 0
        self._system = system

    def now_ms(self) -> int:
        return self._system.now_ms() + self.skipped_ms

    def monotonic_ms(self) -> int:
        return self._system.monotonic_ms() + self.skipped_ms

    def monotonic(self) -> float:
        return self.monotonic_ms() / 1000

    def skip_to(self, when: float) -> None:
        """Move ``monotonic()`` forward to at least ``when`` (never back)."""
        gap = when - self.monotonic()
        if gap > 0:
            self.skipped_ms += math.ceil(gap * 1000)


def open_dispatcher(args: Sequence[str], clock: SkippableClock) -> QueueDispatcher:
    """What ``sync-queue-sidecar serve`` builds from its command line (``cli.serve``), minus
    the stdio: the config from the same flags, the engine on ``clock``, the method table."""
    config = cli.build_config(cli._parser().parse_args(list(args)))
    engine = open_engine(config, clock=clock)
    recovered: dict[str, Any] = dict(engine.metrics(engine.now()).by_status)
    if engine.quarantined:
        recovered["quarantined"] = list(engine.quarantined)
    data_dir = None if config.persistence_path is None else str(config.persistence_path)
    return QueueDispatcher(engine, data_dir=data_dir, recovered=recovered)


class _LogCapture(logging.Handler):
    """The sidecar's log records: what a process would have written to stderr."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.text.append(self.format(record))


class InProcessSidecar(Sidecar):
    """A sidecar started with ``args`` (the command line's flags), served in this process.

    ``skip_time``: skip the clock to the next deadline while waiting (see the module
    docstring). Off for a test whose sidecar waits on another thread (a ``flush``'s
    compaction): then waits are real. ``env``: the sidecar's environment variables that
    matter in process (only ``$SYNC_QUEUE_TEST_WALL_OFFSET_MS``, read as ``cli.serve`` reads
    it).
    """

    def __init__(
        self,
        *args: str | os.PathLike[str],
        skip_time: bool = True,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        unused = set(env or {}) - {WALL_OFFSET_ENV}
        if unused:
            raise TypeError(f"no in-process meaning for {sorted(unused)}: mark the test process")
        self.argv = [str(a) for a in args]
        self.skip_time = skip_time
        self.clock = SkippableClock(clock_from_env(env or {}))
        self._woken = threading.Event()
        self._pending = b""
        self._stop_reason: str | None = None
        self.status: int | None = None
        self._log = _LogCapture()
        logging.getLogger("sync_queue").addHandler(self._log)
        try:
            self.dispatcher = open_dispatcher(self.argv, self.clock)
            self._session = RpcSession(
                self.dispatcher, clock=self.clock.monotonic, on_wake=self._woken.set
            )
        except BaseException:
            self._release()
            raise
        self._run_cycle()  # notifications sent before serving (``ready``) go out first

    # -- the stdio server's cycle, without the stdio (sync_queue.server) -----------------

    def _run_cycle(self) -> None:
        self._cycle()

    def _cycle(self) -> None:
        session = self._session
        if session.stopping:
            self._stop("shutdown requested")
        if self._stop_reason is not None:
            return
        session.service()
        self._write(session.commit_and_render())

    def _stop(self, reason: str) -> None:
        """The server's stop and ``_finish``: answer waiting calls, commit, close, write."""
        if self._stop_reason is not None:
            return
        self._stop_reason = reason
        self._finish()
        self._output_ended(self._pending)
        self._release()

    def _finish(self) -> None:
        session = self._session
        session.stop(answer_waiting=True)
        output = session.commit_and_render()
        status = 0
        try:
            self.dispatcher.close()
        except Exception:
            logging.getLogger("sync_queue.server").exception("closing the queue failed")
            status = 1
        output += session.render()
        self._write(output)
        self.status = status

    def _release(self) -> None:
        logging.getLogger("sync_queue").removeHandler(self._log)

    def _write(self, data: bytes) -> None:
        if data:
            complete, self._pending = split_lines(self._pending, data)
            self._take_lines(self.monotonic(), complete)

    def _run_due(self) -> None:
        """One cycle if the sidecar is due one: woken from another thread, or a timer."""
        if self._stop_reason is not None:
            return
        due = self._session.next_deadline()
        if self._woken.is_set() or (due is not None and due <= self.monotonic()):
            self._woken.clear()
            self._run_cycle()

    # -- the transport ---------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        self._run_due()  # a process would have run its due timers before this read
        if self._stop_reason is not None:
            return  # a stopped server reads no more
        self._session.receive(data)
        self._cycle()

    def _wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> None:
        real_deadline = time.monotonic() + timeout
        skip_limit = self.monotonic() + timeout
        while True:
            self._run_due()
            if predicate():
                return
            if self.stdout_closed:
                raise SidecarError(f"stopped while waiting for {what}; log:\n{self.stderr}")
            left = real_deadline - time.monotonic()
            if left <= 0:
                raise SidecarError(f"timed out waiting for {what}; log:\n{self.stderr}")
            due = self._session.next_deadline()
            if self.skip_time and due is not None and due <= skip_limit:
                self.clock.skip_to(due)
                continue
            if due is not None:
                left = min(left, max(due - self.monotonic(), 0.0))
            self._woken.wait(min(left, 0.05))

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass, running every cycle that falls due on the way."""
        until = self.monotonic() + seconds
        while self._stop_reason is None:
            self._run_due()
            due = self._session.next_deadline()
            if due is None or due > until:
                break
            if self.skip_time:
                self.clock.skip_to(due)
            else:
                self._woken.wait(max(due - self.monotonic(), 0.0))
        if self.skip_time:
            self.clock.skip_to(until)
        else:
            time.sleep(max(until - self.monotonic(), 0.0))
        self._run_due()

    def monotonic(self) -> float:
        return self.clock.monotonic()

    def wall_ms(self) -> int:
        return self.clock.now_ms()

    @property
    def running(self) -> bool:
        return self._stop_reason is None

    def close_stdin(self) -> None:
        if self._stop_reason is None:
            self._session.receive_eof()
            self._stop("end of input")

    def wait_exit(self, timeout: float = TIMEOUT) -> int:
        self._wait(lambda: self.status is not None, timeout, "the stop")
        assert self.status is not None
        return self.status

    def kill(self) -> None:
        """The end of a test: stop cleanly (nothing here can die harder than that)."""
        self.close_stdin()

    @property
    def stderr(self) -> str:
        return "\n".join(self._log.text)
