"""MessageReader: one line to one message, JSON-RPC 2.0 request validation."""

from __future__ import annotations

from typing import Any

import pytest

from sync_queue.protocol import (
    Batch,
    MessageReader,
    Notification,
    Rejected,
    Request,
)

reader = MessageReader(max_batch_members=3)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b'{"jsonrpc":"2.0","id":1,"method":"m"}', Request(1, "m", {})),
        (b'{"jsonrpc":"2.0","id":"x","method":"m","params":{"a":1}}', Request("x", "m", {"a": 1})),
        (b'{"jsonrpc":"2.0","id":null,"method":"m"}', Request(None, "m", {})),
        (b'{"jsonrpc":"2.0","id":1.5,"method":"m"}', Request(1.5, "m", {})),
        (b'{"jsonrpc":"2.0","id":-0.0,"method":"m"}', Request(-0.0, "m", {})),
        (b'{"jsonrpc":"2.0","method":"m"}', Notification("m", {})),
        (b'{"jsonrpc":"2.0","method":"m","params":{}}', Notification("m", {})),
        (b'{"method":"m","jsonrpc":"2.0","id":7,"extra":true}', Request(7, "m", {})),
        (b'{"jsonrpc":"2.0","id":1,"method":"m"}\r', Request(1, "m", {})),
        (b"  \t\r", None),
    ],
)
def test_MessageReader_reads_valid_calls(text: bytes, expected: Any) -> None:
    assert reader.read(text) == expected


@pytest.mark.parametrize(
    ("text", "code", "kind", "reply_id", "reply"),
    [
        (b"{", -32700, "ParseError", None, True),
        (b"nonsense", -32700, "ParseError", None, True),
        (b'{"jsonrpc":"2.0","id":1,"method":"\xff"}', -32700, "ParseError", None, True),
        (b'"\\ud800"', -32700, "ParseError", None, True),  # I-JSON: no lone surrogates
        (b"NaN", -32700, "ParseError", None, True),
        (b"1", -32600, "InvalidRequest", None, True),
        (b"null", -32600, "InvalidRequest", None, True),
        (b'"ping"', -32600, "InvalidRequest", None, True),
        (b"[]", -32600, "InvalidRequest", None, True),
        (b"[1,2,3,4]", -32600, "BatchTooLarge", None, True),
        (b"[" * 513 + b"]" * 513, -32600, "NestingTooDeep", None, True),
        (b'{"jsonrpc":"2.0","id":true,"method":"m"}', -32600, "InvalidRequest", None, True),
        (b'{"jsonrpc":"2.0","id":[1],"method":"m"}', -32600, "InvalidRequest", None, True),
        (b'{"jsonrpc":"2.0","id":{},"method":"m"}', -32600, "InvalidRequest", None, True),
        (b'{"jsonrpc":"1.0","id":4,"method":"m"}', -32600, "InvalidRequest", 4, True),
        (b'{"jsonrpc":2.0,"id":4,"method":"m"}', -32600, "InvalidRequest", 4, True),
        (b'{"id":4,"method":"m"}', -32600, "InvalidRequest", 4, True),
        (b'{"jsonrpc":"2.0","id":4}', -32600, "InvalidRequest", 4, True),
        (b'{"jsonrpc":"2.0","id":4,"method":1}', -32600, "InvalidRequest", 4, True),
        # JSON-RPC 2.0's own example: invalid without an id still gets a reply
        (b'{"jsonrpc":"2.0","method":1,"params":"bar"}', -32600, "InvalidRequest", None, True),
        (b'{"jsonrpc":"2.0","id":4,"method":"m","params":"x"}', -32600, "InvalidRequest", 4, True),
        (b'{"jsonrpc":"2.0","id":4,"method":"m","params":null}', -32600, "InvalidRequest", 4, True),
        (b'{"jsonrpc":"2.0","id":4,"method":"m","params":[1]}', -32602, "InvalidParams", 4, True),
        # a notification with positional params: wrong, but never answered
        (b'{"jsonrpc":"2.0","method":"m","params":[1]}', -32602, "InvalidParams", None, False),
    ],
)
def test_MessageReader_rejects(
    text: bytes, code: int, kind: str, reply_id: Any, reply: bool
) -> None:
    message = reader.read(text)
    assert type(message) is Rejected
    assert message.error.code == code
    assert message.error.kind == kind
    assert message.id == reply_id
    assert message.reply is reply


def test_MessageReader_reads_a_batch_member_by_member() -> None:
    message = reader.read(
        b'[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"b"},[1]]'
    )
    assert type(message) is Batch
    first, second, third = message.members
    assert first == Request(1, "a", {})
    assert second == Notification("b", {})
    assert type(third) is Rejected and third.error.code == -32600


def test_MessageReader_nesting_512_is_allowed() -> None:
    deep = b'{"jsonrpc":"2.0","id":1,"method":"m","params":{"p":' + b"[" * 510
    deep += b"]" * 510 + b"}}"
    message = reader.read(deep)
    assert type(message) is Request  # 512 levels: object, params object, 510 arrays
    too_deep = deep.replace(b"[", b"[[", 1).replace(b"]", b"]]", 1)
    rejected = reader.read(too_deep)
    assert type(rejected) is Rejected
    assert rejected.error.kind == "NestingTooDeep"


def test_MessageReader_orjson_depth_limit_is_not_a_parse_error() -> None:
    # orjson gives up at 1024 levels with a *parse* error; we must say -32600 first.
    message = reader.read(b"[" * 5000 + b"]" * 5000)
    assert type(message) is Rejected
    assert message.error.code == -32600
