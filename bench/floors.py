"""The machine's own limits that benchmark figures are measured against."""

from __future__ import annotations

import os
import time


def fsync_floor(directory: str, n: int) -> float:
    """Appends of one small (120 B) record, each followed by fdatasync: how many per second."""
    path = os.path.join(directory, "fsync-floor")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    record = b"x" * 120
    try:
        os.write(fd, record)
        os.fdatasync(fd)
        start = time.perf_counter()
        for _ in range(n):
            os.write(fd, record)
            os.fdatasync(fd)
        return n / (time.perf_counter() - start)
    finally:
        os.close(fd)
        os.unlink(path)
