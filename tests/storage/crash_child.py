"""Child of the kill -9 test: appends and commits in "always" mode, printing each ack.

Usage: crash_child.py DIR START [KEY_HEX]. Prints ``ACK <record>`` only after commit
returned, i.e. after the record's group was written and fsync'd.
"""

from __future__ import annotations

import os
import random
import sys
import threading

from sync_queue.storage import Store


def main() -> None:
    d, start = sys.argv[1], int(sys.argv[2])
    key = bytes.fromhex(sys.argv[3]) if len(sys.argv) > 3 else None

    def fold(prev: bytes | None, records: object) -> bytes:
        import json

        items = json.loads(prev) if prev else []
        items.extend(r.decode() for r in records)  # type: ignore[attr-defined]
        return json.dumps(items).encode()

    s = Store.open(
        d,
        key=key,
        compression_level=3,
        fold=fold,
        segment_max_bytes=8192,
        compact_after_bytes=32768,
    )
    s.take_recovery()
    print("READY", flush=True)
    engine = threading.Lock()
    out = threading.Lock()
    counter = [start]

    def worker() -> None:
        rnd = random.Random()
        while True:
            with engine:
                n = rnd.randint(1, 5)
                recs = [f"{counter[0] + i}".encode() for i in range(n)]
                counter[0] += n
                t = s.append(recs)
            s.commit(t)
            with out:
                os.write(1, b"".join(b"ACK " + r + b"\n" for r in recs))

    for _ in range(4):
        threading.Thread(target=worker, daemon=True).start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
