"""Metrics: counters, wait and processing times, throughput over a sliding window.

The recorder is fed by the engine's apply function with the times in the operation records,
so replaying the journal rebuilds the same counters. Percentiles come from the most recent
``SAMPLES`` observations (a bounded ring), averages from all observations since the start.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Metrics", "MetricsRecorder", "Throughput"]

SAMPLES = 4096


@dataclass(frozen=True)
class Throughput:
    enqueue_per_sec: float
    dequeue_per_sec: float


@dataclass(frozen=True)
class Metrics:
    total_enqueued: int
    total_dequeued: int
    total_completed: int
    total_failed: int  # items that ran out of retries (became `failed`)
    total_retries: int  # failed attempts that were retried
    total_cancelled: int
    current_size: int  # held + pending + processing (what capacity counts)
    success_rate: float | None  # completed / (completed + failed); None until either happens
    avg_wait_ms: float
    avg_processing_ms: float
    wait_ms_p50: float
    wait_ms_p95: float
    wait_ms_p99: float
    processing_ms_p50: float
    processing_ms_p95: float
    processing_ms_p99: float
    by_status: dict[str, int]
    by_priority: dict[str, int]  # held + pending + processing items by priority
    throughput: Throughput
    storage: dict[str, Any] = field(default_factory=dict)


def _percentile(ordered: list[int], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (0.0 when empty)."""
    if not ordered:
        return 0.0
    rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return float(ordered[rank])


class MetricsRecorder:
    __slots__ = (
        "_buckets",
        "_window_s",
        "cancelled",
        "completed",
        "dequeued",
        "enqueued",
        "failed",
        "processing_count",
        "processing_samples",
        "processing_sum",
        "retries",
        "wait_count",
        "wait_samples",
        "wait_sum",
    )

    def __init__(self, window_ms: int) -> None:
        self.enqueued = 0
        self.dequeued = 0
        self.completed = 0
        self.failed = 0
        self.retries = 0
        self.cancelled = 0
        self.wait_sum = 0
        self.wait_count = 0
        self.processing_sum = 0
        self.processing_count = 0
        self.wait_samples: deque[int] = deque(maxlen=SAMPLES)
        self.processing_samples: deque[int] = deque(maxlen=SAMPLES)
        # Throughput: one [second, enqueued, dequeued] bucket per second that saw activity.
        self._window_s = max(1, round(window_ms / 1000))  # one bucket per second
        self._buckets: deque[list[int]] = deque()

    def _bucket(self, t: int) -> list[int]:
        second = t // 1000
        buckets = self._buckets
        if buckets and buckets[-1][0] >= second:
            return buckets[-1]
        bucket = [second, 0, 0]
        buckets.append(bucket)
        if len(buckets) > self._window_s:
            buckets.popleft()
        return bucket

    def on_enqueue(self, t: int, n: int) -> None:
        self.enqueued += n
        self._bucket(t)[1] += n

    def on_dequeue_all(self, t: int, waits_ms: list[int]) -> None:
        """The items one pop handed out at ``t``, each having waited ``waits_ms[i]``."""
        n = len(waits_ms)
        if not n:
            return
        self.dequeued += n
        self._bucket(t)[2] += n
        self.wait_sum += sum(waits_ms)
        self.wait_count += n
        self.wait_samples.extend(waits_ms)

    def on_processed(self, processing_ms: int) -> None:
        self.processing_sum += processing_ms
        self.processing_count += 1
        self.processing_samples.append(processing_ms)

    def shift(self, ms: int) -> None:
        """The queue's clock was re-based by ``ms``: move the throughput window with it."""
        for bucket in self._buckets:
            bucket[0] += ms // 1000

    def throughput(self, now: int) -> Throughput:
        oldest = now // 1000 - self._window_s + 1
        enq = deq = 0
        for second, e, d in self._buckets:
            if second >= oldest:
                enq += e
                deq += d
        return Throughput(enq / self._window_s, deq / self._window_s)

    def snapshot(
        self, now: int, current_size: int, by_status: dict[str, int], by_priority: dict[str, int]
    ) -> Metrics:
        finished = self.completed + self.failed
        waits = sorted(self.wait_samples)
        procs = sorted(self.processing_samples)
        return Metrics(
            total_enqueued=self.enqueued,
            total_dequeued=self.dequeued,
            total_completed=self.completed,
            total_failed=self.failed,
            total_retries=self.retries,
            total_cancelled=self.cancelled,
            current_size=current_size,
            success_rate=self.completed / finished if finished else None,
            avg_wait_ms=self.wait_sum / self.wait_count if self.wait_count else 0.0,
            avg_processing_ms=(
                self.processing_sum / self.processing_count if self.processing_count else 0.0
            ),
            wait_ms_p50=_percentile(waits, 0.50),
            wait_ms_p95=_percentile(waits, 0.95),
            wait_ms_p99=_percentile(waits, 0.99),
            processing_ms_p50=_percentile(procs, 0.50),
            processing_ms_p95=_percentile(procs, 0.95),
            processing_ms_p99=_percentile(procs, 0.99),
            by_status=by_status,
            by_priority=by_priority,
            throughput=self.throughput(now),
        )

    # -- snapshots of the engine state --

    def to_record(self) -> dict[str, Any]:
        return {
            "enqueued": self.enqueued,
            "dequeued": self.dequeued,
            "completed": self.completed,
            "failed": self.failed,
            "retries": self.retries,
            "cancelled": self.cancelled,
            "waitSum": self.wait_sum,
            "waitCount": self.wait_count,
            "processingSum": self.processing_sum,
            "processingCount": self.processing_count,
            "waitSamples": list(self.wait_samples),
            "processingSamples": list(self.processing_samples),
            "buckets": [list(b) for b in self._buckets],
        }

    def load_record(self, record: dict[str, Any]) -> None:
        self.enqueued = record["enqueued"]
        self.dequeued = record["dequeued"]
        self.completed = record["completed"]
        self.failed = record["failed"]
        self.retries = record["retries"]
        self.cancelled = record["cancelled"]
        self.wait_sum = record["waitSum"]
        self.wait_count = record["waitCount"]
        self.processing_sum = record["processingSum"]
        self.processing_count = record["processingCount"]
        self.wait_samples.extend(record["waitSamples"])
        self.processing_samples.extend(record["processingSamples"])
        self._buckets.extend(list(b) for b in record["buckets"][-self._window_s :])
