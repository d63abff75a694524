"""The seam between the JSON-RPC layers and the method table: what each side offers.

The server drives a :class:`Dispatcher` (the method table, written against the queue) and
hands it a :class:`ServerLink` (how the dispatcher talks back). Everything runs on one
thread, the server's event loop, except :meth:`ServerLink.wake`.

One *cycle* of the server: apply every message read (``handle`` per call, in order), run
``tick``, then ``commit`` once, then write every reply and notification of the cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from ._messages import Id

__all__ = [
    "BATCH_CALL",
    "BATCH_NOTIFICATION",
    "NOTIFICATION",
    "PLAIN_CALL",
    "CallInfo",
    "Dispatcher",
    "ServerLink",
    "Waiting",
]


@dataclass(frozen=True, slots=True)
class CallInfo:
    """How a call arrived, for the rules that depend on it (docs/protocol.md §7).

    ``in_batch``: its reply waits for the whole batch, so a long poll must not wait
    (treat ``timeoutMs`` as 0). ``is_notification``: nobody will see the result, so a
    ``pop`` must hand out nothing.
    """

    in_batch: bool
    is_notification: bool


# The four shapes, allocated once: the server passes these, never new objects.
PLAIN_CALL: Final = CallInfo(in_batch=False, is_notification=False)
NOTIFICATION: Final = CallInfo(in_batch=False, is_notification=True)
BATCH_CALL: Final = CallInfo(in_batch=True, is_notification=False)
BATCH_NOTIFICATION: Final = CallInfo(in_batch=True, is_notification=True)


_Answer = Callable[[Id, Any, "BaseException | None"], None]


class Waiting:
    """A reply the dispatcher gives later: what ``handle`` returns for a long poll.

    The dispatcher keeps it in its own FIFO of waiters and, when an item becomes ready
    (in ``handle`` of a push, or in ``tick``), calls :meth:`resolve` on the oldest one
    that is not :attr:`done`. The server answers it with ``empty`` by itself when
    ``timeout`` seconds have passed or the server shuts down, so the dispatcher must
    check :attr:`done` (or the return value of :meth:`resolve`) and never hand an item to
    a waiter that is already answered. Waiters are answered in the order ``resolve`` is
    called, so FIFO resolution gives "waiting pops are served in the order read".

    ``expired``: when set, the server answers with this error instead of ``empty`` on
    timeout or shutdown (for a call whose empty answer would claim something that did
    not happen, such as a ``flush``).

    Only call it from the server's thread (inside ``handle``/``tick``, or an asyncio task
    on the server's loop).
    """

    __slots__ = ("_answer", "_done", "_error", "_id", "_result", "empty", "expired", "timeout")

    def __init__(self, *, empty: Any, timeout: float, expired: BaseException | None = None) -> None:
        self.empty = empty
        self.timeout = timeout
        self.expired = expired
        self._done = False
        self._result: Any = None
        self._error: BaseException | None = None
        self._answer: _Answer | None = None
        self._id: Id = None

    @property
    def done(self) -> bool:
        """True once answered (resolved, failed, timed out or ended by shutdown)."""
        return self._done

    def resolve(self, result: Any) -> bool:
        """Answer with ``result``. False (and nothing happens) if already answered."""
        return self._settle(result, None)

    def fail(self, error: BaseException) -> bool:
        """Answer with an error (a ``QueueError``). False if already answered."""
        return self._settle(None, error)

    # -- server side ------------------------------------------------------------------

    def _expire(self) -> bool:
        """The server's own answer (timeout, shutdown): ``empty``, or ``expired``."""
        if self.expired is not None:
            return self._settle(None, self.expired)
        return self._settle(self.empty, None)

    def _settle(self, result: Any, error: BaseException | None) -> bool:
        if self._done:
            return False
        self._done = True
        self._result, self._error = result, error
        if self._answer is not None:
            self._answer(self._id, result, error)
        return True

    def _bind(self, request_id: Id, answer: _Answer) -> None:
        """The server takes charge of answering ``request_id``; if the dispatcher already
        resolved it, the answer goes out now."""
        self._id, self._answer = request_id, answer
        if self._done:
            answer(request_id, self._result, self._error)

    def _take_now(self) -> tuple[Any, BaseException | None]:
        """For a call that cannot wait (in a batch, a notification): the answer it has,
        else ``empty``; either way it is done."""
        if not self._done:
            self._done = True
            self._result = self.empty
        return self._result, self._error


class ServerLink(Protocol):
    """What the server offers the dispatcher (given once, through ``Dispatcher.attach``)."""

    def notify(self, method: str, params: Any) -> None:
        """Send a notification (``ready``, ``itemsAvailable``, ...). It goes out after the
        current cycle's commit, in order with the replies around it. Server thread only."""

    def wake(self) -> None:
        """Ask for a cycle (``tick`` + ``commit`` + write) as soon as possible, e.g. after
        state changed outside ``handle``/``tick``. Safe from any thread; calls coalesce."""


class Dispatcher(Protocol):
    """The method table, as the server sees it. Subclass it to inherit the no-op hooks."""

    # Methods that change nothing. If a cycle's commit fails, their replies are not
    # failed with it: the server calls them again and sends the new answer.
    read_only_methods: frozenset[str] = frozenset()

    def attach(self, link: ServerLink) -> None:
        """Called once, before any other method: keep ``link`` to notify and wake."""

    def handle(self, method: str, params: dict[str, Any], call: CallInfo) -> Any:
        """Apply one call and return its JSON-encodable result, or a :class:`Waiting`.

        Raise ``MethodNotFound`` for an unknown method, ``InvalidParams`` (-32602) for
        params it cannot accept (see ``check_params``), any other ``QueueError`` for its
        own failures. Any other exception is a bug: it is logged and answered -32603.
        ``shutdown`` never gets here; the server handles it. Results are held until
        :meth:`commit` returns, so a change may be applied in memory and made durable
        there.
        """
        ...

    def tick(self) -> float | None:
        """Run what is due now (lease expiry, delayed items becoming due, held-back
        notifications, waiters that can now be served). Called once per cycle, so it must
        be cheap when nothing is due. Return the seconds until it next wants to run, or
        None if nothing is scheduled (a ``wake`` or new input runs it again)."""
        return None

    def commit(self) -> None:
        """Make everything applied since the last commit durable (one fsync for the whole
        cycle). Called once per cycle, before any of its replies are written; cheap when
        nothing changed. If it raises a ``QueueError`` (``PersistenceError``), every
        successful reply of the cycle is replaced by that error, except those of
        ``read_only_methods``, which are handled again; error replies and notifications go
        out unchanged."""
        return None

    def close(self) -> None:
        """The server is stopping: every reply is committed; persist and release
        everything. Waiting calls were already answered with their ``empty``."""
        return None
