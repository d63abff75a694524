"""The ``Store``: the one object the engine talks to. It moves opaque bytes only.

Usage (the engine's side)::

    store = Store.open(path, durability="always", compression_level=6, key=None, fold=fold)
    rec = store.take_recovery()          # snapshot blob (or None) + records after it
    state = decode(rec.snapshot); for r in rec.records(): apply(r)
    ...
    with engine_lock:                    # records appended in apply order
        apply(op); ticket = store.append([encode(op)])
    store.commit(ticket)                 # outside the engine lock; then reply
    ...
    store.close()

API and threading
-----------------
``Store.open(path, *, durability, compression_level, key, fsync_interval,
segment_max_bytes, compact_after_bytes, fold, clock, io, lock_timeout, check) -> Store``
    Creates ``path`` and any missing parent (mode 0700) if missing, restricts an existing
    ``path`` that group or others may use to 0700 (logged), takes the exclusive directory
    lock (:class:`Locked` if anyone still holds it after ``lock_timeout`` seconds, even
    this process; default 0: at once), recovers, calls ``check(recovery)`` (the engine
    replays and validates the records there; whatever it raises refuses the open), and
    only then changes anything: truncates a torn tail (logged), moves a damaged last block
    to a quarantine file first (see :meth:`_quarantine`), removes leftovers of an
    interrupted compaction or snapshot write. Any refusal (corruption in the middle,
    wrong/missing key, unreadable file, damaged snapshot, a gap in sequence numbers, a
    record ``check`` rejects) raises
    ``PersistenceError`` / ``EncryptionError`` / ``CompressionError`` naming file and offset,
    with nothing on disk changed. A directory that cannot be used at all (not creatable,
    not readable or writable, a ``LOCK`` symlink) raises ``DataDirUnusable`` (a
    ``PersistenceError``) naming the path.

``store.take_recovery() -> Recovery``
    The recovered snapshot blob and the records after it (``Recovery.records()``), once;
    the store drops its reference so the memory goes after replay.

``store.quarantined -> list[Quarantined]``
    The damaged last block this open moved to a quarantine file (file, offset, bytes,
    quarantine path, reason), or an empty list.

``store.append(records: Sequence[bytes]) -> int``
    Buffers records and returns a ticket (the sequence number of the last record; with
    no records, the last one assigned). Cheap: no I/O, no encoding. Sequence numbers are
    given in call order, so call it while holding the engine's lock, in apply order.
    Raises ``PersistenceError`` once the store has failed (fail-stop).

``store.commit(ticket) -> None``
    Returns when every record up to ``ticket`` is as durable as the mode promises.
    Thread-safe and meant to be called by many threads at once *outside* the engine
    lock: the first caller becomes the leader and writes everything buffered so far as
    one block with one ``write`` and (in "always") one fsync; the others wait and return
    when the leader's group covers their ticket (group commit). If the write or fsync
    fails, the block is cut off the file (and the cut fsync'd), every waiter of that group
    gets ``PersistenceError`` and so does every later ``append``/``commit``/
    ``write_snapshot`` until the store is closed and reopened.

``store.read_durable() -> Recovery``
    Only after a fail-stop: the directory read back like an open does, through the last
    record written before the failure (the refused group excluded), so the engine can make
    its live state what a reopen recovers. Waits for an in-flight leader and compaction.

``store.write_snapshot(blob, through=None) -> None``
    Durably installs ``blob`` as the state including every record up to ticket
    ``through`` (default: everything appended so far), then deletes the journal segments
    and snapshots it supersedes. In "snapshot" mode this is the only persistence. May be
    called from any thread; serialized with compaction. A failure raises
    ``PersistenceError`` and leaves the previous snapshot in force (no fail-stop: nothing
    acknowledged depended on it, and the next attempt writes a new file).

``store.compact(wait=True) -> None``
    Folds the closed journal into a new snapshot: rotates to a new segment, then
    ``fold(previous snapshot blob or None, records of the closed segments read back from
    disk)`` builds the new blob. ``wait=False`` hands it to the background thread (also
    used automatically once the journal reaches ``compact_after_bytes``). ``fold`` runs in
    that thread, concurrently with appends and commits: it must be a pure function of its
    arguments (never touch live engine state). Without ``fold`` there is no compaction.

``store.compact_soon() -> concurrent.futures.Future[None]``
    Like ``compact(wait=False)``, but the future completes once a compaction that started
    after this call (so it covers every record appended before it) has installed its
    snapshot, or fails with that compaction's error (``ShuttingDown`` if the store closes
    first). The caller's thread never runs the fold: an event loop can wait without
    blocking.

``store.stats() -> StoreStats`` and ``store.close()`` (commits what is buffered, makes it
durable, stops the threads, releases the lock; idempotent).

Durability modes: what a crash can lose
---------------------------------------
- ``"always"``: nothing acknowledged, on ``kill -9`` or power loss. ``commit`` returns
  after write + fsync (fdatasync on Linux, F_FULLFSYNC on macOS) of the group.
- ``"periodic"``: ``commit`` returns after the ``write`` reached the OS; a background
  thread fsyncs every ``fsync_interval`` seconds. ``kill -9`` loses nothing
  acknowledged; power loss / OS crash loses up to the last ``fsync_interval`` (plus the
  time of one fsync) of acknowledged changes.
- ``"snapshot"``: no journal. ``append`` discards, ``commit`` returns at once; state is
  only what the last ``write_snapshot`` held. Any crash loses everything since then.
In every mode a crash leaves a consistent prefix: never a half-written change, never a
reordering.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Literal

from sync_queue.errors import (
    DataDirUnusable,
    InvalidParams,
    PersistenceError,
    QueueError,
    ShuttingDown,
)
from sync_queue.storage.codec import Compression, EncryptionService
from sync_queue.storage.fileio import FileIO, write_all
from sync_queue.storage.journal import SegmentWriter, iter_segment_records
from sync_queue.storage.lock import DirLock
from sync_queue.storage.recovery import (
    QUARANTINE_PREFIX,
    Plan,
    Quarantined,
    Recovery,
    TornTail,
    load_directory,
)
from sync_queue.storage.snapshot import read_snapshot, write_snapshot_file

__all__ = ["Durability", "Fold", "Store", "StoreStats"]

log = logging.getLogger("sync_queue.storage")

Durability = Literal["always", "periodic", "snapshot"]
Fold = Callable[[bytes | None, Iterator[bytes]], bytes]
_DURABILITIES = ("always", "periodic", "snapshot")
# Records are opaque, but a single one this large is a caller bug, not data.
MAX_RECORD_BYTES = 1 << 30


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class StoreStats:
    bytes_on_disk: int  # journal + snapshot
    journal_bytes: int
    last_snapshot_at: int | None  # ms since the epoch (the snapshot's creation), or None
    snapshot_bytes: int
    segments: int
    last_seq: int  # last sequence number appended
    snapshot_seq: int  # last sequence number the current snapshot includes
    compactions: int  # snapshots written since open (compactions and write_snapshot)
    failure: str | None  # why the store is fail-stopped, or None


@dataclass
class _Closed:
    """A closed (rotated-out) journal segment awaiting compaction."""

    name: str
    first_seq: int
    size: int
    next_seq: int  # first_seq + its record count


class Store:
    """See the module docstring. Create with :meth:`Store.open`."""

    def __init__(self) -> None:  # use Store.open
        raise TypeError("use Store.open(path, ...)")

    # ---- opening --------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        durability: Durability = "always",
        compression_level: int = 0,
        key: bytes | None = None,
        fsync_interval: float = 1.0,
        segment_max_bytes: int = 64 * 1024 * 1024,
        compact_after_bytes: int | None = 64 * 1024 * 1024,
        fold: Fold | None = None,
        clock: Callable[[], int] = _now_ms,
        io: FileIO | None = None,
        lock_timeout: float = 0.0,
        check: Callable[[Recovery], None] | None = None,
    ) -> Store:
        if durability not in _DURABILITIES:
            raise InvalidParams(f"durability must be one of {', '.join(_DURABILITIES)}")
        if not fsync_interval > 0:
            raise InvalidParams("fsync_interval must be a positive number of seconds")
        if segment_max_bytes < 4096:
            raise InvalidParams("segment_max_bytes must be at least 4096")
        if compact_after_bytes is not None and compact_after_bytes < 1:
            raise InvalidParams("compact_after_bytes must be positive (or None for never)")
        compression = Compression(compression_level)
        enc = EncryptionService(key) if key is not None else None
        dirpath = os.path.abspath(os.fspath(path))
        _ensure_dir(dirpath)
        lock = DirLock.acquire(dirpath, timeout=lock_timeout)
        assert lock is not None
        self = object.__new__(cls)
        try:
            self._init(
                dirpath,
                lock,
                durability,
                compression,
                enc,
                fsync_interval,
                segment_max_bytes,
                compact_after_bytes,
                fold,
                clock,
                io or FileIO(),
                check,
            )
        except OSError as e:  # opening or creating the journal segment to append to
            lock.release()
            raise DataDirUnusable(
                f"cannot open the journal in {dirpath} for writing: "
                f"{e.filename or ''}{': ' if e.filename else ''}{e.strerror or e}"
            ) from e
        except BaseException:
            lock.release()
            raise
        return self

    def _init(
        self,
        dirpath: str,
        lock: DirLock,
        durability: Durability,
        compression: Compression,
        enc: EncryptionService | None,
        fsync_interval: float,
        segment_max_bytes: int,
        compact_after_bytes: int | None,
        fold: Fold | None,
        clock: Callable[[], int],
        io: FileIO,
        check: Callable[[Recovery], None] | None = None,
    ) -> None:
        self.path = dirpath
        self.durability: Durability = durability
        self._lock_file = lock
        self._io = io
        self._enc = enc
        self._compression = compression
        self._fsync_interval = fsync_interval
        self._segment_max = segment_max_bytes
        self._compact_after = compact_after_bytes
        self._fold = fold
        self._clock = clock
        self._journaling = durability != "snapshot"

        plan = load_directory(io, dirpath, enc=enc, compression=compression)
        if check is not None:
            check(plan.recovery)
        # From here on we may change the directory: recovery accepted it.
        self.quarantined: list[Quarantined] = []
        self._apply_plan(plan)
        self._recovery: Recovery | None = plan.recovery

        # _mu guards everything below; _cond signals the end of a group write.
        self._mu = threading.Lock()
        self._cond = threading.Condition(self._mu)
        self._pending: list[bytes] = []
        self._last_seq = plan.next_seq - 1  # last seq appended
        self._done_seq = plan.next_seq - 1  # last seq written (and synced in "always")
        self._synced_seq = self._done_seq
        self._busy = False  # a leader (or a rotation) owns the writer
        # Rotations waiting for the writer. Committers let them go first: under steady
        # load some committer is always ready to lead, and the rotation would starve.
        self._want_writer = 0
        self._failure: str | None = None
        self._closed = False
        # _rot_lock: the periodic syncer and a rotation never use/close the fd at once.
        self._rot_lock = threading.Lock()
        # _snap_lock: one snapshot write or compaction at a time.
        self._snap_lock = threading.Lock()

        self._closed_segs: list[_Closed] = []
        self._writer: SegmentWriter | None = None
        # Snapshot mode never appends, so even the tail segment only waits for deletion.
        segs = [s for s in plan.segments if s is not plan.tail or not self._journaling]
        self._closed_segs = [
            _Closed(s.name, s.first_seq, s.end, s.first_seq + s.count) for s in segs
        ]
        if plan.snapshot is not None:
            self._snap_name: str | None = plan.snapshot.name
            self._snap_seq = plan.snapshot.last_seq
            self._snap_bytes = plan.snapshot.size
            self._snap_at: int | None = plan.snapshot.header.created_ms
        else:
            self._snap_name, self._snap_seq, self._snap_bytes, self._snap_at = None, 0, 0, None
        self._compactions = 0
        self._compact_at = compact_after_bytes
        self._compact_error: str | None = None

        if self._journaling:
            tail = plan.tail
            if tail is not None and tail.end < segment_max_bytes:
                self._writer = SegmentWriter.reopen(io, tail, enc=enc, compression=compression)
            else:
                if tail is not None:
                    self._closed_segs.append(
                        _Closed(tail.name, tail.first_seq, tail.end, tail.first_seq + tail.count)
                    )
                self._writer = SegmentWriter.create(
                    io,
                    dirpath,
                    plan.next_seq,
                    enc=enc,
                    compression=compression,
                    created_ms=clock(),
                )

        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        if durability == "periodic":
            self._spawn(self._sync_loop, "sync-queue-fsync")
        self._compact_wake = threading.Event()
        # Waiting for the next compaction of the background thread (compact_soon); _mu.
        self._compact_futures: list[Future[None]] = []
        if self._journaling and fold is not None:
            self._spawn(self._compact_loop, "sync-queue-compact")

    def _apply_plan(self, plan: Plan) -> None:
        io = self._io
        try:
            torn = plan.recovery.torn_tail
            if torn is not None and torn.damaged:
                # Before the truncation (or deletion) below, so the bytes exist somewhere
                # at every moment; a crash in between quarantines them again next time.
                self.quarantined.append(self._quarantine(torn))
            if plan.truncate is not None and plan.recovery.torn_tail is not None:
                t = plan.recovery.torn_tail
                fd = io.open(t.file, os.O_WRONLY)
                try:
                    io.ftruncate(fd, t.offset)
                    io.fsync(fd)
                finally:
                    io.close(fd)
                plan.truncate.size = t.offset
                log.warning(
                    "journal %s had a %s (%s): truncated %d bytes at offset %d",
                    t.file,
                    "damaged tail, quarantined" if t.damaged else "torn tail",
                    t.reason,
                    t.dropped_bytes,
                    t.offset,
                )
            elif plan.recovery.torn_tail is not None:
                t = plan.recovery.torn_tail
                log.warning(
                    "journal segment %s was torn while being created (%s): removed",
                    t.file,
                    t.reason,
                )
            for name in plan.delete:
                path = os.path.join(self.path, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    # We only ever write files: a directory under one of our names (e.g. a
                    # stray snapshot-*.tmp/) is not ours to delete. Left alone, like any
                    # other name that is not ours.
                    log.warning("%s is a directory, not a file this store wrote: left alone", path)
                    continue
                io.unlink(path)
            if plan.delete:
                io.fsync_dir(self.path)
        except OSError as e:
            where = f"{e.filename}: " if e.filename else ""
            raise DataDirUnusable(
                f"cannot repair data directory {self.path} after recovery: {where}{e.strerror or e}"
            ) from e

    def _quarantine(self, t: TornTail) -> Quarantined:
        """Copy a damaged last block (and anything after it) to ``quarantine-*.bin``.

        The rule: a crash can only cut an append short (``blocks.is_short_write``); a whole
        block that fails its CRC or GCM tag was damaged after it was written, and it may
        have been fsync'd and acknowledged. Its records cannot be read, so the queue goes
        on without them (refusing to open would stop the app at every start for bytes
        nobody can repair), but the bytes are kept, durably, before the segment is cut:
        the file is fsync'd, then the directory. The loss is reported (log, the sidecar's
        ``ready.recovered.quarantined``) and ``verify`` fails until the file is removed.
        """
        io = self._io
        data = io.read_file(t.file)[t.offset :]
        ms = self._clock()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(ms // 1000)) + f"{ms % 1000:03d}Z"
        stem = os.path.splitext(os.path.basename(t.file))[0]
        for n in range(1000):
            suffix = f"-{n}" if n else ""
            name = f"{QUARANTINE_PREFIX}{stamp}-{stem}-at-{t.offset}{suffix}.bin"
            path = os.path.join(self.path, name)
            try:
                fd = io.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            break
        else:  # pragma: no cover - a thousand files in the same millisecond
            raise FileExistsError(f"no free quarantine file name in {self.path}")
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
        io.fsync_dir(self.path)
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

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    # ---- recovery ---------------------------------------------------------------------

    def take_recovery(self) -> Recovery:
        rec = self._recovery
        if rec is None:
            raise PersistenceError("the recovery result was already taken")
        self._recovery = None
        return rec

    # ---- the write path ---------------------------------------------------------------

    def append(self, records: Sequence[bytes]) -> int:
        for r in records:
            # Checked here, cheaply, so a bad record fails its caller and never the
            # group commit of other callers.
            if type(r) is not bytes:
                raise InvalidParams("records must be bytes")
            if len(r) > MAX_RECORD_BYTES:
                raise InvalidParams(f"a record may hold at most {MAX_RECORD_BYTES} bytes")
        with self._mu:
            self._check_usable()
            if self._journaling and records:
                self._pending.extend(records)
                self._last_seq += len(records)
            return self._last_seq

    def commit(self, ticket: int) -> None:
        if not self._journaling:
            with self._mu:
                self._check_usable()
            return
        with self._cond:
            while True:
                if self._failure is not None:
                    raise self._failed()
                if self._done_seq >= ticket:
                    return
                if not self._busy and not self._want_writer:
                    break
                self._cond.wait()
            if ticket > self._last_seq:
                raise InvalidParams(f"ticket {ticket} was never handed out by append")
            # This thread is the leader: it takes everything buffered so far.
            self._busy = True
            records, self._pending = self._pending, []
            first = self._done_seq + 1
        self._lead(first, records)

    def _lead(self, first: int, records: list[bytes]) -> None:
        writer = self._writer
        assert writer is not None
        last = first + len(records) - 1
        error: BaseException | None = None
        size_before = writer.size
        try:
            data = writer.encode(first, records)
            writer.write(data, len(records))
            if self.durability == "always":
                writer.sync()
        except BaseException as e:
            error = e
            cut = writer.rollback(size_before)
            if cut is not None:
                # Nothing more can be done with a disk that refuses even this; a reopen
                # may then replay the refused group (see docs/storage.md).
                log.critical(
                    "could not cut the refused group off %s at offset %d: %s",
                    writer.name,
                    size_before,
                    cut,
                )
        rotate = error is None and writer.size >= self._segment_max
        with self._cond:
            if error is not None:
                self._fail(error)
            else:
                self._done_seq = last
                if self.durability == "always":
                    self._synced_seq = last
            if not rotate:
                self._busy = False
            # Waiters covered by this group return now, even while we rotate.
            self._cond.notify_all()
            compact = error is None and self._should_compact()
        if error is not None:
            raise self._failed() from error
        if rotate:
            # The group is durable and acknowledged whatever happens here; a failed
            # rotation fail-stops the store for the callers after it.
            try:
                self._rotate()
            except BaseException as e:
                with self._cond:
                    self._fail(e)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
        if compact:
            self._compact_wake.set()

    def _rotate(self) -> None:
        """Close the current segment (fsync'd) and start the next. Caller owns _busy."""
        old = self._writer
        assert old is not None
        new_first = old.first_seq + old.count
        with self._rot_lock:
            old.sync()  # "periodic" has unsynced data in it; a closed segment is final
            new = SegmentWriter.create(
                self._io,
                self.path,
                new_first,
                enc=self._enc,
                compression=self._compression,
                created_ms=self._clock(),
            )
            old.close()
            self._writer = new
        with self._mu:
            self._closed_segs.append(_Closed(old.name, old.first_seq, old.size, new_first))
            self._synced_seq = max(self._synced_seq, new_first - 1)

    def _acquire_writer(self) -> None:
        """Become the owner of the writer without writing (rotation by compaction)."""
        with self._cond:
            self._want_writer += 1
            try:
                while self._busy and self._failure is None:
                    self._cond.wait()
            finally:
                self._want_writer -= 1
            if self._failure is not None:
                self._cond.notify_all()
                raise self._failed()
            self._busy = True

    def _release_writer(self) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    # ---- failure ----------------------------------------------------------------------

    def _fail(self, error: BaseException) -> None:
        """Enter fail-stop (caller holds _mu). Never cleared: reopening is the way out."""
        if self._failure is None:
            if isinstance(error, OSError):
                reason = f"{error.strerror or error} (errno {error.errno})"
            elif isinstance(error, QueueError):
                reason = error.message
            else:
                reason = f"{type(error).__name__}: {error}"
            self._failure = reason
            log.error("storage failed, refusing all changes until reopened: %s", reason)

    def _failed(self) -> PersistenceError:
        return PersistenceError(
            f"the journal in {self.path} failed ({self._failure}); nothing since the last "
            "successful commit is acknowledged, and every change is refused until the store "
            "is reopened",
            reason=self._failure,
        )

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise self._failed()
        if self._closed:
            raise PersistenceError(f"the store in {self.path} is closed")

    @property
    def failure(self) -> str | None:
        """Why the store is fail-stopped (for ``health``), or None."""
        return self._failure

    def read_durable(self) -> Recovery:
        """After a fail-stop: what the directory holds for every record written before the
        failure (the refused group excluded), read back from disk like an open does, so
        the caller can make its live state equal what a reopen will recover."""
        with self._snap_lock:  # no compaction swaps files under the read
            with self._cond:
                if self._failure is None:
                    raise InvalidParams("read_durable is only for a fail-stopped store")
                while self._busy:  # a leader that was writing when the store failed
                    self._cond.wait()
                through = self._done_seq
            plan = load_directory(self._io, self.path, enc=self._enc, compression=self._compression)
        rec = plan.recovery
        if not rec.snapshot_seq <= through <= rec.last_seq:
            raise PersistenceError(
                f"the data directory {self.path} holds records {rec.snapshot_seq} to "
                f"{rec.last_seq}, but {through} were written before the journal failed"
            )
        # Records past `through` are on disk only if cutting the refused group failed.
        kept = list(itertools.islice(rec.records(), through - rec.snapshot_seq))
        return Recovery(rec.snapshot, rec.snapshot_seq, through, rec.torn_tail, [kept])

    # ---- periodic fsync ---------------------------------------------------------------

    def _sync_loop(self) -> None:
        while not self._stop.wait(self._fsync_interval):
            self._sync_now()

    def _sync_now(self) -> None:
        with self._mu:
            if self._failure is not None or self._synced_seq >= self._done_seq:
                return
            target = self._done_seq
        # No _busy here: fsync may run while the leader appends (both are safe on one fd);
        # _rot_lock only keeps a rotation from closing the fd under us.
        with self._rot_lock:
            writer = self._writer
            if writer is None:
                return
            try:
                writer.sync()
            except OSError as e:
                with self._cond:
                    self._fail(e)
                    self._cond.notify_all()
                return
        with self._mu:
            self._synced_seq = max(self._synced_seq, target)

    # ---- snapshots and compaction -----------------------------------------------------

    def write_snapshot(self, blob: bytes, through: int | None = None) -> None:
        if type(blob) is not bytes:
            raise InvalidParams("a snapshot must be bytes")
        with self._snap_lock:
            with self._mu:
                self._check_usable()
                seq = self._last_seq if through is None else through
                if not 0 <= seq <= self._last_seq:
                    raise InvalidParams(f"through={through} was never handed out by append")
            if self._journaling:
                self._rotate_for_snapshot()
            self._install_snapshot(blob, seq)

    def _rotate_for_snapshot(self) -> None:
        """Make every written record live in closed segments, so they can be deleted."""
        self._acquire_writer()
        try:
            writer = self._writer
            assert writer is not None
            if writer.count:
                self._rotate()
        except BaseException as e:
            with self._cond:
                self._fail(e)
            raise self._failed() from e
        finally:
            self._release_writer()

    def _install_snapshot(self, blob: bytes, seq: int) -> None:
        """Write the snapshot, then delete what it supersedes. Caller holds _snap_lock."""
        created = self._clock()
        try:
            name, size = write_snapshot_file(
                self._io,
                self.path,
                seq,
                blob,
                enc=self._enc,
                compression=self._compression,
                created_ms=created,
            )
        except OSError as e:
            raise PersistenceError(
                f"cannot write a snapshot in {self.path}: {e.strerror or e}; the previous "
                "snapshot and journal stay in force"
            ) from e
        with self._mu:
            old = self._snap_name
            self._snap_name, self._snap_seq, self._snap_bytes = name, seq, size
            self._snap_at = created
            self._compactions += 1
            # A closed segment is superseded when all its records are <= seq.
            gone = [c for c in self._closed_segs if c.next_seq <= seq + 1]
            self._closed_segs = [c for c in self._closed_segs if c not in gone]
        doomed = [c.name for c in gone]
        if old is not None and old != name:
            doomed.append(old)
        try:
            for n in doomed:
                self._io.unlink(os.path.join(self.path, n))
            if doomed:
                self._io.fsync_dir(self.path)
        except OSError as e:
            # Harmless for correctness: recovery skips superseded files and the next
            # open deletes them.
            log.warning("could not delete superseded files in %s: %s", self.path, e)

    def compact(self, wait: bool = True) -> None:
        """Fold the closed journal into a new snapshot (see module docstring)."""
        if not self._journaling or self._fold is None:
            return
        if not wait:
            self._compact_wake.set()
            return
        self._compact_once()

    def compact_soon(self) -> Future[None]:
        """Ask the background thread to compact; see the module docstring."""
        future: Future[None] = Future()
        if not self._journaling or self._fold is None:
            future.set_result(None)
            return future
        with self._mu:
            self._check_usable()
            self._compact_futures.append(future)
        self._compact_wake.set()
        return future

    def _should_compact(self) -> bool:
        """Caller holds _mu."""
        if self._fold is None or self._compact_at is None:
            return False
        return self._journal_bytes() >= self._compact_at

    def _compact_loop(self) -> None:
        while True:
            self._compact_wake.wait()
            self._compact_wake.clear()
            if self._stop.is_set():
                return  # close() fails the futures still waiting
            # Taken before the rotation: this compaction covers what they asked for.
            with self._mu:
                futures, self._compact_futures = self._compact_futures, []
            try:
                self._compact_once()
            except QueueError as e:
                log.error("background compaction of %s failed: %s", self.path, e.message)
                _settle(futures, e)
            except Exception as e:
                log.exception("background compaction of %s failed", self.path)
                _settle(futures, PersistenceError(f"compaction of {self.path} failed: {e!r}"))
            else:
                _settle(futures, None)

    def _compact_once(self) -> None:
        fold = self._fold
        assert fold is not None
        with self._snap_lock:
            with self._mu:
                self._check_usable()
            try:
                self._rotate_for_snapshot()
                with self._mu:
                    closed = [(c.name, c.first_seq) for c in self._closed_segs]
                    upto = self._writer.first_seq - 1 if self._writer else self._snap_seq
                    prev_name, prev_seq = self._snap_name, self._snap_seq
                if not closed or upto <= prev_seq:
                    if closed:
                        self._install_snapshot_deletions_only(upto)
                    return
                prev: bytes | None = None
                if prev_name is not None:
                    prev = read_snapshot(
                        self._io,
                        self.path,
                        prev_name,
                        prev_seq,
                        enc=self._enc,
                        compression=self._compression,
                    ).blob
                records = iter_segment_records(
                    self._io,
                    self.path,
                    closed,
                    enc=self._enc,
                    compression=self._compression,
                    after_seq=prev_seq,
                )
                blob = fold(prev, records)
                if type(blob) is not bytes:
                    raise InvalidParams("fold must return bytes")
                self._install_snapshot(blob, upto)
            except BaseException:
                with self._mu:
                    # Do not retry on every commit: wait for the journal to grow again.
                    if self._compact_after is not None:
                        self._compact_at = self._journal_bytes() + self._compact_after
                raise
            with self._mu:
                self._compact_at = self._compact_after

    def _install_snapshot_deletions_only(self, upto: int) -> None:
        """The current snapshot already covers the closed segments: just delete them."""
        with self._mu:
            doomed = [c.name for c in self._closed_segs]
            self._closed_segs = []
        try:
            for n in doomed:
                self._io.unlink(os.path.join(self.path, n))
            self._io.fsync_dir(self.path)
        except OSError as e:
            log.warning("could not delete superseded files in %s: %s", self.path, e)

    # ---- stats and close --------------------------------------------------------------

    def _journal_bytes(self) -> int:
        """Caller holds _mu (sizes may lag a concurrent write by one group)."""
        current = self._writer.size if self._writer else 0
        return current + sum(c.size for c in self._closed_segs)

    def stats(self) -> StoreStats:
        with self._mu:
            journal = self._journal_bytes()
            return StoreStats(
                bytes_on_disk=journal + self._snap_bytes,
                journal_bytes=journal,
                last_snapshot_at=self._snap_at,
                snapshot_bytes=self._snap_bytes,
                segments=len(self._closed_segs) + (1 if self._writer else 0),
                last_seq=self._last_seq,
                snapshot_seq=self._snap_seq,
                compactions=self._compactions,
                failure=self._failure,
            )

    def close(self) -> None:
        """Commit what is buffered, make it durable, stop the threads, release the lock.

        Raises ``PersistenceError`` if that final commit fails (the store still closes).
        """
        with self._mu:
            if self._closed:
                return
            failed = self._failure is not None
            last = self._last_seq
        error: BaseException | None = None
        if not failed and self._journaling:
            try:
                self.commit(last)
                if self.durability == "periodic":
                    self._acquire_writer()
                    try:
                        self._sync_final()
                    finally:
                        self._release_writer()
            except BaseException as e:
                error = e
        self._stop.set()
        self._compact_wake.set()
        for t in self._threads:
            t.join()
        with self._mu:
            self._closed = True
            writer, self._writer = self._writer, None
            unserved, self._compact_futures = self._compact_futures, []
        _settle(unserved, ShuttingDown(f"the store in {self.path} closed before compacting"))
        if writer is not None:
            with contextlib.suppress(OSError):
                writer.close()
        self._lock_file.release()
        if error is not None:
            raise error

    def _sync_final(self) -> None:
        writer = self._writer
        assert writer is not None
        try:
            writer.sync()
        except OSError as e:
            with self._cond:
                self._fail(e)
            raise self._failed() from e

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _settle(futures: list[Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


def _ensure_dir(dirpath: str) -> None:
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
