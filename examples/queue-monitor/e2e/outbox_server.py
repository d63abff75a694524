"""A real HTTP server for the HTTP outbox test: what a cooperating backend does.

It keeps the server side of the outbox's contract (README.md, "Sync to your server"): the
``Idempotency-Key`` of a request is stored together with the effect's result, under one
lock, so a replay of a key gets the stored result and applies nothing again. It records
every effect and every request, so the test can assert on what the server saw: each item
applied exactly once, each partition key's items in their order.

Paths: ``/items`` applies its JSON body (201); ``/reject`` answers 400 (a request the
server will never accept); ``/auth`` answers 401 unless ``Authorization`` is the token
the test set. It can be stopped (the port is closed: connection refused) and started
again on the same port, as an outage would.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Effect:
    key: str  # the Idempotency-Key: the item's id
    path: str
    body: Any


@dataclass
class Ledger:
    """What the server did, shared by every (re)start of the server."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    effects: list[Effect] = field(default_factory=list)
    results: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, key)
    replays: int = 0
    token: str = "Bearer good"

    def applied(self, path: str = "/items") -> list[Effect]:
        with self.lock:
            return [e for e in self.effects if e.path == path]

    def requests_to(self, path: str) -> int:
        with self.lock:
            return sum(1 for p, _ in self.requests if p == path)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so that stopping the server really closes
    # every way in (a kept-alive connection would outlive the listening socket).
    protocol_version = "HTTP/1.0"
    server: _Server

    def do_POST(self) -> None:  # the name http.server dispatches to
        ledger = self.server.ledger
        key = self.headers.get("Idempotency-Key")
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with ledger.lock:
            ledger.requests.append((self.path, key))
        if self.path == "/reject":
            return self._answer(400, b'{"error": "this request is invalid and always will be"}')
        if self.path == "/auth" and self.headers.get("Authorization") != ledger.token:
            return self._answer(401, b'{"error": "who are you?"}')
        if self.path not in ("/items", "/auth") or not key:
            return self._answer(404 if key else 400, b'{"error": "no such thing"}')
        with ledger.lock:  # check, apply and store the result: one atomic step
            stored = ledger.results.get(key)
            if stored is None:
                ledger.effects.append(Effect(key, self.path, json.loads(raw or b"null")))
                stored = json.dumps({"applied": len(ledger.effects)}).encode()
                ledger.results[key] = stored
            else:
                ledger.replays += 1
        self._answer(201, stored)

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the ledger is the record


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, ledger: Ledger) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.ledger = ledger


class OutboxServer:
    """Start on a free port; ``stop()`` closes the port; ``start()`` reopens the same one."""

    def __init__(self) -> None:
        self.ledger = Ledger()
        self.port = 0
        self._server: _Server | None = None
        self.start()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self._server is None, "already running"
        server = _Server(self.port, self.ledger)
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, name="outbox-server", daemon=True).start()
        self._server = server

    def stop(self) -> None:
        assert self._server is not None, "not running"
        self._server.shutdown()  # the accept loop ends...
        self._server.server_close()  # ...and the port is closed: connection refused
        self._server = None
