"""Snapshots and compaction: a snapshot installed on request (``write_snapshot``) or
folded from the closed journal segments (compaction, on request or in the background
once the journal reaches ``compact_after_bytes``), each followed by deleting the segments
and the snapshot it supersedes.

One snapshot write or compaction runs at a time (``lock``). The fold runs outside the
store's mutex, concurrently with appends and commits, on records read back from disk.
The snapshot fields are guarded by the store's one mutex (``GroupCommit.mu``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future

from sync_queue.errors import InvalidParams, PersistenceError, QueueError
from sync_queue.storage.codec import Compression, EncryptionService
from sync_queue.storage.fileio import FileIO
from sync_queue.storage.groupcommit import GroupCommit
from sync_queue.storage.journal import iter_segment_records
from sync_queue.storage.recovery import Plan
from sync_queue.storage.snapshot import read_snapshot, write_snapshot_file

__all__ = ["Compaction", "Fold", "settle"]

log = logging.getLogger("sync_queue.storage")

Fold = Callable[[bytes | None, Iterator[bytes]], bytes]


class Compaction:
    """See the module docstring. ``Store`` owns one."""

    def __init__(
        self,
        io: FileIO,
        journal: GroupCommit,
        plan: Plan,
        *,
        enc: EncryptionService | None,
        compression: Compression,
        fold: Fold | None,
        compact_after_bytes: int | None,
        clock: Callable[[], int],
        stop: threading.Event,
    ) -> None:
        self.path = journal.path
        self._io = io
        self._journal = journal
        self._mu = journal.mu
        self._enc = enc
        self._compression = compression
        self._fold = fold
        self._compact_after = compact_after_bytes
        self._clock = clock
        self._stop = stop
        self.enabled = journal.journaling and fold is not None
        # lock: one snapshot write or compaction at a time.
        self.lock = threading.Lock()
        self.wake = threading.Event()
        # The fields below are guarded by the store's mutex.
        if plan.snapshot is not None:
            self.snapshot_name: str | None = plan.snapshot.name
            self.snapshot_seq = plan.snapshot.last_seq
            self.snapshot_bytes = plan.snapshot.size
            self.snapshot_at: int | None = plan.snapshot.header.created_ms
        else:
            self.snapshot_name, self.snapshot_seq = None, 0
            self.snapshot_bytes, self.snapshot_at = 0, None
        self.compactions = 0  # snapshots written since open
        self._compact_at = compact_after_bytes  # journal size that triggers the next one
        # Waiting for the next compaction of the background thread (compact_soon).
        self._futures: list[Future[None]] = []

    # ---- write_snapshot ---------------------------------------------------------------

    def write_snapshot(self, blob: bytes, through: int | None) -> None:
        if type(blob) is not bytes:
            raise InvalidParams("a snapshot must be bytes")
        with self.lock:
            with self._mu:
                self._journal.failstop.check_usable()
                seq = self._journal.last_seq if through is None else through
                if not 0 <= seq <= self._journal.last_seq:
                    raise InvalidParams(f"through={through} was never handed out by append")
            if self._journal.journaling:
                self._journal.rotate_for_snapshot()
            self._install(blob, seq)

    def _install(self, blob: bytes, seq: int) -> None:
        """Write the snapshot, then delete what it supersedes. Caller holds ``lock``."""
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
            old = self.snapshot_name
            self.snapshot_name, self.snapshot_seq, self.snapshot_bytes = name, seq, size
            self.snapshot_at = created
            self.compactions += 1
            # A closed segment is superseded when all its records are <= seq.
            doomed = [c.name for c in self._journal.take_superseded(seq)]
        if old is not None and old != name:
            doomed.append(old)
        self._delete(doomed)

    def _delete(self, names: list[str]) -> None:
        try:
            for n in names:
                self._io.unlink(os.path.join(self.path, n))
            if names:
                self._io.fsync_dir(self.path)
        except OSError as e:
            # Harmless for correctness: recovery skips superseded files and the next
            # open deletes them.
            log.warning("could not delete superseded files in %s: %s", self.path, e)

    # ---- compaction -------------------------------------------------------------------

    def compact(self, wait: bool) -> None:
        if not self.enabled:
            return
        if not wait:
            self.wake.set()
            return
        self.compact_once()

    def compact_soon(self) -> Future[None]:
        future: Future[None] = Future()
        if not self.enabled:
            future.set_result(None)
            return future
        with self._mu:
            self._journal.failstop.check_usable()
            self._futures.append(future)
        self.wake.set()
        return future

    def wake_if_due(self) -> None:
        """After the journal grew: wake the background thread once it is big enough."""
        with self._mu:
            at = self._compact_at
            due = self._fold is not None and at is not None and self._journal.journal_bytes() >= at
        if due:
            self.wake.set()

    def take_futures(self) -> list[Future[None]]:
        """The ``compact_soon`` futures still waiting. Caller holds the store's mutex."""
        futures, self._futures = self._futures, []
        return futures

    def loop(self) -> None:
        """The background thread: one compaction per wake-up, until ``stop``."""
        while True:
            self.wake.wait()
            self.wake.clear()
            if self._stop.is_set():
                return  # close() fails the futures still waiting
            # Taken before the rotation: this compaction covers what they asked for.
            with self._mu:
                futures = self.take_futures()
            try:
                self.compact_once()
            except QueueError as e:
                log.error("background compaction of %s failed: %s", self.path, e.message)
                settle(futures, e)
            except Exception as e:
                log.exception("background compaction of %s failed", self.path)
                settle(futures, PersistenceError(f"compaction of {self.path} failed: {e!r}"))
            else:
                settle(futures, None)

    def compact_once(self) -> None:
        """Rotate, fold the closed segments into the previous snapshot, install it."""
        with self.lock:
            with self._mu:
                self._journal.failstop.check_usable()
            try:
                self._journal.rotate_for_snapshot()
                self._fold_closed_segments()
            except BaseException:
                with self._mu:
                    # Do not retry on every commit: wait for the journal to grow again.
                    if self._compact_after is not None:
                        self._compact_at = self._journal.journal_bytes() + self._compact_after
                raise
            with self._mu:
                self._compact_at = self._compact_after

    def _fold_closed_segments(self) -> None:
        """Caller holds ``lock`` and has rotated: every written record is in a closed segment."""
        fold = self._fold
        assert fold is not None
        journal = self._journal
        with self._mu:
            closed = [(c.name, c.first_seq) for c in journal.closed_segments]
            upto = journal.writer.first_seq - 1 if journal.writer else self.snapshot_seq
            prev_name, prev_seq = self.snapshot_name, self.snapshot_seq
        if not closed or upto <= prev_seq:
            if closed:
                # The current snapshot already covers the closed segments: just delete them.
                with self._mu:
                    doomed = [c.name for c in journal.take_superseded(None)]
                self._delete(doomed)
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
        self._install(blob, upto)


def settle(futures: list[Future[None]], error: BaseException | None) -> None:
    """Complete each future with ``error``, or with None if there is none."""
    for future in futures:
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
