"""``python -m sync_queue`` and the ``sync-queue-sidecar`` console script.

Until the stdio server lands (issue 4), this runs a short demo of the Python API: push a few
items, work them off with one failure and retry, and print the metrics.
"""

from __future__ import annotations

import sys

from . import Priority, QueueConfig, SyncItem, SyncQueue


def main(argv: list[str] | None = None) -> int:
    q = SyncQueue.with_config(QueueConfig(base_retry_delay=0.01, max_retry_delay=0.05))
    q.push(SyncItem.new({"task": "send-email"}, Priority.LOW))
    q.push(SyncItem.new({"task": "save-note"}, Priority.HIGH).with_partition_key("doc-9"))
    q.push(SyncItem.new({"task": "save-note-2"}, Priority.CRITICAL).with_partition_key("doc-9"))
    q.push(SyncItem.new({"task": "flaky-upload"}).with_max_retries(2))
    failed_once: set[str] = set()
    while (item := q.pop(timeout=0.2)) is not None:
        if item.payload["task"] == "flaky-upload" and item.id not in failed_once:
            failed_once.add(item.id)
            retry = q.mark_failed(item.id, "network unreachable", item.lease_id)
            print(f"failed  {item.payload['task']:<14} attempt {item.attempts} retry={retry}")
            continue
        q.mark_completed(item.id, item.lease_id)
        print(f"synced  {item.payload['task']:<14} priority={item.priority.wire}")
    m = q.metrics()
    print(
        f"enqueued={m.total_enqueued} completed={m.total_completed} "
        f"retries={m.total_retries} success_rate={m.success_rate}"
    )
    q.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
