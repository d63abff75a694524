"""Issue 12's wire (docs/protocol.md §3-§6): ``destination``/``hold``/``unique`` on push,
``destinations`` on pop, ``release``/``reject``, ``fail``'s ``dead``/``retryAfterMs``/``charge``,
``stats.destinations``; their errors; and that all of it survives a restart. The ``blackbox``
tests also run against a sidecar process."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import Spawn
from .harness import Sidecar
from .test_methods import assert_error, check_item, pop

A = "http://127.0.0.1:8080"
B = "https://api.example.test"
EVERY = {"except": []}


@pytest.mark.blackbox
def test_destination_items_only_go_to_destination_pops(mem: Sidecar) -> None:
    mem.result("push", id="plain", payload=1)
    assert mem.result("push", id="a", payload=2, destination=A) == {"id": "a"}
    mem.result("pushBatch", items=[{"id": "b", "payload": 3, "destination": B}])
    assert mem.result("get", id="a")["destination"] == A
    assert pop(mem)["id"] == "plain"
    assert mem.result("pop") is None  # the app's pops never see destination items
    assert mem.result("popBatch", max=10) == []
    got = mem.result("popBatch", max=10, destinations={"except": [A]})
    assert [i["id"] for i in got] == ["b"]
    item = mem.result("pop", destinations=EVERY)
    check_item(item)
    assert item["id"] == "a" and item["destination"] == A


@pytest.mark.blackbox
def test_destination_pop_waits_for_an_item(mem: Sidecar) -> None:
    waiting = mem.request("pop", {"timeoutMs": 10_000, "destinations": EVERY})
    plain = mem.request("pop", {"timeoutMs": 10_000})
    mem.sync()
    mem.result("push", id="a", payload=1, destination=A)
    assert mem.reply(waiting)["result"]["id"] == "a"
    assert not mem.has_reply(plain)
    mem.result("push", id="p", payload=1)
    assert mem.reply(plain)["result"]["id"] == "p"


@pytest.mark.blackbox
def test_fail_options(mem: Sidecar) -> None:
    mem.result("pushBatch", items=[{"id": x, "payload": 1, "destination": A} for x in "abc"])
    got = {i["id"]: i for i in mem.result("popBatch", max=3, destinations=EVERY)}
    result = mem.result("fail", id="a", error="HTTP 404", dead=True, leaseId=got["a"]["leaseId"])
    assert result == {"retry": False}
    assert mem.result("get", id="a")["status"] == "failed"
    before = mem.wall_ms()
    result = mem.result("fail", id="b", error="HTTP 429", retryAfterMs=60_000)
    assert result["retry"] is True and result["availableAt"] >= before + 60_000
    result = mem.result("fail", id="c", error="offline", charge=False)
    assert result["retry"] is True
    item = mem.result("get", id="c")
    assert item["status"] == "pending" and item["attempts"] == 0
    stats = mem.result("stats")
    assert stats["totalRetries"] == 1  # b's; c's attempt was not charged
    assert stats["destinations"][A]["failed"] == 1
    assert stats["destinations"][A]["lastError"] == "offline"
    assert type(stats["destinations"][A]["lastErrorAt"]) is int


@pytest.mark.blackbox
def test_hold_release_reject(mem: Sidecar) -> None:
    mem.result("push", id="h1", payload=1, hold=True, partitionKey="k")
    mem.result("push", id="k2", payload=2, partitionKey="k")
    mem.result("push", id="h2", payload=3, hold=True)
    mem.result("push", id="other", payload=4, partitionKey="o")
    assert mem.result("get", id="h1")["status"] == "held"
    assert mem.result("stats")["byStatus"]["held"] == 2
    assert pop(mem)["id"] == "other"
    assert mem.result("pop") is None  # k2 waits behind held h1
    assert mem.result("release", id="h1") == {}
    assert pop(mem)["id"] == "h1"
    assert mem.result("reject", id="h2", reason="the user said no") == {}
    item = mem.result("get", id="h2")
    assert item["status"] == "cancelled" and item["lastError"] == "the user said no"
    assert mem.result("list", status="held")["items"] == []
    assert_error(mem.error("release", id="h1"), -32009, "InvalidState")  # processing now
    assert_error(mem.error("reject", id="h2"), -32009, "InvalidState")
    assert_error(mem.error("release", id="zzz"), -32002, "ItemNotFound")
    assert_error(mem.error("reject", id="zzz"), -32002, "ItemNotFound")


@pytest.mark.blackbox
def test_unique_policies(mem: Sidecar) -> None:
    def push(item_id: str, policy: str) -> dict[str, str]:
        unique = {"key": "sync", "policy": policy}
        result: dict[str, str] = mem.result("push", id=item_id, payload=1, unique=unique)
        return result

    assert push("a", "keep") == {"id": "a", "unique": "added"}
    assert push("b", "keep") == {"id": "a", "unique": "kept"}
    assert push("c", "replace") == {"id": "c", "unique": "replaced", "replaced": "a"}
    assert mem.result("get", id="a")["lastError"] == "replaced"
    assert pop(mem)["id"] == "c"
    assert push("d", "replace") == {"id": "d", "unique": "appended"}  # c is processing
    assert push("e", "append") == {"id": "e", "unique": "appended"}
    assert mem.result("pop") is None
    mem.result("complete", id="c")
    assert pop(mem)["id"] == "d"
    assert mem.result("get", id="e")["uniqueKey"] == "sync"
    result = mem.result(
        "pushBatch", items=[{"id": "f", "payload": 1, "unique": {"key": "sync", "policy": "keep"}}]
    )
    assert result == {"ids": [], "duplicates": [], "unique": [{"id": "d", "unique": "kept"}]}


@pytest.mark.blackbox
def test_bad_outbox_params_change_nothing(mem: Sidecar) -> None:
    bad_pushes = [
        ({"destination": 5}, "destination"),
        ({"destination": ""}, "destination"),
        ({"destination": "x" * 256}, "destination"),
        ({"hold": "yes"}, "hold"),
        ({"unique": "k"}, "unique"),
        ({"unique": {"key": "k"}}, "policy"),
        ({"unique": {"key": "k", "policy": "upsert"}}, "policy"),
        ({"unique": {"key": "", "policy": "keep"}}, "unique"),
        ({"unique": {"key": "k", "policy": "keep", "x": 1}}, "x"),
    ]
    for extra, field in bad_pushes:
        error = mem.error("push", {"payload": 1, **extra})
        assert_error(error, -32602, "InvalidParams", field)
    mem.result("push", id="a", payload=1, destination=A)
    bad_pops = [
        ({"destinations": []}, "destinations"),
        ({"destinations": {}}, "except"),
        ({"destinations": {"except": "x"}}, "except"),
        ({"destinations": {"except": [1]}}, "destinations"),
        ({"destinations": {"except": [], "only": []}}, "only"),
        ({"destinations": EVERY, "partition": 0}, "partition"),
    ]
    for params, field in bad_pops:
        assert_error(mem.error("pop", params), -32602, "InvalidParams", field)
        assert_error(mem.error("popBatch", params), -32602, "InvalidParams", field)
    item = mem.result("pop", destinations=EVERY)
    for extra, field in [
        ({"dead": 1}, "dead"),
        ({"charge": "no"}, "charge"),
        ({"retryAfterMs": -1}, "retryAfterMs"),
        ({"dead": True, "charge": False}, "dead"),
    ]:
        assert_error(mem.error("fail", {"id": "a", **extra}), -32602, "InvalidParams", field)
    assert_error(mem.error("reject", id="a", reason=5), -32602, "InvalidParams", "reason")
    assert_error(mem.error("release", id="a", x=1), -32602, "InvalidParams", "x")
    got = mem.result("get", id="a")
    assert got["status"] == "processing" and got["leaseId"] == item["leaseId"]
    assert mem.result("stats")["totalEnqueued"] == 1


@pytest.mark.blackbox
def test_outbox_state_survives_a_restart(spawn: Spawn, tmp_path: Path) -> None:
    survives(spawn, tmp_path, kill=False)


@pytest.mark.process
def test_outbox_state_survives_kill9(spawn: Spawn, tmp_path: Path) -> None:
    survives(spawn, tmp_path, kill=True)


def survives(spawn: Spawn, tmp_path: Path, kill: bool) -> None:
    data = tmp_path / "data"
    first = spawn("--data-dir", data)
    first.result("push", id="h", payload=1, hold=True, destination=A, partitionKey="k")
    first.result("push", id="k2", payload=2, partitionKey="k")
    first.result("push", id="u1", payload=3, unique={"key": "u", "policy": "append"})
    first.result("push", id="u2", payload=4, unique={"key": "u", "policy": "append"})
    first.result("push", id="d", payload=5, destination=B)
    first.result("pop", destinations=EVERY)
    first.result("fail", id="d", error="HTTP 500", retryAfterMs=0)
    before = first.result("stats")["destinations"]
    if kill:
        first.kill9()  # everything acknowledged is durable
    else:
        assert first.shutdown() == 0
    second = spawn("--data-dir", data)
    assert second.result("stats")["destinations"] == before
    assert second.result("get", id="h")["status"] == "held"
    assert pop(second)["id"] == "u1"
    assert second.result("pop") is None  # k2 behind held h; u2 behind u1
    second.result("complete", id="u1")
    assert pop(second)["id"] == "u2"
    second.result("release", id="h")
    assert second.result("pop") is None  # h has a destination: only the outbox takes it
    assert second.result("pop", destinations=EVERY)["id"] in ("h", "d")


@pytest.mark.blackbox
def test_complete_batch(mem: Sidecar) -> None:
    mem.result("pushBatch", items=[{"id": x, "payload": 1} for x in "abc"])
    got = {i["id"]: i for i in mem.result("popBatch", max=3)}
    result = mem.result(
        "completeBatch",
        items=[
            {"id": "a", "leaseId": got["a"]["leaseId"]},
            {"id": "b", "leaseId": "stale"},
            {"id": "zzz"},
            {"id": "c"},
        ],
    )
    assert result["completed"] == ["a", "c"]
    assert [(e["index"], e["id"], e["error"]["data"]["kind"]) for e in result["errors"]] == [
        (1, "b", "InvalidState"),
        (2, "zzz", "ItemNotFound"),
    ]
    assert result["errors"][0]["error"]["code"] == -32009
    assert mem.result("get", id="b")["status"] == "processing"  # refused: unchanged
    assert mem.result("stats")["totalCompleted"] == 2
    for items, field in [
        ([{"leaseId": "x"}], "id"),
        ([{"id": "b", "x": 1}], "x"),
        (["b"], "items"),
        ([{"id": "b"}] * 1001, "items"),
    ]:
        assert_error(mem.error("completeBatch", items=items), -32602, "InvalidParams", field)
    assert mem.result("get", id="b")["status"] == "processing"  # a bad member: nothing done
