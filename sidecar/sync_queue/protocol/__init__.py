"""JSON-RPC 2.0 over NDJSON, sans-IO: no networking, no asyncio, no files.

The pipeline, one module per step::

    bytes -> _framing (lines, size cap) -> _nesting + _reader (messages) -> _session
          (calls applied through a Dispatcher, group commit) -> _writer -> bytes

``sync_queue.server`` does the I/O around :class:`RpcSession`. The method table implements
:class:`Dispatcher` and uses :func:`check_params` for its params.
"""

from ._dispatch import (
    BATCH_CALL,
    BATCH_NOTIFICATION,
    NOTIFICATION,
    PLAIN_CALL,
    CallInfo,
    Dispatcher,
    ServerLink,
    Waiting,
)
from ._errors import (
    BatchTooLarge,
    InvalidRequest,
    MessageTooLarge,
    MethodNotFound,
    NestingTooDeep,
    ParseError,
    error_object,
)
from ._framing import OVERSIZED, LineFramer
from ._messages import Batch, Id, Message, Notification, Rejected, Request
from ._nesting import MAX_NESTING, nesting_exceeds
from ._params import ANY, Param, check_params
from ._reader import MessageReader
from ._session import DEFAULT_MAX_BATCH_MEMBERS, DEFAULT_MAX_MESSAGE_BYTES, RpcSession
from ._writer import (
    encode_batch,
    encode_notification,
    encode_output,
    encode_reply,
    error_reply,
    notification,
    result_reply,
)

__all__ = [
    "ANY",
    "BATCH_CALL",
    "BATCH_NOTIFICATION",
    "DEFAULT_MAX_BATCH_MEMBERS",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "MAX_NESTING",
    "NOTIFICATION",
    "OVERSIZED",
    "PLAIN_CALL",
    "Batch",
    "BatchTooLarge",
    "CallInfo",
    "Dispatcher",
    "Id",
    "InvalidRequest",
    "LineFramer",
    "Message",
    "MessageReader",
    "MessageTooLarge",
    "MethodNotFound",
    "NestingTooDeep",
    "Notification",
    "Param",
    "ParseError",
    "Rejected",
    "Request",
    "RpcSession",
    "ServerLink",
    "Waiting",
    "check_params",
    "encode_batch",
    "encode_notification",
    "encode_output",
    "encode_reply",
    "error_object",
    "error_reply",
    "nesting_exceeds",
    "notification",
    "result_reply",
]
