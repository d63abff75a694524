"""The JSON-RPC session: bytes in, calls applied through a dispatcher, reply bytes out.

Still sans-IO: the caller (``sync_queue.server``) reads, writes and keeps time; the
session decides what every byte means. One server *cycle* is::

    session.receive(chunk)            # or receive_eof(); apply everything complete, in order
    session.service()                 # waiter timeouts, then dispatcher.tick()
    out = session.commit_and_render() # dispatcher.commit() once, then all output as bytes

Rules:

1. Nothing is written before the commit that follows it (reply after commit).
2. Output leaves in the order it was produced: replies in the order their calls were
   applied, notifications where they were sent, and a waiting call's reply when it is
   answered (so a waiter served by a ``push`` goes out just before that push's reply).
3. A batch's replies leave together, as one array, once every member is answered; inside
   a batch nothing waits (a :class:`Waiting` is answered at once with what it has).
4. ``shutdown`` is the session's own method: it answers ``{}``, answers every waiting
   call with its empty result, and from then on every request gets ``ShuttingDown``.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from ..errors import ShuttingDown
from ._dispatch import (
    BATCH_CALL,
    BATCH_NOTIFICATION,
    NOTIFICATION,
    PLAIN_CALL,
    CallInfo,
    Dispatcher,
    Waiting,
)
from ._errors import MessageTooLarge, error_object
from ._framing import OVERSIZED, LineFramer, Oversized
from ._messages import Batch, Id, Message, Notification, Rejected, Request
from ._params import check_params
from ._reader import MessageReader
from ._writer import encode_output, error_reply, notification, result_reply

__all__ = ["DEFAULT_MAX_BATCH_MEMBERS", "DEFAULT_MAX_MESSAGE_BYTES", "RpcSession"]

DEFAULT_MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024
DEFAULT_MAX_BATCH_MEMBERS: Final = 10_000
_TICK_RETRY_SECONDS: Final = 1.0

log = logging.getLogger("sync_queue.protocol")

# An entry of the output of a cycle: a reply or a notification, or a batch's replies.
_Output = dict[str, Any] | list[dict[str, Any]]


class RpcSession:
    """One client's JSON-RPC conversation with a dispatcher."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_batch_members: int = DEFAULT_MAX_BATCH_MEMBERS,
        clock: Callable[[], float] = time.monotonic,
        on_wake: Callable[[], None] | None = None,
    ) -> None:
        self._dispatcher = dispatcher
        self._handle = dispatcher.handle
        self._framer = LineFramer(max_message_bytes)
        self._reader = MessageReader(max_batch_members=max_batch_members)
        self._max_message_bytes = max_message_bytes
        self._clock = clock
        self._on_wake = on_wake
        self._output: list[_Output] = []
        # Successful replies of read-only calls this cycle, with their calls: if the commit
        # fails they are answered again, from the state the failure leaves (see
        # ``Dispatcher.read_only_methods``).
        self._read_only: frozenset[str] = getattr(dispatcher, "read_only_methods", frozenset())
        self._reads: list[tuple[dict[str, Any], str, dict[str, Any], CallInfo]] = []
        # Waiting calls by deadline: (deadline, tie-breaker, waiting); answered ones are
        # dropped lazily when they reach the top.
        self._deadlines: list[tuple[float, int, Waiting]] = []
        self._sequence = itertools.count()
        self._answered_in_heap = 0
        self._next_tick: float | None = None
        # True while the session itself is running dispatcher code, so an answer or a
        # notification produced there needs no wake-up: the cycle will write it.
        self._busy = False
        self.stopping = False
        dispatcher.attach(self)

    # -- ServerLink: what the dispatcher may call --------------------------------------

    def notify(self, method: str, params: Any) -> None:
        self._output.append(notification(method, params))
        if not self._busy:
            self.wake()

    def wake(self) -> None:
        if self._on_wake is not None:
            self._on_wake()

    # -- one cycle -----------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Apply every complete message in ``data`` (plus what was buffered), in order."""
        self._apply_lines(self._framer.feed(data))

    def receive_eof(self) -> None:
        """The input ended: apply a last line that had no ``\\n``."""
        self._apply_lines(self._framer.feed_eof())

    def service(self) -> None:
        """Answer waiting calls whose time is up, then let the dispatcher run its timers."""
        now = self._clock()
        self._compact_deadlines()
        deadlines = self._deadlines
        self._busy = True
        try:
            while deadlines and (deadlines[0][2].done or deadlines[0][0] <= now):
                waiting = heapq.heappop(deadlines)[2]
                waiting._expire()
            # The delay is counted from the dispatcher's own clock read, inside tick(): read
            # ours right before it, so the deadline does not drift by the time spent above.
            tick_base = self._clock()
            try:
                delay = self._dispatcher.tick()
            except Exception:
                # A bug in a timer must not stop the replies; try again a little later.
                log.exception("the dispatcher's tick failed")
                delay = _TICK_RETRY_SECONDS
        finally:
            self._busy = False
        self._next_tick = None if delay is None else tick_base + max(delay, 0.0)

    def commit_and_render(self) -> bytes:
        """Commit once, then return everything the cycle produced, ready to write."""
        self._busy = True
        try:
            self._dispatcher.commit()
        except Exception as exc:
            self._fail_results(error_object(exc))
        finally:
            self._busy = False
        return self.render()

    def render(self) -> bytes:
        """Everything produced so far, as bytes, without a commit: for output that must
        not wait for one (after the final ``close()``)."""
        output, self._output = self._output, []
        self._reads.clear()
        return encode_output(output)

    def next_deadline(self) -> float | None:
        """When (on ``clock``) the next cycle is due if no input arrives, or None."""
        deadlines = self._deadlines
        while deadlines and deadlines[0][2].done:
            heapq.heappop(deadlines)
        first = deadlines[0][0] if deadlines else None
        if first is None or (self._next_tick is not None and self._next_tick < first):
            return self._next_tick
        return first

    @property
    def waiting_count(self) -> int:
        """Calls still waiting for an answer."""
        return sum(1 for entry in self._deadlines if not entry[2].done)

    def stop(self, *, answer_waiting: bool = True) -> None:
        """Stop taking work: answer every waiting call now (or, with ``answer_waiting``
        False, drop them unanswered: nobody is there to read the answer); later requests get
        ``ShuttingDown``. Idempotent."""
        self.stopping = True
        self._busy = True
        try:
            # Read order, not deadline order: the sequence number is the read order.
            for _, _, waiting in sorted(self._deadlines, key=lambda entry: entry[1]):
                if answer_waiting:
                    waiting._expire()
        finally:
            self._busy = False
        self._deadlines.clear()

    # -- applying messages -----------------------------------------------------------

    def _apply_lines(self, lines: list[bytes | Oversized]) -> None:
        read = self._reader.read
        handle = self._handle
        output = self._output
        self._busy = True
        try:
            for line in lines:
                message = self._oversized() if line is OVERSIZED else read(line)
                # The hot path, inlined: a plain request whose method answers at once.
                if type(message) is Request and not self.stopping and message.method != "shutdown":
                    try:
                        result = handle(message.method, message.params, PLAIN_CALL)
                    except Exception as exc:
                        output.append(error_reply(message.id, error_object(exc)))
                        continue
                    if type(result) is Waiting:
                        self._wait(message.id, result)
                    else:
                        reply = {"jsonrpc": "2.0", "id": message.id, "result": result}
                        output.append(reply)
                        if message.method in self._read_only:
                            self._reads.append((reply, message.method, message.params, PLAIN_CALL))
                elif message is not None:
                    self._apply(message)
        finally:
            self._busy = False

    def _apply(self, message: Message) -> None:
        if type(message) is Request:
            reply = self._call(message.id, message.method, message.params, PLAIN_CALL)
            if reply is not None:
                self._output.append(reply)
        elif type(message) is Notification:
            self._call(None, message.method, message.params, NOTIFICATION)
        elif type(message) is Rejected:
            if message.reply:
                self._output.append(error_reply(message.id, error_object(message.error)))
        elif type(message) is Batch:
            self._apply_batch(message)

    def _apply_batch(self, batch: Batch) -> None:
        replies: list[dict[str, Any]] = []
        for member in batch.members:
            if type(member) is Request:
                reply = self._call(member.id, member.method, member.params, BATCH_CALL)
                if reply is not None:
                    replies.append(reply)
            elif type(member) is Notification:
                self._call(None, member.method, member.params, BATCH_NOTIFICATION)
            elif type(member) is Rejected and member.reply:
                replies.append(error_reply(member.id, error_object(member.error)))
        if replies:
            self._output.append(replies)

    def _call(
        self, request_id: Id, method: str, params: dict[str, Any], call: CallInfo
    ) -> dict[str, Any] | None:
        """Run one call; its reply, or None when there is none yet (waiting) or ever
        (a notification)."""
        if self.stopping:
            return None if call.is_notification else error_reply(request_id, _SHUTTING_DOWN)
        try:
            if method == "shutdown":
                result: Any = self._shutdown(params)
            else:
                result = self._handle(method, params, call)
        except Exception as exc:
            error = error_object(exc)  # logs a bug even when nobody gets the reply
            return None if call.is_notification else error_reply(request_id, error)
        if type(result) is Waiting:
            if call.in_batch or call.is_notification:
                result, failure = result._take_now()
                if failure is not None:
                    if call.is_notification:
                        return None
                    return error_reply(request_id, error_object(failure))
            else:
                self._wait(request_id, result)
                return None
        if call.is_notification:
            return None
        reply = result_reply(request_id, result)
        if method in self._read_only:
            self._reads.append((reply, method, params, call))
        return reply

    def _wait(self, request_id: Id, waiting: Waiting) -> None:
        deadline = self._clock() + max(waiting.timeout, 0.0)
        heapq.heappush(self._deadlines, (deadline, next(self._sequence), waiting))
        waiting._bind(request_id, self._answer_waiting)

    def _answer_waiting(self, request_id: Id, result: Any, error: BaseException | None) -> None:
        self._answered_in_heap += 1
        if error is None:
            self._output.append(result_reply(request_id, result))
        else:
            self._output.append(error_reply(request_id, error_object(error)))
        if not self._busy:
            self.wake()

    def _compact_deadlines(self) -> None:
        # Long polls answered early (by a push) stay in the heap until their deadline
        # comes up; with many long timeouts that is a lot of dead weight, so rebuild the
        # heap once most of it is answered.
        if self._answered_in_heap > 64 and self._answered_in_heap * 2 > len(self._deadlines):
            self._deadlines = [entry for entry in self._deadlines if not entry[2].done]
            heapq.heapify(self._deadlines)
            self._answered_in_heap = 0

    def _shutdown(self, params: dict[str, Any]) -> dict[str, Any]:
        check_params("shutdown", params, {})
        self.stop()
        return {}

    def _oversized(self) -> Rejected:
        limit = self._max_message_bytes
        return Rejected(
            None,
            MessageTooLarge(
                f"a message may be at most {limit} bytes; a longer line was discarded",
                limit=limit,
            ),
        )

    def _fail_results(self, error: dict[str, Any]) -> None:
        """The commit failed: no successful reply of this cycle may claim success. A read
        is answered again instead, from the state the failure left (which no longer shows
        the refused changes it may have seen)."""
        reads = {id(reply): (method, params, call) for reply, method, params, call in self._reads}
        for entry in list(self._output):
            replies = entry if isinstance(entry, list) else [entry]
            for reply in replies:
                if "result" not in reply:
                    continue
                read = reads.get(id(reply))
                if read is not None:
                    try:
                        reply["result"] = self._handle(*read)
                        continue
                    except Exception as exc:
                        reply["error"] = error_object(exc)
                else:
                    reply["error"] = error
                del reply["result"]


_SHUTTING_DOWN: Final = error_object(
    ShuttingDown("the sidecar is shutting down and takes no new requests")
)
