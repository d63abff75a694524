"""Child process for the kill -9 test: works a persistent queue under load, reports acks.

Usage: python crash_child.py DATA_DIR ROUND. Four threads push, pop, complete and fail in
"always" durability mode. Before each push it prints ``T id`` (tried), and after each call
returns ``P id`` (push acknowledged) or ``C id`` (completion acknowledged). A line is only
printed once the call returned, i.e. once the change was durable.
"""

from __future__ import annotations

import sys
import threading

from sync_queue import QueueConfig, SyncItem, SyncQueue

out_lock = threading.Lock()


def say(line: str) -> None:
    with out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def main() -> None:
    data_dir, round_no = sys.argv[1], sys.argv[2]
    q = SyncQueue(
        QueueConfig(
            persistence_path=data_dir,
            max_capacity=1_000_000,
            base_retry_delay=0,
            max_retry_delay=0,
            max_retries=1_000,
            breaker_failure_threshold=1_000_000,
            persistence_interval=0.05,
        )
    )
    say("READY")

    def work(t: int) -> None:
        n = 0
        while True:
            n += 1
            item_id = f"r{round_no}-t{t}-{n}"
            say(f"T {item_id}")
            q.push(SyncItem.new({"n": n}).with_id(item_id))
            say(f"P {item_id}")
            if n % 2 == 0:
                for it in q.pop_batch(3):
                    if it.payload["n"] % 5 == 0:
                        q.mark_failed(it.id, "flaky", it.lease_id)
                    else:
                        q.mark_completed(it.id, it.lease_id)
                        say(f"C {it.id}")

    for t in range(4):
        threading.Thread(target=work, args=(t,), daemon=True).start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
