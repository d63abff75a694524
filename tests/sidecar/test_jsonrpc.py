"""JSON-RPC 2.0 conformance and bad input (docs/protocol.md §1, §5), through the sidecar's
session in process; the ``blackbox`` tests also against a sidecar process.

After every case the sidecar must still serve (``sync``), and every stdout line it ever
wrote must be a valid JSON-RPC message (checked at teardown by the fixtures).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson
import pytest

from .harness import Sidecar, line, notification, request

MIB = 1024 * 1024


def assert_invalid_request(reply: dict[str, Any], request_id: Any = None) -> None:
    assert reply["id"] == request_id, reply
    assert reply["error"]["code"] == -32600, reply


def null_reply(sidecar: Sidecar, data: bytes) -> dict[str, Any]:
    """Send ``data``; the one reply with ``id: null`` it gets (checked to be the only one)."""
    sidecar.discard(None)
    sidecar.send_raw(data)
    reply = sidecar.reply(None)
    sidecar.sync()
    assert not sidecar.has_reply(None), "exactly one reply"
    return reply


# -- ids -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_id",
    [
        "abc",
        "",
        'é😀 \u2028 " \\ \n',
        "x" * 10_000,
        0,
        -1,
        2**53 - 1,
        -(2**53 - 1),
        1.5,
        -0.25,
        1e300,
        None,
    ],
    ids=repr,
)
@pytest.mark.blackbox
def test_ids_of_every_legal_type_echo_unchanged(shared: Sidecar, request_id: Any) -> None:
    shared.send(request("ping", request_id))
    reply = shared.reply(request_id)
    assert type(reply["id"]) is type(request_id) and reply["id"] == request_id
    assert reply["result"] == {"pong": True}
    shared.sync()


def test_ids_of_the_same_value_but_another_type_are_distinct(shared: Sidecar) -> None:
    shared.send(request("ping", 7), request("ping", "7"))
    assert shared.reply(7)["id"] == 7
    assert shared.reply("7")["id"] == "7"


def test_equal_ids_get_a_reply_each(shared: Sidecar) -> None:
    shared.send(request("ping", "same"), request("ping", "same"))
    shared.reply("same")
    shared.reply("same")


@pytest.mark.parametrize("bad_id", [True, False, {}, {"a": 1}, [], [1]], ids=repr)
def test_illegal_ids_are_invalid_requests(shared: Sidecar, bad_id: Any) -> None:
    assert_invalid_request(
        null_reply(shared, line({"jsonrpc": "2.0", "id": bad_id, "method": "ping"}))
    )


# -- requests and notifications ---------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        {"id": 1, "method": "ping"},
        {"jsonrpc": "1.0", "id": 1, "method": "ping"},
        {"jsonrpc": 2.0, "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "id": 1},
        {"jsonrpc": "2.0", "id": 1, "method": 5},
        {"jsonrpc": "2.0", "id": 1, "method": None},
        {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": "x"},
        {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": 3},
        {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": None},
    ],
    ids=lambda m: orjson.dumps(m).decode(),
)
def test_invalid_requests(shared: Sidecar, message: dict[str, Any]) -> None:
    shared.send(message)
    reply = shared.reply(1)
    assert_invalid_request(reply, 1)
    shared.sync()


@pytest.mark.parametrize("message", [1, "ping", None, True, {}], ids=repr)
def test_non_request_values_are_invalid_requests(shared: Sidecar, message: Any) -> None:
    assert_invalid_request(null_reply(shared, line(message)))


def test_positional_params_are_invalid_params(shared: Sidecar) -> None:
    shared.send(request("ping", 1, None) | {"params": []})
    reply = shared.reply(1)
    assert reply["error"]["code"] == -32602


@pytest.mark.blackbox
def test_notifications_get_no_reply(shared: Sidecar) -> None:
    before = len(shared.lines)
    shared.send(
        notification("ping"),
        notification("ping", {}),
        notification("noSuchMethod"),
        notification("ping", {"bad": 1}),  # invalid params: still no reply
        notification("get", {"id": "no such item"}),  # a queue error: still no reply
        notification("stats"),
    )
    shared.sync()
    assert len(shared.lines) == before + 1, [raw for _, raw in shared.lines[before:]]


def test_a_notification_still_takes_effect(shared: Sidecar) -> None:
    shared.send(notification("push", {"id": "by-notification", "payload": 1}))
    assert shared.result("get", id="by-notification")["status"] == "pending"
    shared.result("cancel", id="by-notification")


def test_unknown_members_of_a_request_are_ignored(shared: Sidecar) -> None:
    shared.send(request("ping", 1) | {"extra": {"x": 1}})
    assert shared.reply(1)["result"] == {"pong": True}


# -- batches -------------------------------------------------------------------------------


@pytest.mark.blackbox
def test_batch_mixed_valid_and_invalid_members(shared: Sidecar) -> None:
    replies = shared.batch(
        [
            request("ping", "ok"),
            notification("ping"),
            {"jsonrpc": "2.0", "id": "no-method"},
            request("noSuchMethod", "unknown"),
            request("get", "missing", {"id": "nope"}),
            request("ping", "bad-params", {"x": 1}),
            1,
            "x",
            request("ping", 42),
        ]
    )
    by_id: dict[Any, list[dict[str, Any]]] = {}
    for reply in replies:
        by_id.setdefault(reply["id"], []).append(reply)
    assert len(replies) == 8, "one per member except the notification"
    assert by_id["ok"][0]["result"] == {"pong": True}
    assert by_id[42][0]["result"] == {"pong": True}
    assert by_id["no-method"][0]["error"]["code"] == -32600
    assert by_id["unknown"][0]["error"]["code"] == -32601
    assert by_id["missing"][0]["error"]["code"] == -32002
    assert by_id["bad-params"][0]["error"]["code"] == -32602
    assert [r["error"]["code"] for r in by_id[None]] == [-32600, -32600]
    shared.sync()


def test_batch_of_notifications_only_gets_no_output(shared: Sidecar) -> None:
    before = len(shared.lines)
    shared.send([notification("ping"), notification("stats"), notification("nope")])
    shared.sync()
    assert len(shared.lines) == before + 1


def test_empty_batch_gets_one_invalid_request(shared: Sidecar) -> None:
    batches = len(shared.batches)
    reply = null_reply(shared, b"[]\n")
    assert_invalid_request(reply)
    assert len(shared.batches) == batches, "a single error object, not an array"


def test_batch_of_one(shared: Sidecar) -> None:
    assert shared.batch([request("ping", "one")]) == [
        {"jsonrpc": "2.0", "id": "one", "result": {"pong": True}}
    ]


def test_huge_batch(shared: Sidecar) -> None:
    count = 10_000
    replies = shared.batch([request("ping", n) for n in range(count)], timeout=60)
    assert sorted(r["id"] for r in replies) == list(range(count))
    assert all(r["result"] == {"pong": True} for r in replies)
    shared.sync()


def test_batch_over_the_member_limit_is_refused_whole(shared: Sidecar) -> None:
    reply = null_reply(shared, line([request("ping", n) for n in range(100_001)]))
    assert_invalid_request(reply)
    for n in (0, 100_000):
        assert not shared.has_reply(n)


def test_batch_members_are_applied_in_order(shared: Sidecar) -> None:
    replies = shared.batch(
        [
            request("push", 1, {"id": "batch-order", "payload": 1}),
            request("get", 2, {"id": "batch-order"}),
            request("cancel", 3, {"id": "batch-order"}),
            request("get", 4, {"id": "batch-order"}),
        ]
    )
    by_id = {r["id"]: r for r in replies}
    assert by_id[2]["result"]["status"] == "pending"
    assert by_id[4]["result"]["status"] == "cancelled"


# -- malformed input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"{bad json}",
        b'{"jsonrpc":"2.0","id":1,"method":"ping"',
        b'{"jsonrpc":"2.0","id":1,"method":"ping"}}',
        b"[1,",
        b"nul",
        b"'single'",
        b"NaN",
        b'{"a":1,}',
        b"\x00",
        b'{"jsonrpc":"2.0","id":1,"method":"ping"} {"x":1}',
    ],
    ids=repr,
)
@pytest.mark.blackbox
def test_malformed_json_is_a_parse_error(shared: Sidecar, raw: bytes) -> None:
    reply = null_reply(shared, raw + b"\n")
    assert reply["id"] is None and reply["error"]["code"] == -32700, reply


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe",
        b'{"jsonrpc":"2.0","id":"\xff","method":"ping"}',
        b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"\xc3\x28":1}}',
        b'{"jsonrpc":"2.0","id":"\xed\xa0\x80","method":"ping"}',  # a UTF-8 encoded surrogate
        b"\xef\xbb\xbf" + b'{"jsonrpc":"2.0","id":1,"method":"ping"}',  # a BOM
    ],
    ids=repr,
)
@pytest.mark.blackbox
def test_invalid_utf8_is_a_parse_error(shared: Sidecar, raw: bytes) -> None:
    reply = null_reply(shared, raw + b"\n")
    assert reply["id"] is None and reply["error"]["code"] == -32700, reply


@pytest.mark.blackbox
def test_blank_lines_and_crlf(shared: Sidecar) -> None:
    before = len(shared.lines)
    shared.send_raw(b"\n\n   \n\r\n" + b'{"jsonrpc":"2.0","id":"crlf","method":"ping"}\r\n')
    assert shared.reply("crlf")["result"] == {"pong": True}
    shared.sync()
    assert len(shared.lines) == before + 2


@pytest.mark.blackbox
def test_a_request_split_over_many_writes(shared: Sidecar) -> None:
    raw = line(request("ping", "split"))
    for n in range(len(raw)):
        shared.send_raw(raw[n : n + 1])
        if n % 10 == 0:
            time.sleep(0.001)
    assert shared.reply("split")["result"] == {"pong": True}


def test_nesting_600_levels_is_an_invalid_request(shared: Sidecar) -> None:
    reply = null_reply(shared, b"[" * 600 + b"]" * 600 + b"\n")
    assert_invalid_request(reply)
    assert reply["error"]["data"]["kind"] == "NestingTooDeep"
    deep = b'{"a":' * 600 + b"1" + b"}" * 600
    raw = b'{"jsonrpc":"2.0","id":"deep","method":"push","params":{"payload":%s}}\n' % deep
    assert_invalid_request(null_reply(shared, raw))  # too deep to trust even its id
    assert not shared.has_reply("deep")


@pytest.mark.parametrize(("depth", "accepted"), [(510, True), (511, False)])
def test_nesting_limit_is_512_levels(shared: Sidecar, depth: int, accepted: bool) -> None:
    # The request object is level 1, params level 2: a payload of 510 levels makes 512.
    payload = b"[" * depth + b"]" * depth
    raw = b'{"jsonrpc":"2.0","id":"lim","method":"push","params":{"payload":%s}}\n' % payload
    if accepted:
        shared.send_raw(raw)
        item_id = shared.reply("lim")["result"]["id"]
        shared.send_raw(
            b'{"jsonrpc":"2.0","id":"lim-get","method":"get","params":{"id":"%s"}}\n'
            % item_id.encode()
        )
        got, levels = shared.reply("lim-get")["result"]["payload"], 0
        while got:
            got, levels = got[0], levels + 1
        assert (got, levels) == ([], depth - 1)
        shared.result("cancel", id=item_id)
    else:
        assert_invalid_request(null_reply(shared, raw))


def test_nesting_within_the_limit_round_trips(shared: Sidecar) -> None:
    payload: Any = "leaf"
    for _ in range(200):  # orjson (the test's encoder) stops at 254 levels
        payload = [payload]
    shared.result("push", id="deep-ok", payload=payload)
    assert shared.result("get", id="deep-ok")["payload"] == payload
    shared.result("cancel", id="deep-ok")


def test_deeply_nested_unclosed_input(shared: Sidecar) -> None:
    reply = null_reply(shared, b"[" * 100_000 + b"\n")
    assert reply["id"] is None and reply["error"]["code"] in (-32600, -32700)


def test_big_integers_and_floats(shared: Sidecar) -> None:
    payload = {"big": 2**53 - 1, "neg": -(2**53 - 1), "f": 0.1, "e": 1e-300, "z": -0.0}
    shared.result("push", id="numbers", payload=payload)
    assert shared.result("get", id="numbers")["payload"] == payload
    shared.result("cancel", id="numbers")


# -- size limits -----------------------------------------------------------------------------


@pytest.mark.blackbox
def test_oversized_line_is_answered_as_soon_as_the_limit_is_crossed(shared: Sidecar) -> None:
    limit = 16 * MIB
    shared.discard(None)
    first = len(shared.lines)
    chunk = b"x" * MIB
    for _ in range(16):
        shared.send_raw(chunk)
    shared.send_raw(b"yyyy")  # over the limit; no newline yet
    reply = shared.reply(None, timeout=20)
    assert orjson.loads(shared.lines[first][1]) == reply
    assert reply["error"]["code"] == -32600
    assert reply["error"]["data"]["kind"] == "MessageTooLarge"
    shared.send_raw(b"more of the same line" + b"\n")
    shared.sync()
    assert len(shared.lines) == first + 2, "one error for the whole line"
    # Exactly at the limit: not too large (an invalid JSON text, so a parse error).
    reply = null_reply(shared, b" " * (limit - 1) + b"x\n")
    assert reply["error"]["code"] == -32700, reply
    reply = null_reply(shared, b" " * limit + b"x\n")
    assert reply["error"]["data"]["kind"] == "MessageTooLarge", reply


def test_a_line_at_the_limit_that_is_a_request(shared: Sidecar) -> None:
    request_line = line(request("ping", "padded"))[:-1]
    padded = request_line[:-1] + b" " * (16 * MIB - len(request_line)) + b"}"
    assert len(padded) == 16 * MIB
    shared.send_raw(padded + b"\n")
    assert shared.reply("padded", timeout=30)["result"] == {"pong": True}


# -- pipelining ------------------------------------------------------------------------------


@pytest.mark.blackbox
def test_pipelining_10000_requests_each_get_exactly_one_reply(mem: Sidecar) -> None:
    count = 10_000
    messages = []
    for n in range(count):
        kind = n % 5
        if kind == 0:
            messages.append(request("push", n, {"id": f"p{n}", "payload": n}))
        elif kind == 1:
            messages.append(request("ping", n))
        elif kind == 2:
            messages.append(request("get", n, {"id": f"p{n - 2}"}))
        elif kind == 3:
            messages.append(request("pop", n, {"leaseMs": 60_000}))
        else:
            messages.append(request("nope", n))
    data = b"".join(line(m) for m in messages)
    writer = threading.Thread(target=mem.send_raw, args=(data,))
    start = time.monotonic()
    writer.start()
    for n in range(count):
        mem.reply(n, timeout=60)
    writer.join()
    elapsed = time.monotonic() - start
    mem.sync()
    for n in range(count):
        assert not mem.has_reply(n), f"a second reply to {n}"
    responses = [r for r in mem.order if type(r) is int]
    assert sorted(responses) == list(range(count))
    assert responses == sorted(responses), "applied and answered in the order read"
    assert mem.result("stats")["totalEnqueued"] == count // 5
    assert elapsed < 30
