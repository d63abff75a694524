"""Replies and notifications out: one compact JSON text per line, ``\\n``-terminated.

Both encoders escape control characters inside strings, so a line never holds a raw
newline. orjson does the work; the standard library is the fallback for what orjson
refuses but JSON allows, chiefly nesting deeper than orjson's 254 levels (the contract
accepts payloads up to 512). A reply neither can encode becomes a ``-32603`` for its id,
so the client is never left waiting.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Final

import orjson

from ._errors import INTERNAL_ERROR_MESSAGE
from ._messages import Id

__all__ = [
    "encode_batch",
    "encode_notification",
    "encode_output",
    "encode_reply",
    "error_reply",
    "notification",
    "result_reply",
]

log = logging.getLogger("sync_queue.protocol")

_NEWLINE: Final = orjson.OPT_APPEND_NEWLINE


def result_reply(request_id: Id, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def error_reply(request_id: Id, error: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def notification(method: str, params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}


def encode_output(messages: list[dict[str, Any] | list[dict[str, Any]]]) -> bytes:
    """Replies, notifications and batches (lists of replies) as lines, in order."""
    try:
        # Fast path: one C call per line, no per-message Python function.
        return b"".join([orjson.dumps(message, option=_NEWLINE) for message in messages])
    except orjson.JSONEncodeError:
        pass
    lines = []
    for message in messages:
        if isinstance(message, list):
            lines.append(encode_batch(message))
        elif "method" in message:
            lines.append(encode_notification(message["method"], message["params"]))
        else:
            lines.append(encode_reply(message))
    return b"".join(lines)


def encode_reply(reply: dict[str, Any]) -> bytes:
    """One response object as one line."""
    try:
        return orjson.dumps(reply, option=_NEWLINE)
    except orjson.JSONEncodeError:
        return _encode_slow(reply) or _unencodable(reply) + b"\n"


def encode_batch(replies: list[dict[str, Any]]) -> bytes:
    """A batch's responses as one JSON array line; no members means no line at all."""
    if not replies:
        return b""
    try:
        return orjson.dumps(replies, option=_NEWLINE)
    except orjson.JSONEncodeError:
        # Find the member(s) at fault rather than fail the whole batch.
        parts = [encode_reply(reply)[:-1] for reply in replies]
        return b"[" + b",".join(parts) + b"]\n"


def encode_notification(method: str, params: Any) -> bytes:
    """A server-to-client notification line, or b"" (logged) if params cannot be encoded."""
    message = notification(method, params)
    try:
        return orjson.dumps(message, option=_NEWLINE)
    except orjson.JSONEncodeError:
        line = _encode_slow(message)
        if not line:
            log.error("dropped notification %r: its params are not JSON-encodable", method)
        return line


def _encode_slow(message: dict[str, Any]) -> bytes:
    try:
        text = json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return text.encode("utf-8") + b"\n"
    except (TypeError, ValueError, RecursionError) as exc:  # UnicodeError is a ValueError
        log.error("cannot encode a message as JSON: %s", exc)
        return b""


def _unencodable(reply: dict[str, Any]) -> bytes:
    error = {"code": -32603, "message": INTERNAL_ERROR_MESSAGE, "data": {"kind": "InternalError"}}
    return orjson.dumps({"jsonrpc": "2.0", "id": reply.get("id"), "error": error})
