"""Ownership of a data directory: an OS lock on its ``LOCK`` file.

The store holds an exclusive lock for its whole life; ``verify`` takes a shared one. A
second opener gets :class:`Locked`: at once, or, with a ``timeout``, once it has waited
that long for the owner to let go (the sidecar waits 2 s by default, so a restart right
after the previous process died, or while it is still writing its last snapshot, works).
``flock`` locks belong to the open file description, so a second open in the *same*
process is refused too, and the kernel drops the lock when the process dies (no stale
lock after ``kill -9``). Acquiring writes nothing, so a refused opener leaves the
directory byte-for-byte as it was.

``LOCK`` is opened with ``O_NOFOLLOW``: a symlink planted under that name is refused with
:class:`DataDirUnusable`, never followed (its target is never created, opened or locked).
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import time

from sync_queue.errors import DataDirUnusable, Locked

__all__ = ["LOCK_NAME", "DirLock"]

LOCK_NAME = "LOCK"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # 0 on Windows: checked with islink there
_POLL_S = 0.02  # how often a waiting opener tries again
# What a lock held by someone else looks like; any other error (ENOLCK on a network file
# system, EBADF, ...) is a directory that cannot be locked at all, not one that is in use.
_HELD = frozenset({errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES})

log = logging.getLogger("sync_queue.storage")

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
    def acquire(cls, dirpath: str, *, shared: bool = False, timeout: float = 0.0) -> DirLock | None:
        """Lock ``dirpath``, waiting up to ``timeout`` seconds while another holder has it.
        A shared lock does not create the LOCK file: if there is none, there is no store to
        race with and ``None`` is returned (nothing is written)."""
        path = os.path.join(dirpath, LOCK_NAME)
        flags = os.O_RDONLY if shared else os.O_RDWR | os.O_CREAT
        if not _NOFOLLOW and os.path.islink(path):
            raise _symlink(path)
        try:
            fd = os.open(path, flags | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
        except FileNotFoundError:
            if shared:
                return None
            raise DataDirUnusable(f"cannot create lock file {path}: no such directory") from None
        except OSError as e:
            if os.path.islink(path):  # ELOOP (EMLINK on FreeBSD) from O_NOFOLLOW
                raise _symlink(path) from e
            raise DataDirUnusable(f"cannot open lock file {path}: {e.strerror or e}") from e
        deadline = time.monotonic() + timeout
        waiting = False
        while True:
            try:
                _lock(fd, shared)
                return cls(fd, path)
            except OSError as e:
                if e.errno not in _HELD:
                    os.close(fd)
                    raise DataDirUnusable(
                        f"cannot lock {path}: {e.strerror or e} (the data directory must be on "
                        "a file system that supports locks)"
                    ) from e
                left = deadline - time.monotonic()
                if left <= 0:
                    os.close(fd)
                    held = (
                        f"was still held after waiting {timeout * 1000:.0f} ms"
                        if timeout > 0
                        else "is held"
                    )
                    raise Locked(
                        f"the data directory {dirpath} is in use by another sync-queue store "
                        f"(its lock file {path} {held}); close that one first"
                    ) from e
            if not waiting:
                waiting = True
                log.info("%s is held by another store: waiting up to %.0f ms", path, left * 1000)
            time.sleep(min(_POLL_S, left))

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                _unlock(fd)
            finally:
                os.close(fd)


def _symlink(path: str) -> DataDirUnusable:
    return DataDirUnusable(
        f"the lock file {path} is a symbolic link: refused, not followed (a data "
        "directory's LOCK is a plain file; remove the link)"
    )
