"""``QueueCore`` on its own: single-threaded, given ``now``; no clock, no lock, no storage."""

from __future__ import annotations

import random

import pytest

from sync_queue import InvalidState, ItemStatus, QueueConfig, SyncItem
from sync_queue.core import QueueCore
from sync_queue.legality import FROM_STATUS
from sync_queue.ops import Cancel, Complete, Requeue
from sync_queue.state import ItemFailed

T = 1_700_000_000_000


def test_the_core_runs_on_the_time_it_is_given() -> None:
    core = QueueCore(QueueConfig(lease_timeout=10, max_retries=0), rng=random.Random(1))
    core.push(T, SyncItem.new("x").with_id("a"))
    [item] = core.pop(T, 1)
    assert item.lease_expires_at == T + 10_000
    core.advance(T + 9_999)
    assert core.item("a").status is ItemStatus.PROCESSING
    core.advance(T + 10_000)  # the lease ran out: out of retries, the item is dead
    assert core.item("a").status is ItemStatus.FAILED
    assert core.take_events() == [ItemFailed("a", 1, "lease expired")]
    assert core.take_events() == []


def test_requests_are_checked_against_the_one_transition_table() -> None:
    core = QueueCore(QueueConfig())
    core.push(T, SyncItem.new("x").with_id("a"))
    assert ItemStatus.PENDING not in FROM_STATUS[Complete]
    with pytest.raises(InvalidState):
        core.complete(T, "a")
    assert ItemStatus.PENDING not in FROM_STATUS[Requeue]
    with pytest.raises(InvalidState):
        core.requeue(T, "a")
    assert ItemStatus.PENDING in FROM_STATUS[Cancel]
    core.cancel(T, "a")
    assert core.item("a").status is ItemStatus.CANCELLED
