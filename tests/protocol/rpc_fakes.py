"""A fake method table for testing the protocol and the server without the queue.

Methods: ``ping``; ``echo`` (returns its params); ``raise`` (``{"kind"}``: a QueueError of
that class, or ``"bug"`` for a RuntimeError); ``print`` (a stray print to stdout);
``push`` (``{"item", "delayMs"?}``) and ``pop`` (``{"timeoutMs"?}``), a toy FIFO with long
polls; ``notify`` (``{"method", "params"}``: a server notification); ``state`` (what the
fake saw: commits, ticks, calls).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from sync_queue import errors
from sync_queue.protocol import (
    ANY,
    CallInfo,
    Dispatcher,
    MethodNotFound,
    Param,
    ServerLink,
    Waiting,
    check_params,
)

POP = {"timeoutMs": Param(int, minimum=0)}
PUSH = {"item": Param(ANY, required=True), "delayMs": Param(int, minimum=0)}


class FakeDispatcher(Dispatcher):
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.link: ServerLink | None = None
        self.items: deque[Any] = deque()
        self.delayed: list[tuple[float, Any]] = []
        self.waiters: deque[Waiting] = deque()
        self.record_calls = False
        self.calls: list[tuple[str, CallInfo]] = []
        self.commits = 0
        self.ticks = 0
        self.closed = False
        self.fail_next_commit = False
        self.close_sleep = 0.0
        self.ready_params: dict[str, Any] | None = None

    def attach(self, link: ServerLink) -> None:
        self.link = link
        if self.ready_params is not None:
            link.notify("ready", self.ready_params)

    def handle(self, method: str, params: dict[str, Any], call: CallInfo) -> Any:
        if self.record_calls:
            self.calls.append((method, call))
        if method == "ping":  # the benchmark's method: keep it as cheap as the real one
            if params:
                check_params("ping", params, {})
            return {"pong": True}
        handler = getattr(self, "rpc_" + method, None)
        if handler is None:
            raise MethodNotFound(f"no method named {method!r}", method=method)
        return handler(params, call)

    def rpc_echo(self, params: dict[str, Any], call: CallInfo) -> Any:
        return params

    def rpc_raise(self, params: dict[str, Any], call: CallInfo) -> Any:
        kind = params.get("kind")
        if kind == "bug":
            raise RuntimeError("a bug with a secret detail")
        raise getattr(errors, str(kind))(f"fake {kind}", detail=1)

    def rpc_print(self, params: dict[str, Any], call: CallInfo) -> Any:
        print("a stray print that must not reach the protocol stream")
        return {}

    def rpc_notify(self, params: dict[str, Any], call: CallInfo) -> Any:
        assert self.link is not None
        self.link.notify(params["method"], params.get("params", {}))
        return {}

    def rpc_state(self, params: dict[str, Any], call: CallInfo) -> Any:
        return {"commits": self.commits, "ticks": self.ticks, "items": len(self.items)}

    def rpc_push(self, params: dict[str, Any], call: CallInfo) -> Any:
        check_params("push", params, PUSH)
        delay = params.get("delayMs", 0)
        if delay:
            self.delayed.append((self.clock() + delay / 1000, params["item"]))
        else:
            self.items.append(params["item"])
            self.serve_waiters()
        return {}

    def rpc_pop(self, params: dict[str, Any], call: CallInfo) -> Any:
        check_params("pop", params, POP)
        if call.is_notification:
            return None  # nothing is handed out that nobody would receive
        if self.items and not self.waiters:
            return self.items.popleft()
        timeout_ms = 0 if call.in_batch else params.get("timeoutMs", 0)
        if timeout_ms <= 0:
            return None
        waiting = Waiting(empty=None, timeout=timeout_ms / 1000)
        self.waiters.append(waiting)
        return waiting

    def serve_waiters(self) -> None:
        while self.items and self.waiters:
            waiting = self.waiters.popleft()
            if not waiting.done:
                waiting.resolve(self.items.popleft())

    def tick(self) -> float | None:
        self.ticks += 1
        now = self.clock()
        due = [entry for entry in self.delayed if entry[0] <= now]
        if due:
            self.delayed = [entry for entry in self.delayed if entry[0] > now]
            self.items.extend(item for _, item in sorted(due, key=lambda e: e[0]))
            self.serve_waiters()
        if not self.delayed:
            return None
        return max(min(when for when, _ in self.delayed) - now, 0.0)

    def commit(self) -> None:
        self.commits += 1
        if self.fail_next_commit:
            self.fail_next_commit = False
            raise errors.PersistenceError("fake fsync failed")

    def close(self) -> None:
        if self.close_sleep:
            time.sleep(self.close_sleep)
        self.closed = True
