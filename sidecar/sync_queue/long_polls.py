"""Long polls: ``pop``/``popBatch`` calls with ``timeoutMs`` that wait in the sidecar.

Waiting pops are served in the order they were read (FIFO): each time the queue may have an
item ready (after a call, on a tick) the oldest waiters get items first. The server answers a
waiter with its empty result when its time is up (``protocol.Waiting``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from .engine import Engine
from .errors import PersistenceError
from .protocol import CallInfo, Waiting

__all__ = ["LongPolls"]


@dataclass
class _Waiter:
    waiting: Waiting
    n: int | None  # None: a single pop (answered with an item or null)
    lease_ms: int | None
    partition: int | None
    skip: frozenset[str] | None  # None: a plain pop; else a destination pop's "except"


class LongPolls:
    """The waiting pops of one dispatcher, oldest first."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._waiters: deque[_Waiter] = deque()

    def __bool__(self) -> bool:
        return bool(self._waiters)

    def waiting_like(self, skip: frozenset[str] | None) -> bool:
        """Does a pop of this kind (plain, or for destinations) already wait? Then a new one
        waits behind it: older waiting pops are served first."""
        plain = skip is None
        return any((w.skip is None) == plain for w in self._waiters if not w.waiting.done)

    def serve(self) -> None:
        """Hand ready items to waiting pops, oldest first (plain pops and destination pops
        draw from different items, so each kind is served in its own order)."""
        engine, core = self._engine, self._engine.core
        waiters = self._waiters
        exhausted: set[bool] = set()  # kinds (plain?) with nothing ready left
        for waiter in list(waiters):
            if waiter.waiting.done:
                waiters.remove(waiter)
                continue
            plain = waiter.skip is None
            if plain in exhausted:
                continue
            engine.before_read()
            now = engine.begin_read()
            ready = core.ready_count(now) if plain else core.destination_ready_count(now)
            if not ready:
                exhausted.add(plain)
                continue
            try:
                items = core.pop_wire(
                    engine.begin_change(),
                    waiter.n or 1,
                    waiter.lease_ms,
                    waiter.partition,
                    waiter.skip,
                )
            except PersistenceError as exc:
                # Fail-stopped: no pop succeeds again. Answer the waiters with that, not
                # the call that is serving them (a read must still be answered).
                for other in waiters:
                    other.waiting.fail(exc)
                waiters.clear()
                return
            if not items:
                continue  # e.g. nothing ready in its partition: later waiters may be served
            waiters.remove(waiter)
            waiter.waiting.resolve(items if waiter.n is not None else items[0])

    def wait(
        self,
        call: CallInfo,
        timeout_ms: int,
        n: int | None,
        lease_ms: int | None,
        partition: int | None,
        skip: frozenset[str] | None = None,
    ) -> Any:
        """A ``Waiting`` for this pop, or its empty result if it cannot wait (in a batch,
        or no timeout)."""
        empty: Any = [] if n is not None else None
        if call.in_batch or not timeout_ms:
            return empty
        waiting = Waiting(empty=empty, timeout=timeout_ms / 1000)
        self._waiters.append(_Waiter(waiting, n, lease_ms, partition, skip))
        return waiting
