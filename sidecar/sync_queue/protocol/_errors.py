"""Wire-level errors, and the one place any exception becomes a JSON-RPC error object.

The queue's own errors live in ``sync_queue.errors``; the few added here are the ones only
the protocol layer raises (bad JSON, bad request shape, limits) plus ``MethodNotFound``,
which the dispatcher raises for a name it does not know. They subclass ``QueueError`` so
that :func:`error_object` treats every error the same way: ``code`` from the class,
``data.kind`` = the class name.
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import QueueError

__all__ = [
    "BatchTooLarge",
    "InvalidRequest",
    "MessageTooLarge",
    "MethodNotFound",
    "NestingTooDeep",
    "ParseError",
    "error_object",
]

log = logging.getLogger("sync_queue.protocol")


class ParseError(QueueError):
    """The line is not JSON (or not UTF-8)."""

    code = -32700


class InvalidRequest(QueueError):
    """The JSON is not a valid JSON-RPC 2.0 request."""

    code = -32600


class MessageTooLarge(InvalidRequest):
    """A line is longer than ``max_message_bytes``."""


class NestingTooDeep(InvalidRequest):
    """A message nests arrays/objects deeper than the I-JSON limit of the contract."""


class BatchTooLarge(InvalidRequest):
    """A batch has more members than ``max_batch_members``."""


class MethodNotFound(QueueError):
    """The dispatcher has no method by that name."""

    code = -32601


# What a client sees for a bug: nothing about our internals; the traceback goes to the log.
INTERNAL_ERROR_MESSAGE = (
    "internal error: the sidecar hit an unexpected problem; its log (stderr) has the details"
)


def error_object(exc: BaseException) -> dict[str, Any]:
    """Turn any exception into a JSON-RPC error object ``{code, message, data}``.

    A :class:`QueueError` keeps its code and message and becomes
    ``data = {"kind": <class name>, **exc.data}``. Anything else is a bug: it is logged with
    its traceback and the client gets a generic ``-32603``.
    """
    if isinstance(exc, QueueError):
        return {
            "code": exc.code,
            "message": exc.message,
            # kind last: it is the class name whatever the data says
            "data": {**exc.data, "kind": exc.kind},
        }
    log.error("unexpected error while serving a request", exc_info=exc)
    return {"code": -32603, "message": INTERNAL_ERROR_MESSAGE, "data": {"kind": "InternalError"}}
