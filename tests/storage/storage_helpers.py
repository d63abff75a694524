"""Shared helpers of the storage tests (imported by name; pytest puts this dir on sys.path)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
from collections.abc import Iterator

from sync_queue.storage import FileIO

LONG = os.environ.get("SYNC_QUEUE_LONG_TESTS") == "1"


def fold_json(prev: bytes | None, records: Iterator[bytes]) -> bytes:
    """A trivial fold: the snapshot is the JSON list of every record ever appended."""
    items: list[str] = json.loads(prev) if prev else []
    items.extend(r.decode() for r in records)
    return json.dumps(items).encode()


def state_of(store_recovery: object) -> list[bytes]:
    """Everything a recovery holds, as the flat list of records (using fold_json)."""
    from sync_queue.storage import Recovery

    assert isinstance(store_recovery, Recovery)
    snap = store_recovery.snapshot
    base = [s.encode() for s in json.loads(snap)] if snap else []
    return base + list(store_recovery.records())


def hash_dir(path: str) -> dict[str, str]:
    """name -> sha256 of every entry (directories marked), to prove nothing changed."""
    out: dict[str, str] = {}
    for root, dirs, files in os.walk(path):
        for d in dirs:
            out[os.path.relpath(os.path.join(root, d), path) + "/"] = "dir"
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, path)] = hashlib.sha256(fh.read()).hexdigest()
    return out


class FaultyIO(FileIO):
    """Counts syncs and writes; raises OSError on the n-th call of a chosen operation."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fsyncs = 0
        self.writes = 0
        self.fail_fsync_at: int | None = None  # 1-based count of fsync calls
        self.fail_write_at: int | None = None
        self.fail_read: str | None = None  # substring of a path whose reads fail
        self.short_writes = False
        self.errno = errno.EIO

    def fsync(self, fd: int) -> None:
        with self.lock:
            self.fsyncs += 1
            n = self.fsyncs
        if self.fail_fsync_at is not None and n >= self.fail_fsync_at:
            raise OSError(self.errno, os.strerror(self.errno))
        super().fsync(fd)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        with self.lock:
            self.writes += 1
            n = self.writes
        if self.fail_write_at is not None and n >= self.fail_write_at:
            # A failing write may still have written a prefix (as a full disk does).
            half = len(data) // 2
            if half:
                os.write(fd, bytes(data[:half]))
            raise OSError(self.errno, os.strerror(self.errno))
        if self.short_writes and len(data) > 1:
            return os.write(fd, data[: len(data) // 2 or 1])
        return super().write(fd, data)

    def read_file(self, path: str) -> bytes:
        if self.fail_read is not None and self.fail_read in path:
            raise OSError(errno.EIO, os.strerror(errno.EIO), path)
        return super().read_file(path)
