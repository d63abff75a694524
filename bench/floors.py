"""The machine's own limits that benchmark figures are measured against."""

from __future__ import annotations

import os
import time


def fsync_floor(directory: str, n: int, size: int = 120) -> float:
    """Appends of one small record (``size`` bytes), each followed by fdatasync: how many per
    second. The file grows with every append (``bench/targets.py`` also measures writes into
    preallocated space, as the journal does)."""
    path = os.path.join(directory, "fsync-floor")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    record = b"x" * size
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
