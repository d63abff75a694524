"""The stdio server: the only I/O of the RPC path, around a sans-IO ``RpcSession``.

One *cycle* per read: take whatever input is there (up to ``read_size`` bytes), apply all of
it in order through the dispatcher, ``tick``, ``commit`` once (group commit: pipelined
pushes share one fsync), and only then write every reply with one ``os.write``. Timers
(waiting long polls, the dispatcher's ``tick``) and ``ServerLink.wake`` run the same cycle
with no input.

Rules:

1. stdout carries protocol lines only. :func:`claim_stdio` moves the protocol to private
   descriptors and points fd 1 at stderr (and fd 0 at /dev/null), so a stray ``print``, a
   library warning or a child process cannot corrupt the stream. Writes are unbuffered
   ``os.write`` calls: no reliance on ``PYTHONUNBUFFERED`` in a frozen binary.
2. No asyncio task or future per request: reading, applying and writing are plain
   callbacks on the loop. asyncio gives us timers, signals and a thread-safe wake-up.
3. Stopping (stdin EOF, SIGTERM, SIGINT, a ``shutdown`` request, or stdout gone): stop
   reading, answer waiting calls with their empty result, commit, ``close()``, write the
   last replies, exit 0 (1 if ``close()`` failed). A second SIGTERM/SIGINT exits at once
   with 128 + the signal number, even while ``close()`` runs, and until the process is
   gone: the handlers stay installed once a signal has begun the stop.

   A signal to a onefile build's launcher reaches this process once (the launcher
   forwards it); one to the whole process group reaches it twice, and the second copy
   exits at once. The Tauri plugin therefore sends SIGTERM to the launcher only.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import logging
import os
import select
import signal
import sys
import threading
from types import FrameType
from typing import Any, Final

from .protocol import (
    DEFAULT_MAX_BATCH_MEMBERS,
    DEFAULT_MAX_MESSAGE_BYTES,
    Dispatcher,
    RpcSession,
)

__all__ = [
    "EXIT_CLOSE_FAILED",
    "EXIT_OK",
    "TIMER_SLACK_SECONDS",
    "StdioServer",
    "claim_stdio",
    "timer_moves_earlier",
]

log = logging.getLogger("sync_queue.server")

EXIT_OK: Final = 0
EXIT_CLOSE_FAILED: Final = 1

# Larger than a pipe's buffer (64 KiB on Linux), so one read takes all that is waiting.
DEFAULT_READ_SIZE: Final = 1024 * 1024
_STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT) + (
    (signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ()
)
# SIGHUP: whoever started us hung up (a closed terminal, or a onefile launcher that died: its
# child gets it by PR_SET_PDEATHSIG). A clean stop, except that waiting calls get no
# answer: the caller's peer is gone, and a long poll answered `null` would read as "no item"
# where the truth is "the sidecar went away" (the plugin fails it with SidecarExited).
_HANG_UP: Final = getattr(signal, "SIGHUP", None)


# How much earlier than the armed timer a deadline must come to re-arm it. The next tick is
# "the session's now + the dispatcher's delay", two clock reads a moment apart, so the same
# deadline comes out a few microseconds earlier or later from one cycle to the next (much
# more when the process is preempted between the reads). The engine counts whole
# milliseconds; a timer that fires up to this late changes nothing it does.
TIMER_SLACK_SECONDS: Final = 0.002


def timer_moves_earlier(armed: float | None, wanted: float | None) -> bool:
    """Re-arm the cycle's timer only when the next deadline comes clearly before the armed
    one (by more than ``TIMER_SLACK_SECONDS``).

    Every busy cycle computes a deadline a little later than the last one (the next tick is
    "now + delay"), so re-arming on every change cancelled and pushed a timer on nearly every
    cycle. A timer left armed for an earlier time (or for a deadline that went away) costs
    one early cycle that finds nothing due and arms the right time then."""
    return wanted is not None and (armed is None or wanted < armed - TIMER_SLACK_SECONDS)


def claim_stdio() -> tuple[int, int]:
    """Take stdin and stdout for the protocol; return their new (in, out) descriptors.

    Afterwards fd 0 reads /dev/null and fd 1 writes to stderr, for this process and any
    child, and ``sys.stdout`` is ``sys.stderr``. The returned descriptors are not inherited
    by child processes.
    """
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    protocol_in = os.dup(0)
    protocol_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(devnull, 0)
    finally:
        os.close(devnull)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return protocol_in, protocol_out


class StdioServer:
    """Serves one :class:`Dispatcher` over a pair of descriptors until it is told to stop.

    ``in_fd``/``out_fd`` default to :func:`claim_stdio`; tests pass pipes. ``run()`` returns
    the exit status for the process.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        in_fd: int | None = None,
        out_fd: int | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_batch_members: int = DEFAULT_MAX_BATCH_MEMBERS,
        read_size: int = DEFAULT_READ_SIZE,
        handle_signals: bool = True,
    ) -> None:
        self._dispatcher = dispatcher
        self._in_fd = in_fd
        self._out_fd = out_fd
        self._limits = {
            "max_message_bytes": max_message_bytes,
            "max_batch_members": max_batch_members,
        }
        self._read_size = read_size
        self._handle_signals = handle_signals
        self._stop_reason: str | None = None
        self._signalled: int | None = None  # the first stop signal
        self._output_broken = False
        self._wake_pending = False
        self._reading_with_thread = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when: float | None = None

    def run(self) -> int:
        """Serve until stopped; the process exit status."""
        return asyncio.run(self.serve())

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        self._loop = loop
        if self._in_fd is None or self._out_fd is None:
            claimed_in, claimed_out = claim_stdio()
            self._in_fd = claimed_in if self._in_fd is None else self._in_fd
            self._out_fd = claimed_out if self._out_fd is None else self._out_fd
        self._stopped: asyncio.Future[None] = loop.create_future()
        self._session = RpcSession(
            self._dispatcher,
            clock=loop.time,
            on_wake=self._wake_threadsafe,
            **self._limits,
        )
        old_handlers = self._install_signal_handlers()
        try:
            # Notifications sent before serving (``ready``) go out first.
            self._run_cycle()
            self._start_reading()
            await self._stopped
            return self._finish()
        finally:
            self._stop_reading()
            if self._signalled is None:
                self._restore_signal_handlers(old_handlers)
            # else: a signal began this stop, and the process is on its way out (the CLI
            # exits with os._exit right after run()). Until it is gone, the next signal
            # must still end it at once with 128 + n, so _on_signal stays installed.

    # -- stopping ---------------------------------------------------------------------

    def stop(self, reason: str = "asked to stop") -> None:
        """Begin a clean stop (loop thread only; signals use this too)."""
        if self._stop_reason is not None:
            return
        self._stop_reason = reason
        log.info("stopping: %s", reason)
        self._stop_reading()
        if not self._stopped.done():
            self._stopped.set_result(None)

    def _finish(self) -> int:
        """Answer what was read, persist, and say goodbye."""
        if self._timer is not None:
            self._timer.cancel()
        session = self._session
        hung_up = self._signalled is not None and self._signalled == _HANG_UP
        session.stop(answer_waiting=not hung_up)
        output = session.commit_and_render()
        status = EXIT_OK
        try:
            self._dispatcher.close()
        except Exception:
            log.exception("closing the queue failed")
            status = EXIT_CLOSE_FAILED
        # Whatever close() notified goes out too; no commit after close.
        output += session.render()
        self._write(output)
        return status

    def _install_signal_handlers(self) -> dict[int, Any]:
        if not self._handle_signals or threading.current_thread() is not threading.main_thread():
            return {}
        # signal.signal, not loop.add_signal_handler: a Python handler also runs while the
        # loop is blocked in a long commit or close(), so a second signal really is "at once".
        return {signum: signal.signal(signum, self._on_signal) for signum in _STOP_SIGNALS}

    def _restore_signal_handlers(self, old_handlers: dict[int, Any]) -> None:
        for signum, handler in old_handlers.items():
            signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._signalled is not None:
            os._exit(128 + signum)
        self._signalled = signum
        self._loop.call_soon_threadsafe(self.stop, f"signal {signal.Signals(signum).name}")

    # -- reading ----------------------------------------------------------------------

    def _start_reading(self) -> None:
        assert self._in_fd is not None
        self._input = io.FileIO(self._in_fd, "rb", closefd=False)
        self._read_buffer = bytearray(self._read_size)
        self._read_view = memoryview(self._read_buffer)
        try:
            self._loop.add_reader(self._in_fd, self._on_readable)
        except (NotImplementedError, PermissionError, ValueError, OSError):
            # A regular file (epoll refuses it) or Windows' proactor loop: a thread reads.
            self._reading_with_thread = True
            thread = threading.Thread(target=self._read_in_thread, name="stdin", daemon=True)
            thread.start()

    def _stop_reading(self) -> None:
        if self._in_fd is not None and not self._reading_with_thread:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._in_fd)

    def _read_chunk(self) -> bytes:
        """One read of whatever is there, up to ``read_size`` bytes; b"" at the end."""
        # readinto a buffer kept for the whole run, then copy out what came: os.read(fd,
        # 1 MiB) would allocate (mmap) a fresh megabyte per call, which costs more than
        # the whole round trip of a small request.
        count = self._input.readinto(self._read_buffer)
        if count is None:  # non-blocking descriptor with nothing there after all
            raise BlockingIOError
        return bytes(self._read_view[:count])

    def _on_readable(self) -> None:
        try:
            # Readable was reported, so this returns at once even on a blocking descriptor.
            data = self._read_chunk()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.error("reading stdin failed, treating it as the end of input: %s", exc)
            data = b""
        self._on_input(data)

    def _read_in_thread(self) -> None:
        handed_over = threading.Event()
        while self._stop_reason is None:
            try:
                data = self._read_chunk()
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                log.error("reading stdin failed, treating it as the end of input: %s", exc)
                data = b""
            handed_over.clear()
            self._loop.call_soon_threadsafe(self._on_input_from_thread, data, handed_over)
            if not data:
                return
            # One chunk at a time: a slow loop must not let the thread read ahead unbounded.
            handed_over.wait()

    def _on_input_from_thread(self, data: bytes, handed_over: threading.Event) -> None:
        try:
            self._on_input(data)
        finally:
            handed_over.set()

    def _on_input(self, data: bytes) -> None:
        if self._stop_reason is not None:
            return
        if data:
            self._session.receive(data)
        else:
            self._session.receive_eof()
            self.stop("end of input")
        self._run_cycle()

    # -- the cycle ----------------------------------------------------------------------

    def _run_cycle(self) -> None:
        session = self._session
        if session.stopping:
            # A ``shutdown`` request: _finish() commits and writes, after close().
            self.stop("shutdown requested")
        if self._stop_reason is not None:
            return
        session.service()
        self._write(session.commit_and_render())
        self._schedule_timer()

    def _schedule_timer(self) -> None:
        when = self._session.next_deadline()
        if not timer_moves_earlier(self._timer_when, when):
            return
        assert when is not None
        if self._timer is not None:
            self._timer.cancel()
        self._timer_when = when
        self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_when = None
        self._run_cycle()

    def _wake_threadsafe(self) -> None:
        # Coalesce: many wakes before the loop gets to it make one cycle.
        if not self._wake_pending:
            self._wake_pending = True
            self._loop.call_soon_threadsafe(self._on_wake)

    def _on_wake(self) -> None:
        self._wake_pending = False
        self._run_cycle()

    # -- writing ------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        """Write all of ``data`` to the protocol output; a dead reader means stop."""
        if not data or self._output_broken:
            return
        assert self._out_fd is not None
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._out_fd, view)
            except BlockingIOError:
                # Someone made our stdout non-blocking; wait until it drains.
                select.select([], [self._out_fd], [])
                continue
            except InterruptedError:
                continue
            except OSError as exc:
                self._output_broken = True
                if exc.errno not in (errno.EPIPE, errno.EBADF, errno.EINVAL):
                    log.error("writing stdout failed: %s", exc)
                self.stop("stdout closed")
                return
            view = view[written:]
