"""The machine's own limits that benchmark figures are measured against."""

from __future__ import annotations

import os
import time


def fsync_floor(directory: str, n: int, size: int = 120, preallocated: bool = False) -> float:
    """Writes of one small record (``size`` bytes), each followed by fdatasync: how many per
    second. Appended to a file that grows with each (the filesystem commits the size change
    at each fdatasync too), or, ``preallocated``, written in turn into space allocated
    beforehand (``posix_fallocate``), as the journal writes its segments."""
    path = os.path.join(directory, "fsync-floor")
    flags = os.O_WRONLY | os.O_CREAT | (0 if preallocated else os.O_APPEND)
    fd = os.open(path, flags, 0o600)
    record = b"x" * size
    try:
        if preallocated:
            os.posix_fallocate(fd, 0, (n + 1) * size)
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
