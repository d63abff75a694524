"""Ownership of a data directory: an OS lock on its ``LOCK`` file.

The store holds an exclusive lock for its whole life; ``verify`` takes a shared one. Both
are non-blocking: a second opener gets :class:`Locked` at once. ``flock`` locks belong to
the open file description, so a second open in the *same* process is refused too, and
the kernel drops the lock when the process dies (no stale lock after ``kill -9``).
Acquiring writes nothing, so a refused opener leaves the directory byte-for-byte as it was.
"""

from __future__ import annotations

import os
import sys

from sync_queue.errors import Locked, PersistenceError

__all__ = ["LOCK_NAME", "DirLock"]

LOCK_NAME = "LOCK"

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock(fd: int, shared: bool) -> None:
        # Windows has no shared byte-range lock in msvcrt; verify locks exclusively there.
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock(fd: int, shared: bool) -> None:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


class DirLock:
    """A held lock on ``<dir>/LOCK``; call :meth:`release` (or let the process end)."""

    def __init__(self, fd: int, path: str) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def acquire(cls, dirpath: str, *, shared: bool = False) -> DirLock | None:
        """Lock ``dirpath``. A shared lock does not create the LOCK file: if there is none,
        there is no store to race with and ``None`` is returned (nothing is written)."""
        path = os.path.join(dirpath, LOCK_NAME)
        flags = os.O_RDONLY if shared else os.O_RDWR | os.O_CREAT
        try:
            fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), 0o600)
        except FileNotFoundError:
            if shared:
                return None
            raise PersistenceError(f"cannot create lock file {path}: no such directory") from None
        except OSError as e:
            raise PersistenceError(f"cannot open lock file {path}: {e.strerror or e}") from e
        try:
            _lock(fd, shared)
        except OSError as e:
            os.close(fd)
            raise Locked(
                f"the data directory {dirpath} is in use by another sync-queue store "
                f"(its lock file {path} is held); close that one first"
            ) from e
        return cls(fd, path)

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                _unlock(fd)
            finally:
                os.close(fd)
