"""RpcSession: calls applied through a dispatcher, replies after commit (sans-IO)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from sync_queue.errors import ShuttingDown
from sync_queue.protocol import (
    BATCH_CALL,
    BATCH_NOTIFICATION,
    NOTIFICATION,
    PLAIN_CALL,
    Waiting,
)

from .rpc_checks import SessionHarness, line, notification, request


def test_ping() -> None:
    h = SessionHarness()
    assert h.send(request("ping", 1)) == [{"jsonrpc": "2.0", "id": 1, "result": {"pong": True}}]


@pytest.mark.parametrize(
    "raw_id",
    [
        b"0",
        b"-1",
        b"9007199254740991",
        b"1.5",
        b"-0.0",
        b"1e3",
        b'""',
        b'"abc"',
        b'"\\u00e9"',
        b"null",
    ],
)
def test_ids_echo_back_unchanged(raw_id: bytes) -> None:
    h = SessionHarness()
    out = h.cycle(b'{"jsonrpc":"2.0","method":"ping","id":' + raw_id + b"}\n")
    parsed_id = orjson.loads(raw_id)
    assert out[0]["id"] == parsed_id
    assert type(out[0]["id"]) is type(parsed_id)  # 1.5 stays a float, 0 an int


def test_notifications_get_no_reply_even_on_error() -> None:
    h = SessionHarness()
    out = h.send(
        notification("ping"),
        notification("nope"),
        notification("raise", kind="ItemNotFound"),
        notification("raise", kind="bug"),
        notification("push"),  # missing param
    )
    out += h.cycle(b'{"jsonrpc":"2.0","method":"ping","params":[1,2]}\n')
    assert out == []


def test_errors_carry_code_kind_and_data() -> None:
    h = SessionHarness()
    out = h.send(
        request("nope", 1),
        request("raise", 2, kind="ItemNotFound"),
        request("raise", 3, kind="bug"),
        request("push", 4, itme=1),
    )
    by_id = {reply["id"]: reply["error"] for reply in out}
    assert by_id[1]["code"] == -32601 and by_id[1]["data"]["kind"] == "MethodNotFound"
    assert by_id[2] == {
        "code": -32002,
        "message": "fake ItemNotFound",
        "data": {"detail": 1, "kind": "ItemNotFound"},
    }
    assert by_id[3]["code"] == -32603
    assert "secret" not in by_id[3]["message"]  # the details go to the log only
    assert by_id[4]["code"] == -32602
    assert '"itme"' in by_id[4]["message"] and by_id[4]["data"]["field"] == "itme"


def test_positional_params_are_invalid_params() -> None:
    h = SessionHarness()
    out = h.cycle(b'{"jsonrpc":"2.0","id":9,"method":"ping","params":[]}\n')
    assert out[0]["id"] == 9 and out[0]["error"]["code"] == -32602


def test_batch_mixed_members_reply_as_one_array_in_order() -> None:
    h = SessionHarness()
    out = h.cycle(
        line(
            [
                request("ping", "a"),
                notification("ping"),
                {"foo": "bar"},
                request("nope", "b"),
                1,
                request("echo", "c", x=1),
            ]
        )
    )
    assert len(out) == 1
    batch = out[0]
    assert [reply["id"] for reply in batch] == ["a", None, "b", None, "c"]
    assert batch[0]["result"] == {"pong": True}
    assert batch[1]["error"]["code"] == -32600
    assert batch[2]["error"]["code"] == -32601
    assert batch[4]["result"] == {"x": 1}


def test_batch_of_notifications_gets_no_reply() -> None:
    h = SessionHarness()
    assert h.cycle(line([notification("ping"), notification("nope")])) == []
    assert h.dispatcher.commits == 1  # still applied and committed


@pytest.mark.parametrize(
    ("text", "code"),
    [(b"[]\n", -32600), (b"[\n", -32700), (b"[1]\n", -32600)],
)
def test_batch_errors(text: bytes, code: int) -> None:
    h = SessionHarness()
    out = h.cycle(text)
    assert len(out) == 1
    reply = out[0][0] if type(out[0]) is list else out[0]
    assert reply["error"]["code"] == code and reply["id"] is None


def test_huge_batch_is_one_invalid_request() -> None:
    h = SessionHarness(max_batch_members=10)
    out = h.cycle(line([request("ping", i) for i in range(11)]))
    assert out == [
        {
            "jsonrpc": "2.0",
            "id": None,
            "error": {
                "code": -32600,
                "message": "a batch may hold at most 10 requests, this one has 11; split it",
                "data": {"limit": 10, "kind": "BatchTooLarge"},
            },
        }
    ]
    assert h.dispatcher.calls == []


def test_call_info_flags_reach_the_dispatcher() -> None:
    h = SessionHarness()
    h.send(request("ping", 1), notification("ping"))
    h.cycle(line([request("ping", 2), notification("ping")]))
    assert [info for _, info in h.dispatcher.calls] == [
        PLAIN_CALL,
        NOTIFICATION,
        BATCH_CALL,
        BATCH_NOTIFICATION,
    ]


def test_oversized_line_then_the_next_line_is_served() -> None:
    h = SessionHarness(max_message_bytes=100)
    out = h.cycle(b'{"jsonrpc":"2.0","id":1,"method":"echo","params":{"x":"' + b"y" * 200)
    assert out[0]["id"] is None
    assert out[0]["error"]["code"] == -32600
    assert out[0]["error"]["data"]["kind"] == "MessageTooLarge"
    out = h.cycle(b'yyy"}}\n' + line(request("ping", 2)))
    assert out == [{"jsonrpc": "2.0", "id": 2, "result": {"pong": True}}]


def test_parse_error_then_the_next_line_is_served() -> None:
    h = SessionHarness()
    out = h.cycle(b'{"jsonrpc":\n\xff\xfe\n\r\n   \n' + line(request("ping", 2)))
    assert [reply.get("id") for reply in out] == [None, None, 2]
    assert [reply.get("error", {}).get("code") for reply in out] == [-32700, -32700, None]


def test_one_commit_per_cycle_before_any_reply() -> None:
    h = SessionHarness()
    h.send(*(request("push", i, item=i) for i in range(100)))
    assert h.dispatcher.commits == 1
    h.cycle()
    assert h.dispatcher.commits == 2


def test_failed_commit_turns_every_result_of_the_cycle_into_its_error() -> None:
    h = SessionHarness()
    h.dispatcher.fail_next_commit = True
    out = h.send(
        request("push", 1, item="a"),
        request("nope", 2),
        [request("ping", 3), request("nope", 4)],
        request("notify", 5, method="itemFailed", params={"id": "x"}),
    )
    assert out[0]["error"]["data"]["kind"] == "PersistenceError"
    assert out[1]["error"]["code"] == -32601  # an error stays the error it was
    assert out[2][0]["error"]["data"]["kind"] == "PersistenceError"
    assert out[2][1]["error"]["code"] == -32601
    assert out[3] == {"jsonrpc": "2.0", "method": "itemFailed", "params": {"id": "x"}}
    assert out[4]["error"]["data"]["kind"] == "PersistenceError"
    assert h.send(request("ping", 6))[0]["result"] == {"pong": True}


def test_notifications_go_out_in_order_with_replies() -> None:
    h = SessionHarness()
    out = h.send(
        request("ping", 1),
        request("notify", 2, method="itemsAvailable", params={"pending": 1}),
        request("ping", 3),
    )
    assert [m.get("id", m.get("method")) for m in out] == [1, "itemsAvailable", 2, 3]


def test_notify_outside_a_cycle_asks_for_a_wake() -> None:
    h = SessionHarness()
    assert h.dispatcher.link is not None
    h.dispatcher.link.notify("breakerChanged", {"state": "open", "reason": "x"})
    assert h.wakes == 1
    assert h.cycle()[0]["method"] == "breakerChanged"


# -- long polls ---------------------------------------------------------------------


def test_long_poll_is_answered_when_an_item_arrives_while_others_flow_past() -> None:
    h = SessionHarness()
    assert h.send(request("pop", 1, timeoutMs=5000)) == []
    assert h.session.waiting_count == 1
    assert h.send(request("ping", 2)) == [{"jsonrpc": "2.0", "id": 2, "result": {"pong": True}}]
    out = h.send(request("push", 3, item="job"))
    # the waiter is answered inside the push, so its reply comes first
    assert out == [
        {"jsonrpc": "2.0", "id": 1, "result": "job"},
        {"jsonrpc": "2.0", "id": 3, "result": {}},
    ]
    assert h.session.waiting_count == 0


def test_waiting_pops_are_served_in_the_order_read() -> None:
    h = SessionHarness()
    h.send(request("pop", "a", timeoutMs=5000), request("pop", "b", timeoutMs=100))
    out = h.send(request("push", 1, item="x"), request("push", 2, item="y"))
    assert [(m["id"], m["result"]) for m in out] == [("a", "x"), (1, {}), ("b", "y"), (2, {})]


def test_long_poll_times_out_with_its_empty_result() -> None:
    h = SessionHarness()
    h.send(request("pop", 1, timeoutMs=250))
    assert h.session.next_deadline() == pytest.approx(h.now + 0.25)
    h.now += 0.2
    assert h.cycle() == []
    h.now += 0.05
    assert h.cycle() == [{"jsonrpc": "2.0", "id": 1, "result": None}]
    assert h.session.next_deadline() is None
    # the item that comes later is not handed to the timed-out waiter
    assert h.send(request("push", 2, item="x")) == [{"jsonrpc": "2.0", "id": 2, "result": {}}]
    assert list(h.dispatcher.items) == ["x"]


def test_tick_runs_timers_and_sets_the_next_deadline() -> None:
    h = SessionHarness()
    h.send(request("pop", 1, timeoutMs=10_000), request("push", 2, item="later", delayMs=500))
    assert h.session.next_deadline() == pytest.approx(h.now + 0.5)
    h.now += 0.5
    assert h.cycle() == [{"jsonrpc": "2.0", "id": 1, "result": "later"}]


def test_inside_a_batch_nothing_waits() -> None:
    h = SessionHarness()
    out = h.cycle(line([request("pop", 1, timeoutMs=5000), request("ping", 2)]))
    assert out == [
        [
            {"jsonrpc": "2.0", "id": 1, "result": None},
            {"jsonrpc": "2.0", "id": 2, "result": {"pong": True}},
        ]
    ]
    assert h.session.waiting_count == 0


def test_a_waiting_returned_in_a_batch_is_answered_at_once_by_the_session() -> None:
    # A dispatcher that ignores the in_batch flag must not stall the batch.
    h = SessionHarness()
    original = h.dispatcher.rpc_pop

    def stubborn_pop(params: dict[str, Any], call: Any) -> Any:
        return original(params, PLAIN_CALL)

    h.dispatcher.rpc_pop = stubborn_pop  # type: ignore[method-assign]
    out = h.cycle(line([request("pop", 1, timeoutMs=5000)]))
    assert out == [[{"jsonrpc": "2.0", "id": 1, "result": None}]]


def test_pop_as_notification_hands_out_nothing() -> None:
    h = SessionHarness()
    h.send(request("push", 1, item="x"))
    assert h.send(notification("pop", timeoutMs=1000)) == []
    assert list(h.dispatcher.items) == ["x"]
    assert h.session.waiting_count == 0


# -- shutdown -----------------------------------------------------------------------


def test_shutdown_answers_waiters_and_refuses_later_requests() -> None:
    h = SessionHarness()
    h.send(request("pop", 1, timeoutMs=5000))
    out = h.send(request("shutdown", 2), request("ping", 3), notification("ping"))
    assert out[0] == {"jsonrpc": "2.0", "id": 1, "result": None}
    assert out[1] == {"jsonrpc": "2.0", "id": 2, "result": {}}
    assert out[2]["id"] == 3 and out[2]["error"]["code"] == -32003
    assert out[2]["error"]["data"]["kind"] == "ShuttingDown"
    assert h.session.stopping
    assert [m for m, _ in h.dispatcher.calls] == ["pop"]


def test_shutdown_takes_no_params() -> None:
    h = SessionHarness()
    out = h.send(request("shutdown", 1, now=True))
    assert out[0]["error"]["code"] == -32602
    assert not h.session.stopping


def test_shutdown_inside_a_batch() -> None:
    h = SessionHarness()
    out = h.cycle(line([request("ping", 1), request("shutdown", 2), request("ping", 3)]))
    assert [("result" in r, r["id"]) for r in out[0]] == [(True, 1), (True, 2), (False, 3)]


def test_stop_answers_waiters_in_the_order_read() -> None:
    h = SessionHarness()
    h.send(request("pop", "late", timeoutMs=9000), request("pop", "soon", timeoutMs=10))
    h.session.stop()
    out = h.cycle()
    assert [m["id"] for m in out] == ["late", "soon"]


def test_a_waiting_with_expired_is_failed_on_timeout_and_on_stop() -> None:
    # For a call whose empty answer would claim something (a flush that did not finish).
    h = SessionHarness()

    def slow(params: dict[str, Any], call: Any) -> Any:
        return Waiting(empty={}, timeout=params["s"], expired=ShuttingDown("cut short"))

    h.dispatcher.rpc_slow = slow  # type: ignore[attr-defined]
    assert h.send(request("slow", "timed", s=1.0), request("slow", "stopped", s=60.0)) == []
    h.now += 1.0
    out = h.cycle()
    assert [(m["id"], m["error"]["data"]["kind"]) for m in out] == [("timed", "ShuttingDown")]
    h.session.stop()
    out = h.cycle()
    assert [(m["id"], m["error"]["message"]) for m in out] == [("stopped", "cut short")]


# -- encoding -----------------------------------------------------------------------


def test_results_deeper_than_orjson_can_write_still_go_out() -> None:
    h = SessionHarness()
    deep: Any = "bottom"
    for _ in range(500):
        deep = [deep]
    text = json.dumps(request("echo", 1, payload=deep), separators=(",", ":"))
    out = h.cycle(text.encode() + b"\n")
    assert out[0]["result"]["payload"] == deep


def test_a_result_that_is_not_json_is_an_internal_error_for_its_id() -> None:
    h = SessionHarness()
    h.dispatcher.rpc_weird = lambda params, call: {"x": object()}  # type: ignore[attr-defined]
    out = h.send(request("weird", 1), request("ping", 2))
    assert out[0]["id"] == 1 and out[0]["error"]["code"] == -32603
    assert out[1]["result"] == {"pong": True}


def test_unicode_line_separators_and_newlines_in_strings_stay_on_one_line() -> None:
    h = SessionHarness()
    text = "a\nb\r\u2028\u2029\x00"
    out = h.send(request("echo", 1, s=text))
    assert out[0]["result"] == {"s": text}


def test_answered_long_polls_do_not_pile_up() -> None:
    h = SessionHarness()
    for round_ in range(5):
        h.send(*(request("pop", f"{round_}-{i}", timeoutMs=3_600_000) for i in range(100)))
        out = h.send(*(request("push", i, item=i) for i in range(100)))
        assert len(out) == 200
    assert len(h.session._deadlines) < 200
    assert h.session.waiting_count == 0
