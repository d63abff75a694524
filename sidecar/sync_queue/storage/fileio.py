"""The raw file operations of the storage layer, behind one small injectable object.

Every write, sync, rename, truncate and delete the storage layer performs goes through a
:class:`FileIO`. Production code uses the default instance; tests pass a subclass that
counts syncs or raises ``OSError(EIO)`` / ``ENOSPC`` at a chosen call, which is how the
fail-stop rules (never retry a failed write or fsync, never acknowledge it) are proven
without a broken disk.
"""

from __future__ import annotations

import os
import sys

__all__ = ["FileIO", "write_all"]

if sys.platform == "darwin":  # pragma: no cover - exercised on macOS only
    import fcntl


class FileIO:
    """Thin wrappers over :mod:`os`; one method per kind of I/O the store performs."""

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        # O_CLOEXEC: a child process (the engine may spawn none, but tests do) must not
        # inherit journal descriptors or the directory lock.
        return os.open(path, flags | getattr(os, "O_CLOEXEC", 0), mode)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        """Make the file's data (and the size, which a later read needs) durable."""
        if sys.platform == "darwin":  # pragma: no cover
            # fsync on macOS does not flush the drive's cache; F_FULLFSYNC does.
            try:
                fcntl.fcntl(fd, fcntl.F_FULLFSYNC)
                return
            except OSError:
                pass
            os.fsync(fd)
        elif hasattr(os, "fdatasync"):
            # fdatasync still flushes the size change of an append (needed to read the
            # data back) but skips timestamps: one journal-commit fewer on some filesystems.
            os.fdatasync(fd)
        else:  # pragma: no cover - Windows
            os.fsync(fd)

    def fsync_dir(self, path: str) -> None:
        """Make created, renamed and deleted names in ``path`` durable."""
        if sys.platform == "win32":  # pragma: no cover - directories cannot be opened there
            return
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def ftruncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def preallocate(self, fd: int, offset: int, length: int) -> bool:
        """Allocate ``length`` bytes at ``offset`` and extend the file's size over them
        (``posix_fallocate``), so that writes there later change no metadata: on ext4 an
        ``fdatasync`` after an append that grows the file commits the size change to the
        filesystem's journal too, and costs about 1.4x one that does not. False (nothing
        done) where the platform or filesystem cannot, or the disk has no room for it: the
        writes then simply grow the file."""
        if not hasattr(os, "posix_fallocate"):  # pragma: no cover - macOS, Windows
            return False
        try:
            os.posix_fallocate(fd, offset, length)
        except OSError:
            return False
        return True

    def close(self, fd: int) -> None:
        os.close(fd)

    def read_file(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def replace(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)


def write_all(io: FileIO, fd: int, data: bytes) -> None:
    """Write all of ``data``; a short write is legal and simply continued."""
    view = memoryview(data)
    while view:
        n = io.write(fd, view)
        if n <= 0:  # pragma: no cover - os.write raises rather than returning 0 on files
            raise OSError("write made no progress")
        view = view[n:]
