"""A real sidecar subprocess with pipes on all three streams, for the end-to-end tests.

The executable comes from ``$SYNC_QUEUE_SIDECAR`` (a frozen binary; split like a shell
command line) and defaults to ``python -m sync_queue`` from this checkout, so the same suite
runs against both. A reader thread takes every stdout line, checks that it is a valid
JSON-RPC 2.0 response, batch reply or notification (:func:`check_line`), and routes it:
responses by id, batch replies and notifications to their lists. A second thread drains
stderr. ``bad_lines`` collects whatever was not a protocol line; the fixtures assert it is
empty at teardown.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0
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


def line(message: Any) -> bytes:
    return orjson.dumps(message) + b"\n"


def request(method: str, request_id: Any, params: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def notification(method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    return message


def id_key(request_id: Any) -> tuple[str, Any]:
    """Ids are paired by type and value: ``1`` and ``"1"`` and ``1.0`` are different ids."""
    return (type(request_id).__name__, request_id)


def check_response(message: Any) -> None:
    """Assert ``message`` is a valid JSON-RPC 2.0 response object."""
    assert type(message) is dict, message
    assert message.get("jsonrpc") == "2.0", message
    assert "id" in message, message
    assert type(message["id"]) in (str, int, float, type(None)), message
    assert ("result" in message) != ("error" in message), message
    assert set(message) <= {"jsonrpc", "id", "result", "error"}, message
    if "error" in message:
        error = message["error"]
        assert type(error) is dict, message
        assert type(error.get("code")) is int, message
        assert type(error.get("message")) is str and error["message"], message
        assert set(error) <= {"code", "message", "data"}, message
        if "data" in error:
            assert type(error["data"]) is dict, message
            assert type(error["data"]["kind"]) is str, message


def check_notification(message: Any) -> None:
    assert type(message) is dict, message
    assert message.get("jsonrpc") == "2.0", message
    assert "id" not in message, message
    assert type(message.get("method")) is str, message
    assert set(message) <= {"jsonrpc", "method", "params"}, message
    if "params" in message:
        assert type(message["params"]) in (dict, list), message


def check_line(raw: bytes) -> Any:
    """One stdout line (without its ``\\n``): parsed, or AssertionError if not JSON-RPC."""
    assert b"\r" not in raw, raw[:200]
    message = orjson.loads(raw)
    if type(message) is list:
        assert message, "an empty batch reply must never be sent"
        for member in message:
            check_response(member)
    elif type(message) is dict and "method" in message:
        check_notification(message)
    else:
        check_response(message)
    return message


class SidecarError(AssertionError):
    pass


class Sidecar:
    """One sidecar process; see the module docstring."""

    _ids = itertools.count(1)

    def __init__(
        self,
        *args: str | os.PathLike[str],
        env: dict[str, str] | None = None,
        stdin: Any = subprocess.PIPE,
        preexec_fn: Any = None,
    ) -> None:
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
        self._cond = threading.Condition()
        self.lines: list[tuple[float, bytes]] = []  # (monotonic arrival time, raw line)
        self.bad_lines: list[tuple[bytes, str]] = []
        self.notifications: list[tuple[float, dict[str, Any]]] = []
        self.batches: list[list[dict[str, Any]]] = []
        self.responses: dict[tuple[str, Any], list[dict[str, Any]]] = {}
        self.order: list[Any] = []  # ids of single responses, in arrival order
        self.stdout_closed = False
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
            pending += chunk
            *complete, pending = pending.split(b"\n")
            if complete:
                now = time.monotonic()
                with self._cond:
                    for raw in complete:
                        self._take(now, raw)
                    self._cond.notify_all()
        with self._cond:
            if pending:
                self.bad_lines.append((pending, "unterminated last line"))
            self.stdout_closed = True
            self._cond.notify_all()

    def _take(self, now: float, raw: bytes) -> None:
        self.lines.append((now, raw))
        try:
            message = check_line(raw)
        except (AssertionError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
            self.bad_lines.append((raw, repr(exc)))
            return
        if type(message) is list:
            self.batches.append(message)
        elif "method" in message:
            self.notifications.append((now, message))
        else:
            self.responses.setdefault(id_key(message["id"]), []).append(message)
            self.order.append(message["id"])

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

    def _wait(self, predicate: Any, timeout: float, what: str) -> None:
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

    # -- writing ------------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)

    def send(self, *messages: Any) -> None:
        self.send_raw(b"".join(line(m) for m in messages))

    def new_id(self) -> str:
        return f"~{next(self._ids)}"

    def request(self, method: str, params: dict[str, Any] | None = None) -> str:
        """Send a request with a fresh id; return the id."""
        request_id = self.new_id()
        self.send(request(method, request_id, params))
        return request_id

    def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        self.send(notification(method, params))

    # -- replies ------------------------------------------------------------------------

    def has_reply(self, request_id: Any) -> bool:
        with self._cond:
            return bool(self.responses.get(id_key(request_id)))

    def reply(self, request_id: Any, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The response to ``request_id`` (waits for it, then takes it)."""
        key = id_key(request_id)
        self._wait(lambda: self.responses.get(key), timeout, f"the reply to id {request_id!r}")
        with self._cond:
            return self.responses[key].pop(0)

    def discard(self, request_id: Any) -> None:
        """Forget replies to ``request_id`` received so far (e.g. earlier ``id: null`` errors)."""
        with self._cond:
            self.responses.pop(id_key(request_id), None)

    def call(self, method: str, params: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        """Send a request and return its whole response."""
        if kw:
            params = {**(params or {}), **kw}
        return self.reply(self.request(method, params))

    def result(self, method: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
        response = self.call(method, params, **kw)
        assert "result" in response, response
        return response["result"]

    def error(self, method: str, params: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        response = self.call(method, params, **kw)
        assert "error" in response, response
        return response["error"]  # type: ignore[no-any-return]

    def batch(self, members: Sequence[Any], timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        """Send a batch; wait for the next batch reply and return it."""
        with self._cond:
            seen = len(self.batches)
        self.send(list(members))
        self._wait(lambda: len(self.batches) > seen, timeout, "a batch reply")
        with self._cond:
            return self.batches[seen]

    def sync(self, timeout: float = TIMEOUT) -> None:
        """A ``ping`` round trip: everything sent before it has been read and applied."""
        response = self.reply(self.request("ping"), timeout)
        assert response["result"] == {"pong": True}, response

    # -- notifications ------------------------------------------------------------------

    def notes(self, method: str) -> list[dict[str, Any]]:
        with self._cond:
            return [m["params"] for _, m in self.notifications if m["method"] == method]

    def wait_notification(
        self, method: str, count: int = 1, timeout: float = TIMEOUT
    ) -> dict[str, Any]:
        """Wait until ``count`` notifications named ``method`` arrived; the last one's params."""
        self._wait(lambda: len(self.notes(method)) >= count, timeout, f"{count} x {method}")
        return self.notes(method)[count - 1]

    def wait_ready(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        params = self.wait_notification("ready", timeout=timeout)
        with self._cond:
            first = orjson.loads(self.lines[0][1])
        assert first.get("method") == "ready", "ready must be the first line"
        return params

    def wait_lines(self, count: int, timeout: float = TIMEOUT) -> None:
        self._wait(lambda: len(self.lines) >= count, timeout, f"{count} stdout lines")

    # -- the process --------------------------------------------------------------------

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

    def shutdown(self) -> int:
        """``shutdown`` and wait for the exit; the exit status."""
        assert self.call("shutdown")["result"] == {}
        self.close_stdin()
        return self.wait_exit()

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

    def assert_clean_output(self) -> None:
        with self._cond:
            bad = list(self.bad_lines)
        assert not bad, f"non-JSON-RPC lines on stdout: {bad[:5]}"


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


def dir_snapshot(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (relative name -> bytes)."""
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def write_config(path: Path, **options: Any) -> Path:
    path.write_bytes(orjson.dumps(options))
    return path


def list_all(sidecar: Sidecar, **filters: Any) -> list[dict[str, Any]]:
    """Every item ``list`` returns, following ``next`` cursors."""
    items: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 1000, **filters}
        if after is not None:
            params["after"] = after
        page = sidecar.result("list", params)
        items.extend(page["items"])
        after = page["next"]
        if after is None:
            return items


def push_lines(ids: Iterable[str], payload: Any = None) -> bytes:
    return b"".join(
        line(request("push", item_id, {"id": item_id, "payload": payload})) for item_id in ids
    )
