"""sync-queue: a persistent, priority-ordered, at-least-once work queue.

The public Python API (names mirror the seed's Rust API)::

    from sync_queue import SyncQueue, SyncItem, Priority, QueueConfig
    q = SyncQueue.with_config(QueueConfig(max_capacity=50_000))
    q.push(SyncItem.new({"task": "x"}, Priority.HIGH).with_max_retries(5))
    item = q.pop()
    q.mark_completed(item.id, item.lease_id)
"""

from .breaker import BreakerChanged
from .clock import Clock, ManualClock, SystemClock
from .config import QueueConfig
from .errors import (
    CapacityExceeded,
    CompressionError,
    DataDirUnusable,
    DuplicateItem,
    EncryptionError,
    InvalidParams,
    InvalidState,
    ItemNotFound,
    Locked,
    PersistenceError,
    QueueError,
    ShuttingDown,
)
from .item import Item, ItemStatus, Priority, SyncItem
from .metrics import Metrics, Throughput
from .queue import FailResult, Health, Page, PushBatchResult, PushResult, SyncQueue
from .state import ItemFailed

__version__ = "0.1.0"

__all__ = [
    "BreakerChanged",
    "CapacityExceeded",
    "Clock",
    "CompressionError",
    "DataDirUnusable",
    "DuplicateItem",
    "EncryptionError",
    "FailResult",
    "Health",
    "InvalidParams",
    "InvalidState",
    "Item",
    "ItemFailed",
    "ItemNotFound",
    "ItemStatus",
    "Locked",
    "ManualClock",
    "Metrics",
    "Page",
    "PersistenceError",
    "Priority",
    "PushBatchResult",
    "PushResult",
    "QueueConfig",
    "QueueError",
    "ShuttingDown",
    "SyncItem",
    "SyncQueue",
    "SystemClock",
    "Throughput",
    "__version__",
]
