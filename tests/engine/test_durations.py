"""Durations reach the engine as exact integer milliseconds (issue 9 §5).

``pop(leaseMs=2007)`` used to give a 2008 ms lease: the wire's integer went through seconds
as a float (``2007 / 1000 * 1000`` is ``2007.0000000000002``) and was rounded up. These
tests check every value the issue counted (1..2,000,000) and, by property, the whole range.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sync_queue import ManualClock, QueueConfig, SyncItem, SyncQueue
from sync_queue.durations import MAX_DURATION_MS, to_ms, to_seconds
from sync_queue.errors import InvalidParams
from sync_queue.methods import QueueDispatcher
from sync_queue.persistence import open_engine
from sync_queue.protocol import PLAIN_CALL

ISSUE_RANGE = range(1, 2_000_001)


def test_every_ms_value_the_issue_counted_is_exact() -> None:
    # timedelta(milliseconds=n) is how the sidecar hands the wire's integers to the queue;
    # n / 1000 is what a Python caller writes for n ms in seconds.
    wrong = [n for n in ISSUE_RANGE if to_ms(timedelta(milliseconds=n), "leaseMs") != n]
    assert wrong == []
    wrong = [n for n in ISSUE_RANGE if to_ms(n / 1000, "lease") != n]
    assert wrong == []


@given(st.integers(0, MAX_DURATION_MS))
@example(2007)
@example(MAX_DURATION_MS)
def test_ms_survive_every_form_of_duration(n: int) -> None:
    assert to_ms(timedelta(milliseconds=n), "d") == n
    assert to_ms(n / 1000, "d") == n
    if n % 1000 == 0:
        assert to_ms(n // 1000, "d") == n  # an int is whole seconds


@given(st.integers(0, MAX_DURATION_MS * 1000))
def test_microseconds_round_up_to_the_next_ms(us: int) -> None:
    assert to_ms(timedelta(microseconds=us), "d") == math.ceil(us / 1000) == -(-us // 1000)
    assert to_seconds(timedelta(microseconds=us), "d") == us / 1_000_000


def test_a_tiny_positive_duration_still_delays() -> None:
    assert to_ms(1e-9, "delay") == 1
    assert to_ms(timedelta(microseconds=1), "delay") == 1
    assert to_ms(0.0, "delay") == to_ms(0, "delay") == 0


@pytest.mark.parametrize(
    "value",
    [
        timedelta(milliseconds=MAX_DURATION_MS + 1),
        MAX_DURATION_MS // 1000 + 1,
        2**64 - 1,
        1e300,
        float("inf"),
        float("nan"),
        -1,
        -0.001,
        timedelta(microseconds=-1),
        "5",
        True,
    ],
)
def test_out_of_range_durations_name_their_field(value: Any) -> None:
    with pytest.raises(InvalidParams) as info:
        to_ms(value, "ttl")
    assert info.value.data["field"] == "ttl"
    assert info.value.message.startswith("ttl: ")


# -- the same through the engine and the method table ---------------------------------------


def dispatcher(clock: ManualClock) -> QueueDispatcher:
    return QueueDispatcher(open_engine(QueueConfig(), clock=clock), data_dir=None, recovered={})


@settings(max_examples=300, deadline=None)
@given(st.integers(1, MAX_DURATION_MS))
@example(2007)
def test_wire_lease_ms_is_the_lease_the_engine_gives(lease_ms: int) -> None:
    clock = ManualClock()
    d = dispatcher(clock)
    try:
        d.handle("pushBatch", {"items": [{"payload": 1, "id": "a"}]}, PLAIN_CALL)
        d.commit()
        item = d.handle("pop", {"leaseMs": lease_ms}, PLAIN_CALL)
        assert item["leaseExpiresAt"] - clock.now_ms() == lease_ms
        clock.advance(lease_ms - 1)  # the lease is still current
        extended = d.handle("extendLease", {"id": "a", "leaseMs": lease_ms}, PLAIN_CALL)
        assert extended["leaseExpiresAt"] - clock.now_ms() == lease_ms
        d.handle("complete", {"id": "a"}, PLAIN_CALL)
        d.handle("pushBatch", {"items": [{"payload": 2, "id": "b"}]}, PLAIN_CALL)
        [batch_item] = d.handle("popBatch", {"leaseMs": lease_ms, "max": 1}, PLAIN_CALL)
        assert batch_item["leaseExpiresAt"] - clock.now_ms() == lease_ms
    finally:
        d.close()


@settings(max_examples=200, deadline=None)
@given(st.integers(0, MAX_DURATION_MS), st.integers(1, MAX_DURATION_MS))
@example(2007, 2007)
def test_wire_delay_and_ttl_are_exact(delay_ms: int, ttl_ms: int) -> None:
    clock = ManualClock()
    d = dispatcher(clock)
    try:
        d.handle(
            "push", {"payload": 1, "id": "a", "delayMs": delay_ms, "ttlMs": ttl_ms}, PLAIN_CALL
        )
        item = d.handle("get", {"id": "a"}, PLAIN_CALL)
        assert item["availableAt"] - item["createdAt"] == delay_ms
        assert item["expiresAt"] - item["createdAt"] == ttl_ms
    finally:
        d.close()


def test_python_api_lease_is_exact(clock: ManualClock) -> None:
    queue = SyncQueue(QueueConfig(), clock=clock, maintenance_thread=False)
    try:
        queue.push(SyncItem(1, id="a"))
        item = queue.pop(lease=timedelta(milliseconds=2007))
        assert item is not None and item.lease_expires_at == clock.now_ms() + 2007
        assert queue.extend_lease("a", 2.007) == clock.now_ms() + 2007
    finally:
        queue.shutdown()
