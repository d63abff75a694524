"""A real sidecar subprocess with pipes on all three streams, for the end-to-end tests.

The executable comes from ``$SYNC_QUEUE_SIDECAR`` (a frozen binary; split like a shell
command line) and defaults to ``python -m sync_queue`` from this checkout, so the same suite
runs against both. A reader thread takes every stdout line and hands it to the client half
(``client.Sidecar``: checks and routing); a second thread drains stderr.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .client import (
    ROOT,
    TIMEOUT,
    Sidecar,
    SidecarError,
    check_line,
    dir_snapshot,
    id_key,
    line,
    list_all,
    notification,
    push_lines,
    request,
    split_lines,
    write_config,
)

__all__ = [
    "ENV_EXECUTABLE",
    "ROOT",
    "TIMEOUT",
    "Sidecar",
    "SidecarError",
    "SidecarProcess",
    "check_line",
    "descendants",
    "dir_snapshot",
    "id_key",
    "line",
    "list_all",
    "notification",
    "process_gone",
    "push_lines",
    "request",
    "rss_bytes",
    "sidecar_argv",
    "sidecar_env",
    "wait_gone",
    "write_config",
]

ENV_EXECUTABLE = "SYNC_QUEUE_SIDECAR"


def sidecar_argv() -> list[str]:
    """How to start the sidecar: ``$SYNC_QUEUE_SIDECAR`` or ``python -m sync_queue``."""
    frozen = os.environ.get(ENV_EXECUTABLE)
    if frozen:
        return shlex.split(frozen)
    return [sys.executable, "-m", "sync_queue"]


def sidecar_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNC_QUEUE_")}
    # From source: make the checkout importable even when the package is not installed.
    sidecar_src = str(ROOT / "sidecar")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (sidecar_src, env.get("PYTHONPATH")) if p)
    if extra:
        env.update(extra)
    return env


class SidecarProcess(Sidecar):
    """One sidecar process; see the module docstring."""

    def __init__(
        self,
        *args: str | os.PathLike[str],
        env: dict[str, str] | None = None,
        stdin: Any = subprocess.PIPE,
        preexec_fn: Any = None,
    ) -> None:
        super().__init__()
        self.argv = [*sidecar_argv(), *(str(a) for a in args)]
        self.proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=sidecar_env(env),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            preexec_fn=preexec_fn,
        )
        self.pid = self.proc.pid
        self._stderr_chunks: list[bytes] = []
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    # -- reading ------------------------------------------------------------------------

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        pending = b""
        while True:
            try:
                chunk = os.read(fd, 1 << 20)
            except OSError:
                chunk = b""
            if not chunk:
                break
            complete, pending = split_lines(pending, chunk)
            if complete:
                self._take_lines(time.monotonic(), complete)
        self._output_ended(pending)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:
                return
            if not chunk:
                return
            self._stderr_chunks.append(chunk)

    @property
    def stderr(self) -> str:
        return b"".join(self._stderr_chunks).decode(errors="replace")

    def _wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SidecarError(f"timed out waiting for {what}; stderr:\n{self.stderr}")
                if self.stdout_closed and not predicate():
                    raise SidecarError(
                        f"stdout closed while waiting for {what} (exit {self.proc.poll()}); "
                        f"stderr:\n{self.stderr}"
                    )
                self._cond.wait(min(left, 0.5))

    def advance(self, seconds: float) -> None:
        time.sleep(seconds)

    def monotonic(self) -> float:
        return time.monotonic()

    # -- writing ------------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)

    # -- the process --------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait_exit(self, timeout: float = TIMEOUT) -> int:
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise SidecarError(f"the sidecar did not exit; stderr:\n{self.stderr}") from None
        for thread in self._threads:
            thread.join(TIMEOUT)
        return status

    def kill9(self) -> int:
        """SIGKILL the sidecar (and, for a one-file frozen binary, its Python child);
        the exit status of the process we started."""
        children = descendants(self.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        for child in children:
            wait_gone(child)
        return self.wait_exit()

    def kill(self) -> None:
        self.kill9()

    @property
    def server_pid(self) -> int:
        """The process doing the work: ours, or the last descendant of a one-file binary's
        bootloader."""
        children = descendants(self.pid)
        return children[-1] if children else self.pid

    def rss_bytes(self) -> int:
        return rss_bytes(self.server_pid)


def rss_bytes(pid: int) -> int:
    """VmRSS of a process, from /proc."""
    with open(f"/proc/{pid}/status", "rb") as f:
        for raw in f:
            if raw.startswith(b"VmRSS:"):
                return int(raw.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (breadth first), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        children = parents.get(todo.pop(0), [])
        found += children
        todo += children
    return found


def process_gone(pid: int) -> bool:
    """True when ``pid`` has exited (a zombie waiting to be reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return True
    return state in (b"Z", b"X")


def wait_gone(pid: int, timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while not process_gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
