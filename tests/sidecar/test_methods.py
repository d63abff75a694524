"""Every method of docs/protocol.md §4 and every error code of §5, through the sidecar's
session and method table in process; the ``blackbox`` tests also against a sidecar process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .conftest import Spawn
from .harness import Sidecar, list_all, request, write_config

STATUSES = ("pending", "processing", "completed", "failed", "cancelled", "held")
PRIORITIES = ("critical", "high", "normal", "low", "background")
ITEM_FIELDS = {
    "id",
    "payload",
    "priority",
    "status",
    "attempts",
    "maxRetries",
    "correlationId",
    "metadata",
    "partitionKey",
    "createdAt",
    "updatedAt",
    "availableAt",
    "leaseExpiresAt",
    "leaseId",
    "expiresAt",
    "lastError",
    "destination",
    "uniqueKey",
}


def now_ms(sidecar: Sidecar) -> int:
    return sidecar.wall_ms()


def assert_error(error: dict[str, Any], code: int, kind: str, field: str | None = None) -> None:
    assert error["code"] == code, error
    assert error["data"]["kind"] == kind, error
    if field is not None:
        assert error["data"].get("field") == field or f'"{field}"' in error["message"], error


def check_item(item: dict[str, Any]) -> None:
    assert set(item) >= ITEM_FIELDS, set(item) ^ ITEM_FIELDS
    assert type(item["id"]) is str and 1 <= len(item["id"]) <= 128
    assert item["priority"] in PRIORITIES
    assert item["status"] in STATUSES
    for name in ("createdAt", "updatedAt", "availableAt"):
        assert type(item[name]) is int, (name, item)
    if item["status"] == "processing":
        assert type(item["leaseId"]) is str and type(item["leaseExpiresAt"]) is int
    else:
        assert item["leaseId"] is None and item["leaseExpiresAt"] is None


def pop(sidecar: Sidecar, **params: Any) -> dict[str, Any]:
    item = sidecar.result("pop", params)
    assert item is not None
    check_item(item)
    return item  # type: ignore[no-any-return]


def pop_eventually(sidecar: Sidecar, timeout: float = 10, **params: Any) -> dict[str, Any]:
    deadline = sidecar.monotonic() + timeout
    while (item := sidecar.result("pop", params)) is None:
        assert sidecar.monotonic() < deadline, "nothing became ready"
        sidecar.advance(0.02)
    check_item(item)
    return item  # type: ignore[no-any-return]


# -- ping, push, pushBatch -----------------------------------------------------------------


@pytest.mark.blackbox
def test_ping(mem: Sidecar) -> None:
    assert mem.call("ping") == {"jsonrpc": "2.0", "id": mem.order[-1], "result": {"pong": True}}
    assert mem.result("ping", {}) == {"pong": True}
    assert_error(mem.error("ping", {"x": 1}), -32602, "InvalidParams", "x")


def test_push_generates_unique_time_ordered_ids(mem: Sidecar) -> None:
    ids = [mem.result("push", payload=n)["id"] for n in range(20)]
    assert len(set(ids)) == 20
    assert all(type(i) is str and 1 <= len(i) <= 128 for i in ids)
    assert ids == sorted(ids), "generated ids are time-ordered"


@pytest.mark.blackbox
def test_push_all_fields_round_trip(mem: Sidecar) -> None:
    before = now_ms(mem)
    params = {
        "id": "job-1",
        "payload": {"nested": [1, 2.5, "é😀", None, True]},
        "priority": "high",
        "maxRetries": 7,
        "correlationId": "corr",
        "metadata": {"k": "v", "empty": ""},
        "partitionKey": "user-1",
        "delayMs": 60_000,
        "ttlMs": 120_000,
    }
    assert mem.result("push", params) == {"id": "job-1"}
    item = mem.result("get", id="job-1")
    check_item(item)
    assert {k: item[k] for k in ("id", "payload", "priority", "maxRetries")} == {
        "id": "job-1",
        "payload": params["payload"],
        "priority": "high",
        "maxRetries": 7,
    }
    assert item["correlationId"] == "corr" and item["metadata"] == {"k": "v", "empty": ""}
    assert item["partitionKey"] == "user-1"
    assert item["status"] == "pending" and item["attempts"] == 0
    assert before <= item["createdAt"] <= now_ms(mem)
    assert item["availableAt"] == item["createdAt"] + 60_000
    assert item["expiresAt"] == item["createdAt"] + 120_000
    assert item["lastError"] is None


def test_push_defaults_and_null_payload(mem: Sidecar) -> None:
    item_id = mem.result("push", payload=None)["id"]
    item = mem.result("get", id=item_id)
    assert item["payload"] is None
    assert item["priority"] == "normal" and item["maxRetries"] == 3
    assert item["correlationId"] is None and item["partitionKey"] is None
    assert item["metadata"] == {} and item["expiresAt"] is None


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "payload"),
        ({"payload": 1, "id": ""}, "id"),
        ({"payload": 1, "id": "x" * 129}, "id"),
        ({"payload": 1, "id": 5}, "id"),
        ({"payload": 1, "priority": "urgent"}, "priority"),
        ({"payload": 1, "maxRetries": -1}, "maxRetries"),
        ({"payload": 1, "maxRetries": 1.5}, "maxRetries"),
        ({"payload": 1, "metadata": {"k": 1}}, "metadata"),
        ({"payload": 1, "metadata": []}, "metadata"),
        ({"payload": 1, "delayMs": -1}, "delayMs"),
        ({"payload": 1, "ttlMs": 0}, "ttlMs"),
        ({"payload": 1, "correlationId": 3}, "correlationId"),
        ({"payload": 1, "delay": 5}, "delay"),
    ],
)
@pytest.mark.blackbox
def test_push_invalid_params(shared: Sidecar, params: dict[str, Any], field: str) -> None:
    error = shared.error("push", params)
    assert_error(error, -32602, "InvalidParams", field)


def test_push_id_limits(mem: Sidecar) -> None:
    assert mem.result("push", id="x" * 128, payload=1) == {"id": "x" * 128}
    assert mem.result("push", id="y", payload=1) == {"id": "y"}


def test_duplicate_push(mem: Sidecar) -> None:
    mem.result("push", id="a", payload=1)
    error = mem.error("push", id="a", payload=2)
    assert_error(error, -32005, "DuplicateItem")
    assert "a" in error["message"]
    assert mem.result("get", id="a")["payload"] == 1


@pytest.mark.blackbox
def test_push_batch(mem: Sidecar) -> None:
    mem.result("push", id="old", payload=0)
    result = mem.result(
        "pushBatch",
        items=[
            {"payload": 1, "id": "a"},
            {"payload": 2, "id": "a"},  # repeated inside the batch
            {"payload": 3, "id": "old"},  # already queued
            {"payload": 4},
        ],
    )
    assert result["ids"][0] == "a" and len(result["ids"]) == 2
    assert sorted(result["duplicates"]) == ["a", "old"]
    assert mem.result("get", id="a")["payload"] == 1
    assert mem.result("get", id="old")["payload"] == 0
    assert mem.result("stats")["currentSize"] == 3
    assert mem.result("pushBatch", items=[]) == {"ids": [], "duplicates": []}


@pytest.mark.parametrize(
    "bad", [{"payload": 2, "priority": "x"}, {"id": "no-payload"}, "not an object", None]
)
def test_push_batch_one_invalid_member_adds_nothing(mem: Sidecar, bad: Any) -> None:
    error = mem.error("pushBatch", items=[{"payload": 1, "id": "first"}, bad, {"payload": 3}])
    assert_error(error, -32602, "InvalidParams")
    assert "items[1]" in error["message"], error
    assert mem.result("stats")["currentSize"] == 0
    assert_error(mem.error("get", id="first"), -32002, "ItemNotFound")


def test_push_batch_params(shared: Sidecar) -> None:
    assert_error(shared.error("pushBatch", {}), -32602, "InvalidParams", "items")
    assert_error(shared.error("pushBatch", items={}), -32602, "InvalidParams", "items")
    assert_error(shared.error("pushBatch", items=[], extra=1), -32602, "InvalidParams", "extra")


def test_capacity_is_all_or_nothing(spawn: Spawn, tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.json", max_capacity=3)
    sidecar = spawn("--memory", "--config", config)
    sidecar.result("pushBatch", items=[{"payload": 1}, {"payload": 2}])
    error = sidecar.error("pushBatch", items=[{"payload": 3, "id": "x"}, {"payload": 4}])
    assert_error(error, -32001, "CapacityExceeded")
    assert sidecar.result("stats")["currentSize"] == 2
    assert_error(sidecar.error("get", id="x"), -32002, "ItemNotFound")
    sidecar.result("push", payload=3)
    assert_error(sidecar.error("push", payload=4), -32001, "CapacityExceeded")
    assert_error(sidecar.error("pushBatch", items=[{"payload": 4}]), -32001, "CapacityExceeded")
    # Capacity counts live (pending + processing) items: a completed one frees its place.
    item = pop(sidecar)
    sidecar.result("complete", id=item["id"])
    sidecar.result("push", payload=5)
    assert sidecar.result("stats")["currentSize"] == 3


# -- pop, popBatch -------------------------------------------------------------------------


def test_pop_hands_out_by_priority_then_fifo(mem: Sidecar) -> None:
    order = ["low", "normal", "critical", "background", "high", "normal", "critical"]
    for n, priority in enumerate(order):
        mem.result("push", id=f"i{n}", payload=n, priority=priority)
    popped = [pop(mem)["id"] for _ in order]
    assert popped == ["i2", "i6", "i4", "i1", "i5", "i0", "i3"]
    assert mem.result("pop") is None


@pytest.mark.blackbox
def test_pop_item_and_lease(mem: Sidecar) -> None:
    assert mem.result("pop") is None
    mem.result("push", id="a", payload={"x": 1})
    before = now_ms(mem)
    item = pop(mem, leaseMs=5000)
    assert item["id"] == "a" and item["payload"] == {"x": 1}
    assert item["status"] == "processing" and item["attempts"] == 1
    assert before + 5000 <= item["leaseExpiresAt"] <= now_ms(mem) + 5000
    assert mem.result("get", id="a")["leaseId"] == item["leaseId"]
    mem.result("cancel", id="a")
    mem.result("requeue", id="a")
    again = pop(mem)
    assert again["leaseId"] != item["leaseId"], "a new pop gets a new lease id"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"timeout": 5}, "timeout"),
        ({"timeoutMs": -1}, "timeoutMs"),
        ({"timeoutMs": "5"}, "timeoutMs"),
        ({"leaseMs": 0}, "leaseMs"),
        ({"partition": -1}, "partition"),
    ],
)
def test_pop_invalid_params(shared: Sidecar, params: dict[str, Any], field: str) -> None:
    error = shared.error("pop", params)
    assert_error(error, -32602, "InvalidParams", field)


def test_unknown_param_is_named(shared: Sidecar) -> None:
    error = shared.error("pop", timeout=100)
    assert error["code"] == -32602
    assert "timeout" in error["message"] and error["data"]["field"] == "timeout"


@pytest.mark.blackbox
def test_pop_batch(mem: Sidecar) -> None:
    assert mem.result("popBatch") == []
    mem.result("pushBatch", items=[{"payload": n, "id": f"{n:03}"} for n in range(150)])
    first = mem.result("popBatch", max=10, leaseMs=1000)
    assert [i["id"] for i in first] == [f"{n:03}" for n in range(10)]
    assert all(i["status"] == "processing" and i["leaseId"] for i in first)
    default = mem.result("popBatch")
    assert len(default) == 100, "max defaults to batch_size (100)"
    assert len(mem.result("popBatch", max=1000)) == 40
    assert_error(mem.error("popBatch", max=0), -32602, "InvalidParams", "max")
    assert_error(mem.error("popBatch", max=1001), -32602, "InvalidParams", "max")
    assert_error(mem.error("popBatch", count=3), -32602, "InvalidParams", "count")


@pytest.mark.parametrize("partitioned", [False, True])
def test_partition_key_hands_out_one_at_a_time_in_push_order(
    spawn: Spawn, tmp_path: Path, partitioned: bool
) -> None:
    args: list[Any] = ["--memory"]
    if partitioned:
        config = write_config(tmp_path / "c.json", enable_partitioning=True, partition_count=4)
        args += ["--config", config]
    sidecar = spawn(*args)
    sidecar.result(
        "pushBatch",
        items=[
            {"id": "a", "payload": 1, "partitionKey": "user-1", "priority": "low"},
            {"id": "b", "payload": 2, "partitionKey": "user-1", "priority": "critical"},
            {"id": "c", "payload": 3},
        ],
    )
    first = sidecar.result("popBatch", max=10)
    assert sorted(i["id"] for i in first) == ["a", "c"], "b waits for a, whatever its priority"
    assert sidecar.result("pop") is None
    sidecar.result("complete", id="a")
    assert pop(sidecar)["id"] == "b"


def test_pop_partition_param(spawn: Spawn, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.json", enable_partitioning=True, partition_count=4)
    sidecar = spawn("--memory", "--config", config)
    sidecar.result("pushBatch", items=[{"payload": n, "partitionKey": f"k{n}"} for n in range(8)])
    got = []
    for partition in range(4):
        items = sidecar.result("popBatch", partition=partition, max=10)
        got += [i["id"] for i in items]
        assert all(i["status"] == "processing" for i in items)
    assert len(got) == 8 and len(set(got)) == 8, "every item lives in exactly one partition"
    assert_error(sidecar.error("pop", partition=4), -32602, "InvalidParams", "partition")


# -- complete, fail, cancel, requeue, extendLease --------------------------------------------


@pytest.mark.blackbox
def test_complete(mem: Sidecar) -> None:
    mem.result("pushBatch", items=[{"payload": 1, "id": "a"}, {"payload": 2, "id": "b"}])
    assert_error(mem.error("complete", id="a"), -32009, "InvalidState")  # still pending
    a = pop(mem)
    assert mem.result("complete", id="a", leaseId=a["leaseId"]) == {}
    assert mem.result("get", id="a")["status"] == "completed"
    assert_error(mem.error("complete", id="a"), -32009, "InvalidState")  # already done
    pop(mem)
    assert mem.result("complete", id="b") == {}  # leaseId is optional
    assert_error(mem.error("complete", id="zzz"), -32002, "ItemNotFound")
    assert_error(mem.error("complete", {}), -32602, "InvalidParams", "id")
    assert_error(mem.error("complete", id=1), -32602, "InvalidParams", "id")


def test_stale_lease_id_is_invalid_state(mem: Sidecar) -> None:
    mem.result("push", id="a", payload=1)
    first = pop(mem, leaseMs=50)
    deadline = mem.monotonic() + 5
    while mem.result("get", id="a")["status"] != "pending":  # the lease ran out
        assert mem.monotonic() < deadline
        mem.advance(0.02)
    item = mem.result("get", id="a")
    assert item["lastError"] == "lease expired" and item["attempts"] == 1
    second = pop_eventually(mem)  # an expired lease is a failed attempt: backoff applies
    assert second["leaseId"] != first["leaseId"] and second["attempts"] == 2
    extras: list[tuple[str, dict[str, Any]]] = [
        ("complete", {}),
        ("fail", {}),
        ("extendLease", {"leaseMs": 1000}),
    ]
    for method, extra in extras:
        error = mem.error(method, {"id": "a", "leaseId": first["leaseId"], **extra})
        assert_error(error, -32009, "InvalidState")
    assert mem.result("get", id="a")["status"] == "processing"
    assert mem.result("complete", id="a", leaseId=second["leaseId"]) == {}


@pytest.mark.blackbox
def test_lease_id_from_before_a_restart_is_stale(spawn: Spawn, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = spawn("--data-dir", data)
    first.result("push", id="a", payload=1)
    old = pop(first)
    assert first.shutdown() == 0
    second = spawn("--data-dir", data)
    assert second.result("get", id="a")["status"] == "pending"
    new = pop_eventually(second)
    assert new["leaseId"] != old["leaseId"], "lease ids stay unique across restarts"
    error = second.error("complete", id="a", leaseId=old["leaseId"])
    assert_error(error, -32009, "InvalidState")
    assert second.result("complete", id="a", leaseId=new["leaseId"]) == {}


@pytest.mark.blackbox
def test_fail_retries_then_dead_letters(mem: Sidecar) -> None:
    mem.result("push", id="a", payload=1, maxRetries=1)
    pop(mem)
    before = now_ms(mem)
    result = mem.result("fail", id="a", error="boom")
    assert result["retry"] is True and result["availableAt"] >= before
    item = mem.result("get", id="a")
    assert item["status"] == "pending" and item["lastError"] == "boom"
    assert item["availableAt"] == result["availableAt"]
    assert_error(mem.error("fail", id="a"), -32009, "InvalidState")  # pending now
    # The backoff (base_retry_delay 1 s) runs out; the same item comes back.
    item = pop_eventually(mem)
    assert item["id"] == "a" and item["attempts"] == 2
    assert mem.result("fail", id="a", error="again", leaseId=item["leaseId"]) == {"retry": False}
    item = mem.result("get", id="a")
    assert item["status"] == "failed" and item["lastError"] == "again"
    assert mem.wait_notification("itemFailed") == {"id": "a", "attempts": 2, "error": "again"}
    assert_error(mem.error("fail", id="zzz"), -32002, "ItemNotFound")
    assert_error(mem.error("fail", id="a", error=5), -32602, "InvalidParams", "error")


@pytest.mark.blackbox
def test_cancel(mem: Sidecar) -> None:
    mem.result("pushBatch", items=[{"payload": n, "id": str(n)} for n in range(3)])
    assert mem.result("cancel", id="1") == {}  # pending
    assert mem.result("get", id="1")["status"] == "cancelled"
    item = pop(mem)
    assert item["id"] == "0"
    assert mem.result("cancel", id="0") == {}  # processing
    assert mem.result("get", id="0")["status"] == "cancelled"
    assert_error(mem.error("complete", id="0", leaseId=item["leaseId"]), -32009, "InvalidState")
    assert_error(mem.error("cancel", id="0"), -32009, "InvalidState")  # already cancelled
    pop(mem)
    mem.result("complete", id="2")
    assert_error(mem.error("cancel", id="2"), -32009, "InvalidState")  # completed
    assert_error(mem.error("cancel", id="zzz"), -32002, "ItemNotFound")
    assert mem.result("pop") is None


@pytest.mark.blackbox
def test_requeue(mem: Sidecar) -> None:
    mem.result("pushBatch", items=[{"payload": n, "id": str(n), "maxRetries": 0} for n in range(3)])
    pop(mem)
    assert mem.result("fail", id="0", error="x") == {"retry": False}
    mem.result("cancel", id="1")
    assert_error(mem.error("requeue", id="2"), -32009, "InvalidState")  # pending
    assert mem.result("requeue", id="0") == {}
    assert mem.result("requeue", id="1") == {}
    item = mem.result("get", id="0")
    assert item["status"] == "pending" and item["attempts"] == 0
    # Back of its line: "2" was pushed after "0" and "1" but was never requeued.
    assert [pop(mem)["id"] for _ in range(3)] == ["2", "0", "1"]
    assert_error(mem.error("requeue", id="zzz"), -32002, "ItemNotFound")


@pytest.mark.blackbox
def test_extend_lease(mem: Sidecar) -> None:
    mem.result("push", id="a", payload=1)
    item = pop(mem, leaseMs=1000)
    before = now_ms(mem)
    result = mem.result("extendLease", id="a", leaseMs=60_000, leaseId=item["leaseId"])
    assert before + 60_000 <= result["leaseExpiresAt"] <= now_ms(mem) + 60_000
    assert mem.result("get", id="a")["leaseExpiresAt"] == result["leaseExpiresAt"]
    assert_error(mem.error("extendLease", id="a"), -32602, "InvalidParams", "leaseMs")
    assert_error(mem.error("extendLease", id="a", leaseMs=0), -32602, "InvalidParams", "leaseMs")
    assert_error(mem.error("extendLease", id="zzz", leaseMs=10), -32002, "ItemNotFound")
    mem.result("complete", id="a")
    assert_error(mem.error("extendLease", id="a", leaseMs=10), -32009, "InvalidState")


# Values that came out 1 ms too long when leaseMs went through seconds as a float.
ROUNDED_UP_BEFORE = [2007, 2011, 64001, 64004, 1_999_999]
HUGE = 2**64 - 1


def test_lease_ms_on_the_wire_is_the_lease_given(mem: Sidecar) -> None:
    """Exact to the millisecond for pop, popBatch and extendLease (issue 9 §5)."""
    mem.result("pushBatch", items=[{"id": f"i{n}", "payload": n} for n in range(15)])
    for n in ROUNDED_UP_BEFORE:
        item = pop(mem, leaseMs=n)
        assert item["leaseExpiresAt"] - item["updatedAt"] == n
        [batch_item] = mem.result("popBatch", max=1, leaseMs=n)
        assert batch_item["leaseExpiresAt"] - batch_item["updatedAt"] == n
        held = pop(mem, leaseMs=600_000)  # stays current while it is extended
        result = mem.result("extendLease", id=held["id"], leaseMs=n)
        assert result["leaseExpiresAt"] - mem.result("get", id=held["id"])["updatedAt"] == n


def test_huge_values_are_refused_naming_their_field(disk: Sidecar) -> None:
    """2^64 - 1 used to be refused as a bad "payload" (the journal could not store it)."""
    disk.result("push", id="x", payload=0)
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("push", {"payload": 1, "delayMs": HUGE}, "delayMs"),
        ("push", {"payload": 1, "ttlMs": HUGE}, "ttlMs"),
        ("push", {"payload": 1, "maxRetries": HUGE}, "maxRetries"),
        ("pushBatch", {"items": [{"payload": 1}, {"payload": 1, "ttlMs": HUGE}]}, "ttlMs"),
        ("pop", {"leaseMs": HUGE}, "leaseMs"),
        ("pop", {"timeoutMs": HUGE}, "timeoutMs"),
        ("pop", {"partition": HUGE}, "partition"),
        ("popBatch", {"leaseMs": HUGE}, "leaseMs"),
        ("popBatch", {"timeoutMs": HUGE}, "timeoutMs"),
        ("popBatch", {"partition": 1}, "partition"),
        ("extendLease", {"id": "x", "leaseMs": HUGE}, "leaseMs"),
    ]
    for method, params, field in cases:
        error = disk.error(method, params)
        assert error["code"] == -32602 and error["data"]["field"] == field, (method, error)
        assert f'"{field}"' in error["message"], error
    # Refused means unchanged: still the one pending item.
    assert [(i["id"], i["status"]) for i in list_all(disk)] == [("x", "pending")]


def test_a_bad_partition_is_refused_even_while_pops_wait(mem: Sidecar) -> None:
    """A waiting pop is served later: its bad partition used to fail whichever call served
    it (a push that had been applied got an InvalidParams)."""
    waiting = mem.request("pop", {"timeoutMs": 20_000})
    mem.sync()
    error = mem.error("pop", timeoutMs=20_000, partition=3)
    assert error["data"]["field"] == "partition" and "pop" in error["message"], error
    assert mem.result("push", id="a", payload=1) == {"id": "a"}
    assert mem.reply(waiting)["result"]["id"] == "a"
    assert mem.result("push", id="b", payload=2) == {"id": "b"}
    assert mem.result("stats")["currentSize"] == 2


# -- get, list, purge ----------------------------------------------------------------------


@pytest.mark.blackbox
def test_get(shared: Sidecar) -> None:
    error = shared.error("get", id="no-such-item")
    assert_error(error, -32002, "ItemNotFound")
    assert "no-such-item" in error["message"]
    assert_error(shared.error("get", {}), -32602, "InvalidParams", "id")


@pytest.mark.blackbox
def test_list_paging_and_filters(mem: Sidecar) -> None:
    priorities = ["high", "low", "normal"]
    items = [
        {"payload": n, "id": f"item-{n:04}", "priority": priorities[n % 3]} for n in range(250)
    ]
    mem.result("pushBatch", items=items)
    page = mem.result("list")
    assert len(page["items"]) == 100, "limit defaults to 100"
    assert type(page["next"]) is str
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 30}
        if after is not None:
            params["after"] = after
        page = mem.result("list", params)
        pages += 1
        assert len(page["items"]) <= 30
        seen.extend(i["id"] for i in page["items"])
        after = page["next"]
        if after is None:
            break
    assert seen == [i["id"] for i in items], "push order, each item once"
    assert pages in (9, 10)
    highs = list_all(mem, priority="high")
    assert [i["id"] for i in highs] == [i["id"] for i in items if i["priority"] == "high"]
    pop(mem)  # item-0000
    processing = mem.result("list", status="processing")
    assert [i["id"] for i in processing["items"]] == ["item-0000"]
    assert processing["next"] is None
    assert len(list_all(mem, status="pending")) == 249
    assert mem.result("list", status="pending", priority="high", limit=1)["items"][0]["id"] == (
        "item-0003"
    )
    assert len(mem.result("list", limit=1000)["items"]) == 250
    assert_error(mem.error("list", limit=1001), -32602, "InvalidParams", "limit")
    assert_error(mem.error("list", limit=0), -32602, "InvalidParams", "limit")
    assert_error(mem.error("list", status="done"), -32602, "InvalidParams", "status")
    assert_error(mem.error("list", priority="max"), -32602, "InvalidParams", "priority")


def test_list_cursor_survives_removals(mem: Sidecar) -> None:
    mem.result("pushBatch", items=[{"payload": n, "id": x} for n, x in enumerate("abcd")])
    pop(mem)
    mem.result("complete", id="a")
    page = mem.result("list", limit=1)
    assert [i["id"] for i in page["items"]] == ["a"]
    assert mem.result("purge", status="completed") == {"removed": 1}
    rest = mem.result("list", limit=10, after=page["next"])
    assert [i["id"] for i in rest["items"]] == ["b", "c", "d"] and rest["next"] is None
    assert mem.result("list", after=None)["next"] is None
    assert_error(mem.error("list", after="not-a-cursor"), -32602, "InvalidParams", "after")


@pytest.mark.blackbox
def test_purge(mem: Sidecar) -> None:
    mem.result("pushBatch", items=[{"payload": n, "id": str(n), "maxRetries": 0} for n in range(5)])
    for item_id in ("0", "1"):
        pop(mem)
        mem.result("complete", id=item_id)
    pop(mem)
    mem.result("fail", id="2")
    mem.result("cancel", id="3")
    assert mem.result("purge", status="completed") == {"removed": 2}
    assert mem.result("purge", status="completed") == {"removed": 0}
    assert mem.result("purge", status="failed") == {"removed": 1}
    assert mem.result("purge", status="cancelled") == {"removed": 1}
    for status in ("pending", "processing"):
        assert_error(mem.error("purge", status=status), -32602, "InvalidParams", "status")
    assert_error(mem.error("purge", status="all"), -32602, "InvalidParams", "status")
    assert_error(mem.error("purge", {}), -32602, "InvalidParams", "status")
    assert [i["id"] for i in list_all(mem)] == ["4"]


# -- stats, health, pause, resume, flush -----------------------------------------------------


STATS_FIELDS = {
    "totalEnqueued",
    "totalCompleted",
    "totalFailed",
    "totalRetries",
    "currentSize",
    "successRate",
    "avgWaitMs",
    "avgProcessingMs",
    "byStatus",
    "byPriority",
    "throughput",
    "storage",
}


@pytest.mark.blackbox
def test_stats(mem: Sidecar) -> None:
    stats = mem.result("stats")
    assert set(stats) >= STATS_FIELDS, STATS_FIELDS - set(stats)
    assert stats["successRate"] is None, "null until something finished"
    assert stats["byStatus"] == dict.fromkeys(STATUSES, 0)
    assert stats["byPriority"] == dict.fromkeys(PRIORITIES, 0)
    assert set(stats["throughput"]) >= {"enqueuePerSec", "dequeuePerSec"}
    assert stats["storage"].get("bytesOnDisk", 0) == 0
    assert stats["storage"].get("journalBytes", 0) == 0
    assert stats["storage"].get("lastSnapshotAt") is None
    mem.result(
        "pushBatch", items=[{"payload": n, "maxRetries": m} for n, m in enumerate([0, 0, 1, 0])]
    )
    assert mem.result("stats")["successRate"] is None
    first = pop(mem)
    mem.result("complete", id=first["id"])
    assert mem.result("stats")["successRate"] == 1.0
    second = pop(mem)
    mem.result("fail", id=second["id"])  # maxRetries 0: permanently failed
    third = pop(mem)
    assert mem.result("fail", id=third["id"])["retry"] is True
    stats = mem.result("stats")
    assert stats["totalEnqueued"] == 4 and stats["totalCompleted"] == 1
    assert stats["totalFailed"] == 1 and stats["totalRetries"] == 1
    assert stats["currentSize"] == 2, "pending + processing"
    assert stats["successRate"] == pytest.approx(0.5)
    assert stats["byStatus"] == {
        "pending": 2,
        "processing": 0,
        "completed": 1,
        "failed": 1,
        "cancelled": 0,
        "held": 0,
    }
    assert stats["destinations"] == {}
    assert stats["byPriority"]["normal"] == 2, "live items by priority"
    assert stats["throughput"]["enqueuePerSec"] > 0
    assert stats["avgWaitMs"] >= 0 and stats["avgProcessingMs"] >= 0
    assert_error(mem.error("stats", verbose=True), -32602, "InvalidParams", "verbose")


@pytest.mark.blackbox
def test_stats_storage_and_flush_on_disk(disk: Sidecar) -> None:
    storage = disk.result("stats")["storage"]
    assert {"bytesOnDisk", "journalBytes", "lastSnapshotAt"} <= set(storage)
    disk.result("pushBatch", items=[{"payload": "x" * 100} for _ in range(50)])
    storage = disk.result("stats")["storage"]
    assert storage["bytesOnDisk"] > 0 and storage["journalBytes"] > 0
    before = now_ms(disk)
    assert disk.result("flush") == {}
    storage = disk.result("stats")["storage"]
    assert type(storage["lastSnapshotAt"]) is int and storage["lastSnapshotAt"] >= before - 1000
    assert storage["bytesOnDisk"] > 0
    assert_error(disk.error("flush", now=True), -32602, "InvalidParams", "now")


@pytest.mark.blackbox
def test_health_pause_resume(mem: Sidecar) -> None:
    assert mem.result("health") == {"healthy": True, "breaker": "closed", "paused": False}
    mem.result("push", id="a", payload=1)
    assert mem.result("pause") == {}
    assert mem.result("pause") == {}  # idempotent
    health = mem.result("health")
    assert health["paused"] is True and health["breaker"] == "closed"
    assert mem.result("pop") is None
    assert mem.result("popBatch", max=5) == []
    assert mem.result("push", id="b", payload=2) == {"id": "b"}, "pushes still accepted"
    assert mem.result("resume") == {}
    assert mem.result("health")["paused"] is False
    assert pop(mem)["id"] == "a"
    for method in ("health", "pause", "resume"):
        assert_error(mem.error(method, x=1), -32602, "InvalidParams", "x")


@pytest.mark.process
def test_pause_is_durable_across_restart(spawn: Spawn, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = spawn("--data-dir", data)
    first.result("push", id="a", payload=1)
    first.result("pause")
    assert first.shutdown() == 0
    second = spawn("--data-dir", data)
    assert second.result("health")["paused"] is True
    assert second.result("pop") is None
    second.result("resume")
    second.kill9()  # resume was acknowledged: durable
    third = spawn("--data-dir", data)
    assert third.result("health")["paused"] is False
    assert pop(third)["id"] == "a"


@pytest.mark.blackbox
def test_breaker_health_and_notifications(spawn: Spawn, tmp_path: Path) -> None:
    # A long retry delay: the breaker's cool-down is the only timer running. Set by the
    # fail itself: the backoff is full jitter (0 to base_retry_delay), and a small draw
    # once brought the failed item back as the half-open probe.
    config = write_config(
        tmp_path / "c.json",
        breaker_failure_threshold=1,
        breaker_cooldown=0.3,
    )
    sidecar = spawn("--memory", "--config", config)
    sidecar.result("pushBatch", items=[{"payload": n, "id": str(n)} for n in range(3)])
    item = pop(sidecar)
    retry = sidecar.result("fail", id=item["id"], error="downstream 503", retryAfterMs=600_000)
    assert retry["retry"] is True
    opened = sidecar.wait_notification("breakerChanged")
    assert opened["state"] == "open" and type(opened["reason"]) is str and opened["reason"]
    health = sidecar.result("health")
    assert health["healthy"] is False and health["breaker"] == "open"
    assert type(health["reason"]) is str and health["reason"]
    assert sidecar.result("pop") is None, "nothing handed out while open"
    assert sidecar.result("popBatch") == []
    # No request needed, and on time (a bug held it back until the next request).
    half = sidecar.wait_notification("breakerChanged", 2, timeout=3)
    assert half["state"] == "halfOpen"
    assert sidecar.result("health")["breaker"] == "halfOpen"
    assert sidecar.result("health")["healthy"] is False
    probe = pop(sidecar)
    assert sidecar.result("pop") is None, "one probe at a time"
    sidecar.result("complete", id=probe["id"])
    closed = sidecar.wait_notification("breakerChanged", 3)
    assert closed["state"] == "closed"
    assert sidecar.result("health") == {"healthy": True, "breaker": "closed", "paused": False}
    assert len(sidecar.result("popBatch")) == 1, "the failed item waits out its backoff"


@pytest.mark.blackbox
def test_shutdown_then_shutting_down_in_the_same_write(mem: Sidecar) -> None:
    mem.send_raw(
        b'{"jsonrpc":"2.0","id":"before","method":"push","params":{"payload":1}}\n'
        b'{"jsonrpc":"2.0","id":"stop","method":"shutdown"}\n'
        b'{"jsonrpc":"2.0","id":"after","method":"ping"}\n'
        b'{"jsonrpc":"2.0","id":"after2","method":"push","params":{"payload":2}}\n'
    )
    assert "result" in mem.reply("before")
    assert mem.reply("stop")["result"] == {}
    for request_id in ("after", "after2"):
        assert_error(mem.reply(request_id)["error"], -32003, "ShuttingDown")
    assert mem.wait_exit() == 0
    assert mem.order == ["before", "stop", "after", "after2"]
    assert mem.stdout_closed


def test_shutdown_inside_a_batch(mem: Sidecar) -> None:
    replies = mem.batch(
        [request("ping", 1), request("shutdown", 2), request("ping", 3), request("push", 4)]
    )
    by_id = {r["id"]: r for r in replies}
    assert by_id[1]["result"] == {"pong": True} and by_id[2]["result"] == {}
    assert by_id[3]["error"]["code"] == -32003 and by_id[4]["error"]["code"] == -32003
    assert mem.wait_exit() == 0


def test_shutdown_params(shared: Sidecar) -> None:
    assert_error(shared.error("shutdown", now=True), -32602, "InvalidParams", "now")


@pytest.mark.blackbox
def test_method_not_found(shared: Sidecar) -> None:
    error = shared.error("popp")
    assert_error(error, -32601, "MethodNotFound")
    assert "popp" in error["message"]
    assert_error(shared.error("PING"), -32601, "MethodNotFound")
    assert_error(shared.error("rpc.discover"), -32601, "MethodNotFound")
