"""One line of JSON in, one :data:`Message` out (JSON-RPC 2.0 request validation).

Rules, in the order they are applied:

0. Only JSON whitespace (a blank line, or a lone ``\\r``): ignored.
1. Too deeply nested (I-JSON, see ``_nesting``): ``-32600``, id null.
2. Not JSON or not UTF-8: ``-32700``, id null.
3. An array is a batch: empty or over ``max_batch_members`` is one ``-32600``; otherwise
   every member is read on its own by rules 4-7 (a member that is itself an array is
   invalid).
4. Not an object, or ``id`` of the wrong type (a bool, an object, an array): ``-32600``,
   id null.
5. ``jsonrpc`` not exactly ``"2.0"``, or ``method`` not a string: ``-32600``, echoing the
   id when there is a valid one. An object without ``id`` still gets this reply (JSON-RPC
   2.0's own examples do so): it was never a valid notification.
6. ``params`` absent means ``{}``; an array (by position) is ``-32602``; any other
   non-object is ``-32600``.
7. With an ``id`` member (even ``null``) it is a :class:`Request`, else a
   :class:`Notification`. A notification's ``-32602`` is not answered.

Members other than jsonrpc/method/params/id are ignored.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from ..errors import InvalidParams
from ._errors import BatchTooLarge, InvalidRequest, NestingTooDeep, ParseError
from ._messages import Batch, Call, Message, Notification, Rejected, Request
from ._nesting import MAX_NESTING, nesting_exceeds, shortest_too_deep

__all__ = ["MessageReader"]

_ID_TYPES: Final = (str, int, float, type(None))
_ABSENT: Final = object()
_JSON_WHITESPACE: Final = b" \t\r\n"


class MessageReader:
    """Parses lines into messages; holds only its limits, no state between lines."""

    __slots__ = ("_deep_line_bytes", "max_batch_members", "max_nesting")

    def __init__(self, *, max_batch_members: int, max_nesting: int = MAX_NESTING) -> None:
        self.max_batch_members = max_batch_members
        self.max_nesting = max_nesting
        self._deep_line_bytes = shortest_too_deep(max_nesting)

    def read(self, line: bytes) -> Message | None:
        """The message on ``line``, or None for a blank line (JSON whitespace only)."""
        # Inlined first test of nesting_exceeds: short lines (nearly all) skip the call.
        if len(line) >= self._deep_line_bytes and nesting_exceeds(line, self.max_nesting):
            return Rejected(
                None,
                NestingTooDeep(
                    f"the message nests arrays/objects more than {self.max_nesting} levels "
                    "deep; flatten it",
                    limit=self.max_nesting,
                ),
            )
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            if not line.strip(_JSON_WHITESPACE):
                return None
            return Rejected(None, ParseError(f"the line is not valid JSON (UTF-8): {exc}"))
        if type(value) is dict:
            return self._read_call(value)
        if type(value) is list:
            return self._read_batch(value)
        return Rejected(
            None, InvalidRequest("a request must be a JSON object, or an array for a batch")
        )

    def _read_batch(self, members: list[Any]) -> Message:
        if not members:
            return Rejected(None, InvalidRequest("a batch must not be empty"))
        if len(members) > self.max_batch_members:
            return Rejected(
                None,
                BatchTooLarge(
                    f"a batch may hold at most {self.max_batch_members} requests, this one "
                    f"has {len(members)}; split it",
                    limit=self.max_batch_members,
                ),
            )
        return Batch(
            tuple(
                self._read_call(m)
                if type(m) is dict
                else Rejected(None, InvalidRequest("a batch member must be a JSON object"))
                for m in members
            )
        )

    def _read_call(self, obj: dict[str, Any]) -> Call:
        # Fast path: a well-formed call costs four lookups and three type tests.
        method = obj.get("method")
        params = obj.get("params", _ABSENT)
        if params is _ABSENT:
            params = {}
        if obj.get("jsonrpc") == "2.0" and type(method) is str and type(params) is dict:
            request_id = obj.get("id", _ABSENT)
            if request_id is _ABSENT:
                return Notification(method, params)
            if type(request_id) in _ID_TYPES:
                return Request(request_id, method, params)
        return _reject_call(obj)


def _reject_call(obj: dict[str, Any]) -> Rejected:
    """Why ``obj`` is not a valid call, as the reply rules 4-6 of this module give it."""
    request_id: Any = obj.get("id", _ABSENT)
    is_request = request_id is not _ABSENT
    if not is_request:
        request_id = None
    elif type(request_id) not in _ID_TYPES:
        return Rejected(None, InvalidRequest('"id" must be a string, a number or null'))
    if obj.get("jsonrpc") != "2.0":
        return Rejected(request_id, InvalidRequest('"jsonrpc" must be exactly "2.0"'))
    method = obj.get("method")
    if type(method) is not str:
        return Rejected(request_id, InvalidRequest('"method" must be a string'))
    if type(obj.get("params")) is list:
        return Rejected(
            request_id,
            InvalidParams(
                f'{method}: "params" must be an object (by name), not an array (by position)'
            ),
            reply=is_request,
        )
    return Rejected(request_id, InvalidRequest('"params" must be an object'))
