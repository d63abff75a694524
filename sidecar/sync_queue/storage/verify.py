"""Offline check of a data directory: walk every file, report what is there and what is
wrong, change nothing.

Locking: ``verify`` takes a *shared* lock on ``LOCK`` (without creating it), so it refuses
with :class:`Locked` while a store has the directory open (a live journal is a moving
target), several verifies may run at once, and a store cannot open while one runs. It
reads only; even a torn tail is reported, not truncated.

Errors are what a store refuses to open, and what loses data that may have been
acknowledged: a damaged last block (the next open quarantines it) and a quarantine file
nobody has dealt with yet (it holds such records; delete it once done with it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from sync_queue.errors import PersistenceError, QueueError
from sync_queue.storage.codec import Compression, EncryptionService
from sync_queue.storage.fileio import FileIO
from sync_queue.storage.journal import SegmentRead, read_segment
from sync_queue.storage.lock import DirLock
from sync_queue.storage.recovery import Listing, list_directory, load_directory
from sync_queue.storage.snapshot import read_snapshot

__all__ = ["FileReport", "Problem", "VerifyReport", "verify"]


@dataclass(frozen=True)
class Problem:
    file: str
    offset: int | None
    message: str
    # "error": recovery refuses to open, or records that may have been acknowledged are (or
    # would be) set aside in a quarantine file; "warning": recovery copes, losing nothing.
    severity: str


@dataclass
class FileReport:
    name: str
    kind: str  # "journal", "snapshot", "temp" or "quarantine"
    size: int
    encrypted: bool | None = None
    blocks: int = 0
    records: int = 0
    first_seq: int | None = None  # journal: first seq held; snapshot: None
    last_seq: int | None = None  # journal: last seq held; snapshot: last seq included
    created_ms: int | None = None
    # ok, torn-tail, torn-header, damaged-tail, leftover, unreadable, corrupt, quarantined
    status: str = "ok"


@dataclass
class VerifyReport:
    path: str
    files: list[FileReport] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    snapshot_seq: int | None = None
    last_seq: int | None = None  # last seq a recovery would reach
    records_after_snapshot: int = 0

    @property
    def ok(self) -> bool:
        """True when a store would open this directory without losing or setting aside
        anything (warnings allowed)."""
        return not any(p.severity == "error" for p in self.problems)


def verify(
    path: str | os.PathLike[str], key: bytes | None = None, *, io: FileIO | None = None
) -> VerifyReport:
    io = io or FileIO()
    dirpath = os.path.abspath(os.fspath(path))
    report = VerifyReport(dirpath)
    if not os.path.isdir(dirpath):
        report.problems.append(Problem(dirpath, None, "not a directory", "error"))
        return report
    lock = DirLock.acquire(dirpath, shared=True)
    try:
        _walk(io, dirpath, EncryptionService(key) if key is not None else None, report)
    finally:
        if lock is not None:
            lock.release()
    return report


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _problem(e: QueueError, path: str) -> Problem:
    offset = e.data.get("offset")
    return Problem(
        str(e.data.get("file", path)),
        offset if isinstance(offset, int) else None,
        e.message,
        "error",
    )


def _walk(io: FileIO, dirpath: str, enc: EncryptionService | None, report: VerifyReport) -> None:
    compression = Compression(1)  # reading needs no level; any enabled instance decodes
    listing = list_directory(io, dirpath)
    _report_leftovers(dirpath, listing, report)
    _report_snapshots(io, dirpath, listing, enc, compression, report)
    _report_segments(io, dirpath, listing, enc, compression, report)
    if all(f.status != "corrupt" for f in report.files):
        # The files are readable one by one; now the whole: sequence continuity, snapshot cover.
        _report_whole(io, dirpath, enc, compression, report)


def _report_leftovers(dirpath: str, listing: Listing, report: VerifyReport) -> None:
    """Temp files (a warning) and quarantine files (an error until removed)."""
    for name in listing.temps:
        path = os.path.join(dirpath, name)
        report.files.append(FileReport(name, "temp", _size(path), status="leftover"))
        what = (
            "a directory, not a file the store wrote (left alone on open)"
            if os.path.isdir(path)
            else "leftover of an interrupted snapshot write (deleted on open)"
        )
        report.problems.append(Problem(path, None, what, "warning"))
    for name in listing.quarantined:
        path = os.path.join(dirpath, name)
        report.files.append(FileReport(name, "quarantine", _size(path), status="quarantined"))
        report.problems.append(
            Problem(
                path,
                None,
                "a damaged journal block that an open set aside: records in it may have been "
                "acknowledged and are not in the queue; inspect it, then delete it to clear "
                "this error",
                "error",
            )
        )


def _report_snapshots(
    io: FileIO,
    dirpath: str,
    listing: Listing,
    enc: EncryptionService | None,
    compression: Compression,
    report: VerifyReport,
) -> None:
    for seq, name in listing.snapshots:
        path = os.path.join(dirpath, name)
        fr = FileReport(name, "snapshot", _size(path), last_seq=seq)
        report.files.append(fr)
        try:
            snap = read_snapshot(io, dirpath, name, seq, enc=enc, compression=compression)
        except QueueError as e:
            fr.status = "corrupt"
            report.problems.append(_problem(e, path))
            continue
        fr.encrypted, fr.blocks, fr.records = snap.header.encrypted, 1, 1
        fr.created_ms = snap.header.created_ms


def _report_segments(
    io: FileIO,
    dirpath: str,
    listing: Listing,
    enc: EncryptionService | None,
    compression: Compression,
    report: VerifyReport,
) -> None:
    for i, (first, name) in enumerate(listing.segments):
        path = os.path.join(dirpath, name)
        fr = FileReport(name, "journal", _size(path), first_seq=first)
        report.files.append(fr)
        last = i == len(listing.segments) - 1
        try:
            seg = read_segment(
                io, dirpath, name, first, enc=enc, compression=compression, last=last
            )
        except QueueError as e:
            fr.status = "corrupt"
            report.problems.append(_problem(e, path))
            continue
        fr.blocks, fr.records = seg.blocks, seg.count
        fr.last_seq = first + seg.count - 1 if seg.count else None
        if seg.header is not None:
            fr.encrypted, fr.created_ms = seg.header.encrypted, seg.header.created_ms
        if seg.torn_offset is not None:
            report.problems.append(_torn_tail_problem(seg, path, fr))


def _torn_tail_problem(seg: SegmentRead, path: str, fr: FileReport) -> Problem:
    """What the next open does with the last segment's torn tail; sets ``fr.status``."""
    assert seg.torn_offset is not None
    if seg.torn_damaged:
        fr.status = "damaged-tail"
        return Problem(
            path,
            seg.torn_offset,
            f"the last block is damaged ({seg.torn_reason}), not a torn write: its "
            f"records may have been acknowledged; the next open moves its "
            f"{seg.size - seg.torn_offset} bytes to a quarantine file and goes on "
            "without them",
            "error",
        )
    fr.status = "torn-tail" if seg.header is not None else "torn-header"
    return Problem(
        path,
        seg.torn_offset,
        f"torn tail ({seg.torn_reason}): {seg.size - seg.torn_offset} bytes would be "
        "truncated on the next open",
        "warning",
    )


def _report_whole(
    io: FileIO,
    dirpath: str,
    enc: EncryptionService | None,
    compression: Compression,
    report: VerifyReport,
) -> None:
    try:
        plan = load_directory(io, dirpath, enc=enc, compression=compression)
    except QueueError as e:
        report.problems.append(_problem(e, dirpath))
        return
    except OSError as e:  # pragma: no cover - load_directory converts these
        report.problems.append(Problem(dirpath, None, str(PersistenceError(str(e))), "error"))
        return
    rec = plan.recovery
    report.snapshot_seq = rec.snapshot_seq if plan.snapshot is not None else None
    report.last_seq = rec.last_seq
    report.records_after_snapshot = rec.record_count
