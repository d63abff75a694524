"""The ``Store``: the one object the engine talks to. It moves opaque bytes only.

The ``Store`` is a façade over parts with one job each: ``datadir`` (create, restrict and
repair the directory), ``groupcommit`` (append, group commit, rotation, periodic fsync),
``compaction`` (snapshots, compaction and its thread) and ``failstop`` (the fail-stop
state). It opens them in order and holds their shared threads and lock.

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
    to a quarantine file first (see :func:`datadir.quarantine`), removes leftovers of an
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
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from sync_queue.errors import DataDirUnusable, InvalidParams, PersistenceError, ShuttingDown
from sync_queue.storage.codec import Compression, EncryptionService
from sync_queue.storage.compaction import Compaction, Fold, settle
from sync_queue.storage.datadir import ensure_dir, repair
from sync_queue.storage.fileio import FileIO
from sync_queue.storage.groupcommit import DURABILITIES, MAX_RECORD_BYTES, Durability, GroupCommit
from sync_queue.storage.lock import DirLock
from sync_queue.storage.recovery import Quarantined, Recovery, load_directory

__all__ = ["MAX_RECORD_BYTES", "Durability", "Fold", "Store", "StoreStats"]


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


@dataclass(frozen=True)
class _Options:
    """What ``Store.open`` was given, checked, for the parts the store is made of."""

    durability: Durability
    compression: Compression
    enc: EncryptionService | None
    fsync_interval: float
    segment_max_bytes: int
    compact_after_bytes: int | None
    fold: Fold | None
    clock: Callable[[], int]
    io: FileIO


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
        if durability not in DURABILITIES:
            raise InvalidParams(f"durability must be one of {', '.join(DURABILITIES)}")
        if not fsync_interval > 0:
            raise InvalidParams("fsync_interval must be a positive number of seconds")
        if segment_max_bytes < 4096:
            raise InvalidParams("segment_max_bytes must be at least 4096")
        if compact_after_bytes is not None and compact_after_bytes < 1:
            raise InvalidParams("compact_after_bytes must be positive (or None for never)")
        options = _Options(
            durability=durability,
            compression=Compression(compression_level),
            enc=EncryptionService(key) if key is not None else None,
            fsync_interval=fsync_interval,
            segment_max_bytes=segment_max_bytes,
            compact_after_bytes=compact_after_bytes,
            fold=fold,
            clock=clock,
            io=io or FileIO(),
        )
        dirpath = os.path.abspath(os.fspath(path))
        ensure_dir(dirpath)
        lock = DirLock.acquire(dirpath, timeout=lock_timeout)
        assert lock is not None
        self = object.__new__(cls)
        try:
            self._init(dirpath, lock, options, check)
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
        o: _Options,
        check: Callable[[Recovery], None] | None,
    ) -> None:
        self.path = dirpath
        self.durability: Durability = o.durability
        self._lock_file = lock
        self._io = o.io
        self._enc = o.enc
        self._compression = o.compression
        plan = load_directory(o.io, dirpath, enc=o.enc, compression=o.compression)
        if check is not None:
            check(plan.recovery)
        # From here on we may change the directory: recovery accepted it.
        self.quarantined: list[Quarantined] = repair(o.io, dirpath, plan, o.clock)
        self._recovery: Recovery | None = plan.recovery
        self._stop = threading.Event()  # close() tells the threads to end
        self._journal = GroupCommit(
            o.io,
            dirpath,
            plan,
            durability=o.durability,
            enc=o.enc,
            compression=o.compression,
            segment_max_bytes=o.segment_max_bytes,
            fsync_interval=o.fsync_interval,
            clock=o.clock,
            stop=self._stop,
        )
        self._mu = self._journal.mu  # the store's one mutex (see groupcommit)
        self._failstop = self._journal.failstop
        self._compaction = Compaction(
            o.io,
            self._journal,
            plan,
            enc=o.enc,
            compression=o.compression,
            fold=o.fold,
            compact_after_bytes=o.compact_after_bytes,
            clock=o.clock,
            stop=self._stop,
        )
        self._threads: list[threading.Thread] = []
        if o.durability == "periodic":
            self._spawn(self._journal.sync_loop, "sync-queue-fsync")
        if self._compaction.enabled:
            self._spawn(self._compaction.loop, "sync-queue-compact")

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

    # ---- the write path (groupcommit) -------------------------------------------------

    def append(self, records: Sequence[bytes]) -> int:
        return self._journal.append(records)

    def commit(self, ticket: int) -> None:
        if self._journal.commit(ticket):
            self._compaction.wake_if_due()

    # ---- failure ----------------------------------------------------------------------

    @property
    def failure(self) -> str | None:
        """Why the store is fail-stopped (for ``health``), or None."""
        return self._failstop.reason

    def read_durable(self) -> Recovery:
        """After a fail-stop: what the directory holds for every record written before the
        failure (the refused group excluded), read back from disk like an open does, so
        the caller can make its live state equal what a reopen will recover."""
        with self._compaction.lock:  # no compaction swaps files under the read
            with self._journal.cond:
                through = self._journal.written_before_failure()
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

    # ---- snapshots and compaction (compaction) ----------------------------------------

    def write_snapshot(self, blob: bytes, through: int | None = None) -> None:
        self._compaction.write_snapshot(blob, through)

    def compact(self, wait: bool = True) -> None:
        """Fold the closed journal into a new snapshot (see module docstring)."""
        self._compaction.compact(wait)

    def compact_soon(self) -> Future[None]:
        """Ask the background thread to compact; see the module docstring."""
        return self._compaction.compact_soon()

    # ---- stats and close --------------------------------------------------------------

    def stats(self) -> StoreStats:
        snap = self._compaction
        with self._mu:
            journal = self._journal.journal_bytes()
            return StoreStats(
                bytes_on_disk=journal + snap.snapshot_bytes,
                journal_bytes=journal,
                last_snapshot_at=snap.snapshot_at,
                snapshot_bytes=snap.snapshot_bytes,
                segments=self._journal.segment_count(),
                last_seq=self._journal.last_seq,
                snapshot_seq=snap.snapshot_seq,
                compactions=snap.compactions,
                failure=self._failstop.reason,
            )

    def close(self) -> None:
        """Commit what is buffered, make it durable, stop the threads, release the lock.

        Raises ``PersistenceError`` if that final commit fails (the store still closes).
        """
        with self._mu:
            if self._failstop.closed:
                return
            failed = self._failstop.reason is not None
            last = self._journal.last_seq
        error: BaseException | None = None
        if not failed and self._journal.journaling:
            try:
                self._journal.finish(last)
            except BaseException as e:
                error = e
        self._stop.set()
        self._compaction.wake.set()
        for t in self._threads:
            t.join()
        with self._mu:
            self._failstop.closed = True
            writer = self._journal.take_writer()
            unserved = self._compaction.take_futures()
        settle(unserved, ShuttingDown(f"the store in {self.path} closed before compacting"))
        if writer is not None:
            with contextlib.suppress(OSError):
                writer.close()
        self._lock_file.release()
        if error is not None:
            raise error

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
