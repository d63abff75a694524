"""The client side of the end-to-end tests, whatever runs the sidecar.

:class:`Sidecar` is what a test talks to: it sends newline-delimited JSON-RPC bytes, checks
that every line that comes back is a valid JSON-RPC 2.0 response, batch reply or notification
(:func:`check_line`), and routes it: responses by id, batch replies and notifications to
their lists. ``bad_lines`` collects whatever was not a protocol line; the fixtures assert it
is empty at teardown. Two kinds implement the transport: ``harness.SidecarProcess`` (a real
process: from source or the frozen binary) and ``inprocess.InProcessSidecar`` (the same
session, method table and queue in the test's own process, on a clock that can skip ahead).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0


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
    """A sidecar as the tests see it: the client half, shared by every transport.

    A subclass provides the transport: ``send_raw`` (bytes to the sidecar), ``_wait``
    (let the sidecar run until a predicate holds), ``advance`` and ``monotonic`` (time as the
    sidecar sees it), ``close_stdin``, ``wait_exit``, ``kill`` and ``stderr``.
    """

    _ids = itertools.count(1)

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.lines: list[tuple[float, bytes]] = []  # (arrival time on monotonic(), raw line)
        self.bad_lines: list[tuple[bytes, str]] = []
        self.notifications: list[tuple[float, dict[str, Any]]] = []
        self.batches: list[list[dict[str, Any]]] = []
        self.responses: dict[tuple[str, Any], list[dict[str, Any]]] = {}
        self.order: list[Any] = []  # ids of single responses, in arrival order
        self.stdout_closed = False

    # -- the transport (subclasses) -------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        raise NotImplementedError

    def _wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> None:
        raise NotImplementedError

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass for the sidecar (a sleep, or a skip of its clock)."""
        raise NotImplementedError

    def monotonic(self) -> float:
        """Now, on the clock ``lines`` and ``notifications`` are stamped with (seconds)."""
        raise NotImplementedError

    def wall_ms(self) -> int:
        """The wall clock the sidecar reads, in ms since the epoch (as item times are)."""
        return time.time_ns() // 1_000_000

    @property
    def running(self) -> bool:
        """Still serving (a process: not exited)."""
        raise NotImplementedError

    def close_stdin(self) -> None:
        raise NotImplementedError

    def wait_exit(self, timeout: float = TIMEOUT) -> int:
        raise NotImplementedError

    def kill(self) -> None:
        raise NotImplementedError

    @property
    def stderr(self) -> str:
        raise NotImplementedError

    # -- reading --------------------------------------------------------------------------

    def _take_lines(self, now: float, complete: Iterable[bytes]) -> None:
        with self._cond:
            for raw in complete:
                self._take(now, raw)
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

    def _output_ended(self, unterminated: bytes) -> None:
        with self._cond:
            if unterminated:
                self.bad_lines.append((unterminated, "unterminated last line"))
            self.stdout_closed = True
            self._cond.notify_all()

    # -- writing --------------------------------------------------------------------------

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

    # -- replies --------------------------------------------------------------------------

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

    def shutdown(self) -> int:
        """``shutdown`` and wait for the exit; the exit status."""
        assert self.call("shutdown")["result"] == {}
        self.close_stdin()
        return self.wait_exit()

    # -- notifications --------------------------------------------------------------------

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

    def assert_clean_output(self) -> None:
        with self._cond:
            bad = list(self.bad_lines)
        assert not bad, f"non-JSON-RPC lines on stdout: {bad[:5]}"


def split_lines(pending: bytes, chunk: bytes) -> tuple[list[bytes], bytes]:
    """``pending + chunk`` cut at newlines: the complete lines and what is left over."""
    *complete, rest = (pending + chunk).split(b"\n")
    return complete, rest


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
