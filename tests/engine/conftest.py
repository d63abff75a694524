from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from sync_queue import ManualClock, QueueConfig, SyncQueue
from sync_queue.ops import Op, encode_op


class RecordingJournal:
    """Keeps every operation record, encoded as the storage layer will get it."""

    def __init__(self) -> None:
        self.records: list[bytes] = []

    def append(self, op: Op) -> int:
        self.records.append(encode_op(op))
        return len(self.records)

    def append_all(self, ops: Sequence[Op]) -> int:
        self.records.extend(encode_op(op) for op in ops)
        return len(self.records)

    def commit(self, ticket: int) -> None:
        pass


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_queue(clock: ManualClock) -> Iterator[Callable[..., SyncQueue]]:
    made: list[SyncQueue] = []

    def make(config: QueueConfig | None = None, **kwargs: Any) -> SyncQueue:
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("rng", random.Random(7))
        kwargs.setdefault("maintenance_thread", False)
        q = SyncQueue(config or QueueConfig(), **kwargs)
        made.append(q)
        return q

    yield make
    for q in made:
        q.shutdown()


@pytest.fixture
def q(make_queue: Callable[..., SyncQueue]) -> SyncQueue:
    return make_queue()
