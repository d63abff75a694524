"""Shared helpers for the protocol tests: build request lines, check reply lines."""

from __future__ import annotations

from typing import Any

import orjson

from sync_queue.protocol import RpcSession

from .rpc_fakes import FakeDispatcher


def line(message: Any) -> bytes:
    return orjson.dumps(message) + b"\n"


def request(method: str, request_id: Any = 1, /, **params: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params:
        message["params"] = params
    return message


def notification(method: str, /, **params: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params:
        message["params"] = params
    return message


def check_response(message: Any) -> None:
    """Assert ``message`` is a valid JSON-RPC 2.0 response object."""
    assert type(message) is dict, message
    assert message["jsonrpc"] == "2.0"
    assert "id" in message
    assert type(message["id"]) in (str, int, float, type(None))
    assert ("result" in message) != ("error" in message), message
    assert set(message) <= {"jsonrpc", "id", "result", "error"}, message
    if "error" in message:
        error = message["error"]
        assert type(error["code"]) is int
        assert type(error["message"]) is str and error["message"]
        assert set(error) <= {"code", "message", "data"}
        assert type(error["data"]["kind"]) is str


def check_output(data: bytes) -> list[Any]:
    """Assert ``data`` is whole protocol lines only; return them parsed."""
    assert data == b"" or data.endswith(b"\n"), data[-200:]
    parsed = []
    for raw in data.split(b"\n")[:-1]:
        assert b"\r" not in raw  # JSON encoders escape control characters
        message = orjson.loads(raw)
        if type(message) is list:
            assert message, "an empty batch reply must not be sent"
            for member in message:
                check_response(member)
        elif "method" in message:
            assert message["jsonrpc"] == "2.0" and "id" not in message
            assert type(message["method"]) is str
        else:
            check_response(message)
        parsed.append(message)
    return parsed


class SessionHarness:
    """A session around a fake dispatcher, a hand-driven clock and a wake counter."""

    def __init__(self, **limits: Any) -> None:
        self.now = 1000.0
        self.wakes = 0
        self.dispatcher = FakeDispatcher(clock=lambda: self.now)
        self.dispatcher.record_calls = True
        self.session = RpcSession(
            self.dispatcher, clock=lambda: self.now, on_wake=self._wake, **limits
        )

    def _wake(self) -> None:
        self.wakes += 1

    def cycle(self, data: bytes = b"") -> list[Any]:
        """One server cycle; the parsed output lines."""
        if data:
            self.session.receive(data)
        self.session.service()
        return check_output(self.session.commit_and_render())

    def send(self, *messages: Any) -> list[Any]:
        return self.cycle(b"".join(line(m) for m in messages))
