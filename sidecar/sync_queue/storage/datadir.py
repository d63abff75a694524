"""The data directory before the store uses it: created or restricted to mode 0700, and,
once recovery has accepted what it holds, repaired as recovery's ``Plan`` says (a damaged
last block quarantined, a torn tail truncated, leftovers of an interrupted compaction or
snapshot write deleted). Nothing here runs before the open has accepted the directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import sys
import time
from collections.abc import Callable

from sync_queue.errors import DataDirUnusable
from sync_queue.storage.blocks import ZERO_TAIL
from sync_queue.storage.fileio import FileIO, write_all
from sync_queue.storage.recovery import QUARANTINE_PREFIX, Plan, Quarantined, TornTail

__all__ = ["ensure_dir", "quarantine", "repair"]

log = logging.getLogger("sync_queue.storage")


def ensure_dir(dirpath: str) -> None:
    """Create the data directory, and any missing parent, 0700 (only the owner may read
    queue contents); restrict an existing one that group or others may use to 0700."""
    try:
        if not os.path.isdir(dirpath):
            if os.path.exists(dirpath):
                raise DataDirUnusable(f"the data directory {dirpath} exists but is not a directory")
            _make_dirs(dirpath)
        elif sys.platform != "win32":  # Windows has no such mode bits (ACLs instead)
            mode = stat.S_IMODE(os.stat(dirpath).st_mode)
            if mode & 0o077:
                # A world-writable directory lets anyone replace the journal or plant a LOCK
                # symlink; a readable one shows the item ids. Tightened, not refused: the
                # owner asked for this directory.
                os.chmod(dirpath, 0o700)
                log.warning(
                    "data directory %s had mode %04o (other users could use it): changed to 0700",
                    dirpath,
                    mode,
                )
    except OSError as e:
        raise DataDirUnusable(
            f"cannot create or restrict the data directory {dirpath} to mode 0700: "
            f"{e.filename or dirpath}: {e.strerror or e}"
        ) from e


def _make_dirs(path: str) -> None:
    """``os.makedirs`` creates missing parents with mode 0777 minus the umask (0777 under
    umask 000): each directory made here is created 0700 and set to it explicitly."""
    parent = os.path.dirname(path)
    if parent and parent != path and not os.path.isdir(parent):
        _make_dirs(parent)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        if os.path.isdir(path):
            return  # made by someone else meanwhile: not ours to change
        raise
    os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask


def repair(io: FileIO, dirpath: str, plan: Plan, clock: Callable[[], int]) -> list[Quarantined]:
    """Carry out ``plan`` (recovery accepted the directory); return what was quarantined.

    Raises ``DataDirUnusable`` if the directory cannot be changed.
    """
    quarantined: list[Quarantined] = []
    try:
        torn = plan.recovery.torn_tail
        if torn is not None and torn.damaged:
            # Before the truncation (or deletion) below, so the bytes exist somewhere
            # at every moment; a crash in between quarantines them again next time.
            quarantined.append(quarantine(io, dirpath, torn, clock))
        if torn is not None:
            _cut_torn_tail(io, plan, torn)
        _delete_leftovers(io, dirpath, plan.delete)
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        raise DataDirUnusable(
            f"cannot repair data directory {dirpath} after recovery: {where}{e.strerror or e}"
        ) from e
    return quarantined


def _cut_torn_tail(io: FileIO, plan: Plan, t: TornTail) -> None:
    """Truncate the last segment before its torn (or quarantined) tail; a segment torn
    while being created is in ``plan.delete`` instead and only logged here."""
    if plan.truncate is None:
        log.warning(
            "journal segment %s was torn while being created (%s): removed", t.file, t.reason
        )
        return
    fd = io.open(t.file, os.O_WRONLY)
    try:
        io.ftruncate(fd, t.offset)
        io.fsync(fd)
    finally:
        io.close(fd)
    plan.truncate.size = t.offset
    if t.reason == ZERO_TAIL:  # what a crash leaves of a preallocated segment
        log.info("journal %s: cut %d bytes of unused preallocated space", t.file, t.dropped_bytes)
        return
    log.warning(
        "journal %s had a %s (%s): truncated %d bytes at offset %d",
        t.file,
        "damaged tail, quarantined" if t.damaged else "torn tail",
        t.reason,
        t.dropped_bytes,
        t.offset,
    )


def _delete_leftovers(io: FileIO, dirpath: str, names: list[str]) -> None:
    for name in names:
        path = os.path.join(dirpath, name)
        if os.path.isdir(path) and not os.path.islink(path):
            # We only ever write files: a directory under one of our names (e.g. a
            # stray snapshot-*.tmp/) is not ours to delete. Left alone, like any
            # other name that is not ours.
            log.warning("%s is a directory, not a file this store wrote: left alone", path)
            continue
        io.unlink(path)
    if names:
        io.fsync_dir(dirpath)


def quarantine(io: FileIO, dirpath: str, t: TornTail, clock: Callable[[], int]) -> Quarantined:
    """Copy a damaged last block (and anything after it) to ``quarantine-*.bin``.

    The rule: a crash can only cut an append short (``blocks.is_short_write``); a whole
    block that fails its CRC or GCM tag was damaged after it was written, and it may
    have been fsync'd and acknowledged. Its records cannot be read, so the queue goes
    on without them (refusing to open would stop the app at every start for bytes
    nobody can repair), but the bytes are kept, durably, before the segment is cut:
    the file is fsync'd, then the directory. The loss is reported (log, the sidecar's
    ``ready.recovered.quarantined``) and ``verify`` fails until the file is removed.
    """
    data = io.read_file(t.file)[t.offset :]
    path, fd = _create_quarantine_file(io, dirpath, t, clock())
    try:
        try:
            write_all(io, fd, data)
            io.fsync(fd)
        finally:
            io.close(fd)
    except BaseException:
        # Not kept: the segment is not cut either, so the next open tries again.
        with contextlib.suppress(OSError):
            io.unlink(path)
        raise
    io.fsync_dir(dirpath)
    log.error(
        "journal %s: the last block at offset %d is damaged (%s), not a torn write: its "
        "records may have been acknowledged and are NOT in the queue; %d bytes moved to "
        "%s (keep it to investigate, delete it once dealt with)",
        t.file,
        t.offset,
        t.reason,
        t.dropped_bytes,
        path,
    )
    return Quarantined(path, t.file, t.offset, len(data), t.reason)


def _create_quarantine_file(io: FileIO, dirpath: str, t: TornTail, ms: int) -> tuple[str, int]:
    """Create (exclusively, 0600) a quarantine file named after the time, the segment and
    the offset; return its path and an fd open for writing."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(ms // 1000)) + f"{ms % 1000:03d}Z"
    stem = os.path.splitext(os.path.basename(t.file))[0]
    for n in range(1000):
        suffix = f"-{n}" if n else ""
        name = f"{QUARANTINE_PREFIX}{stamp}-{stem}-at-{t.offset}{suffix}.bin"
        path = os.path.join(dirpath, name)
        try:
            return path, io.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
    # A thousand files in the same millisecond.
    raise FileExistsError(f"no free quarantine file name in {dirpath}")  # pragma: no cover
