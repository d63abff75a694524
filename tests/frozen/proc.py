"""A frozen sidecar under test, and what is left of it afterwards (processes, ``_MEI*`` dirs).

Process checks read ``/proc`` (Linux). Each process is remembered with its start time, so a
recycled pid is never taken for a survivor.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0
HAVE_PROC = Path("/proc/self/stat").exists()

ProcId = tuple[int, int]  # (pid, start time in clock ticks since boot)


def frozen_env(tmpdir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a frozen run: nothing of ours leaks in, TMPDIR is private."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNC_QUEUE_", "PYTHON"))}
    for var in ("TMPDIR", "TMP", "TEMP"):
        env[var] = str(tmpdir)
    env.update(extra or {})
    return env


def source_argv() -> list[str]:
    return [sys.executable, "-m", "sync_queue"]


def source_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNC_QUEUE_")}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "sidecar"), os.environ.get("PYTHONPATH")) if p
    )
    env.update(extra or {})
    return env


# -- /proc ----------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) of ``pid``, or None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw.rsplit(b")", 1)[1].split()
    # after "pid (comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt
    # cmajflt utime stime cutime cstime priority nice threads itrealvalue starttime
    return fields[0].decode(), int(fields[1]), int(fields[19])


def tree(pid: int) -> list[ProcId]:
    """``pid`` and all its descendants that are running now."""
    root = _stat(pid)
    if root is None:
        return []
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None:
                children.setdefault(st[1], []).append(int(entry.name))
    found: list[ProcId] = [(pid, root[2])]
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            st = _stat(child)
            if st is not None and st[0] not in ("Z", "X"):
                found.append((child, st[2]))
                todo.append(child)
    return found


def alive(procs: list[ProcId]) -> list[ProcId]:
    """Those of ``procs`` still running (zombies and recycled pids count as gone)."""
    left = []
    for pid, started in procs:
        st = _stat(pid)
        if st is not None and st[2] == started and st[0] not in ("Z", "X"):
            left.append((pid, started))
    return left


def wait_all_gone(procs: list[ProcId], timeout: float = 10.0) -> list[ProcId]:
    deadline = time.monotonic() + timeout
    while (left := alive(procs)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left


def mei_dirs(tmpdir: Path) -> list[str]:
    return sorted(p.name for p in tmpdir.iterdir() if p.name.startswith("_MEI"))


# -- a running sidecar ---------------------------------------------------------------------


class Frozen:
    """A sidecar process with piped stdio; stdout lines are parsed by a reader thread."""

    def __init__(
        self,
        argv: list[str],
        *args: str | os.PathLike[str],
        env: dict[str, str],
        log: Path,
        process_group: bool = False,
    ) -> None:
        self.stderr_path = log
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 (closed in wait())
        extra: dict[str, Any] = {"process_group": 0} if process_group else {}
        self.proc = subprocess.Popen(
            [*argv, *map(str, args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            **extra,
        )
        self.pid = self.proc.pid
        self.lines: queue.Queue[Any] = queue.Queue()
        self._ids = itertools.count(1)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(orjson.loads(raw))
        self.lines.put(None)

    def next_line(self, timeout: float = TIMEOUT) -> Any:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"no line from the sidecar within {timeout} s; stderr:\n{self.stderr()}"
            ) from None

    def wait_ready(self) -> dict[str, Any]:
        message = self.next_line()
        assert message is not None, f"exited before ready; stderr:\n{self.stderr()}"
        assert message.get("method") == "ready", message
        return message["params"]  # type: ignore[no-any-return]

    def send(self, message: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(orjson.dumps(message) + b"\n")
        self.proc.stdin.flush()

    def call(self, method: str, **params: Any) -> Any:
        """Send a request and wait for its response, stdin left open: replies are not
        held back in a buffer until exit."""
        request_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params:
            message["params"] = params
        self.send(message)
        while True:
            reply = self.next_line()
            assert reply is not None, f"exited before answering {method}: {self.stderr()}"
            if reply.get("id") == request_id:
                assert "error" not in reply, reply
                return reply["result"]

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def wait(self, timeout: float = TIMEOUT) -> int:
        try:
            status = self.proc.wait(timeout)
        finally:
            self._stderr.close()
        self._reader.join(timeout)
        return status

    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def kill(self) -> None:
        """Test cleanup: whatever state it is in, make sure nothing survives."""
        if self.proc.poll() is None:
            procs = tree(self.pid) if HAVE_PROC else []
            self.proc.kill()
            for pid, _ in alive(procs):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
        try:
            self.proc.wait(10)
        finally:
            if not self._stderr.closed:
                self._stderr.close()
