"""The journal's write side: records buffered in apply order and written by group commit,
segment rotation, the periodic fsync, and the closed segments a snapshot will supersede.

Group commit: ``append`` only buffers and hands out sequence numbers; the first thread to
``commit`` becomes the leader and writes everything buffered so far as one block with one
``write`` and (in "always") one fsync, while the others wait on ``cond`` until a group
covers their ticket. A failed write or fsync cuts the group off the file and fail-stops
the store (``FailStop``). ``mu`` guards this object's state and the store's other shared
state (``FailStop``, the snapshot fields of ``Compaction``): the store has one mutex.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from sync_queue.errors import InvalidParams
from sync_queue.storage.codec import Compression, EncryptionService
from sync_queue.storage.failstop import FailStop
from sync_queue.storage.fileio import FileIO
from sync_queue.storage.journal import SegmentWriter
from sync_queue.storage.recovery import Plan

__all__ = ["DURABILITIES", "MAX_RECORD_BYTES", "ClosedSegment", "Durability", "GroupCommit"]

log = logging.getLogger("sync_queue.storage")

Durability = Literal["always", "periodic", "snapshot"]
DURABILITIES = ("always", "periodic", "snapshot")
# Records are opaque, but a single one this large is a caller bug, not data.
MAX_RECORD_BYTES = 1 << 30


@dataclass
class ClosedSegment:
    """A closed (rotated-out) journal segment awaiting compaction."""

    name: str
    first_seq: int
    size: int
    next_seq: int  # first_seq + its record count


class GroupCommit:
    """See the module docstring. ``Store`` owns one; nothing else touches it."""

    def __init__(
        self,
        io: FileIO,
        dirpath: str,
        plan: Plan,
        *,
        durability: Durability,
        enc: EncryptionService | None,
        compression: Compression,
        segment_max_bytes: int,
        fsync_interval: float,
        clock: Callable[[], int],
        stop: threading.Event,
    ) -> None:
        self.path = dirpath
        self.durability: Durability = durability
        self.journaling = durability != "snapshot"
        self._io = io
        self._enc = enc
        self._compression = compression
        self._segment_max = segment_max_bytes
        self._fsync_interval = fsync_interval
        self._clock = clock
        self._stop = stop
        # mu guards everything below; cond signals the end of a group write.
        self.mu = threading.Lock()
        self.cond = threading.Condition(self.mu)
        self.failstop = FailStop(dirpath)
        self._pending: list[bytes] = []
        self.last_seq = plan.next_seq - 1  # last seq appended
        self._done_seq = plan.next_seq - 1  # last seq written (and synced in "always")
        self._synced_seq = self._done_seq
        self._busy = False  # a leader (or a rotation) owns the writer
        # Rotations waiting for the writer. Committers let them go first: under steady
        # load some committer is always ready to lead, and the rotation would starve.
        self._want_writer = 0
        # _rot_lock: the periodic syncer and a rotation never use/close the fd at once.
        self._rot_lock = threading.Lock()
        self.writer: SegmentWriter | None = None
        # Snapshot mode never appends, so even the tail segment only waits for deletion.
        self.closed_segments = [
            ClosedSegment(s.name, s.first_seq, s.end, s.first_seq + s.count)
            for s in plan.segments
            if s is not plan.tail or not self.journaling
        ]
        if self.journaling:
            self._open_writer(plan)

    def _open_writer(self, plan: Plan) -> None:
        """Append to the recovered tail segment, or start a new one if it is full."""
        tail = plan.tail
        if tail is not None and tail.end < self._segment_max:
            self.writer = SegmentWriter.reopen(
                self._io, tail, enc=self._enc, compression=self._compression
            )
            return
        if tail is not None:
            self.closed_segments.append(
                ClosedSegment(tail.name, tail.first_seq, tail.end, tail.first_seq + tail.count)
            )
        self.writer = SegmentWriter.create(
            self._io,
            self.path,
            plan.next_seq,
            enc=self._enc,
            compression=self._compression,
            created_ms=self._clock(),
        )

    # ---- append and commit ------------------------------------------------------------

    def append(self, records: Sequence[bytes]) -> int:
        for r in records:
            # Checked here, cheaply, so a bad record fails its caller and never the
            # group commit of other callers.
            if type(r) is not bytes:
                raise InvalidParams("records must be bytes")
            if len(r) > MAX_RECORD_BYTES:
                raise InvalidParams(f"a record may hold at most {MAX_RECORD_BYTES} bytes")
        with self.mu:
            self.failstop.check_usable()
            if self.journaling and records:
                self._pending.extend(records)
                self.last_seq += len(records)
            return self.last_seq

    def commit(self, ticket: int) -> bool:
        """Wait until ``ticket`` is written (leading a group if no one is); True if this
        thread led a group, so the journal grew."""
        if not self.journaling:
            with self.mu:
                self.failstop.check_usable()
            return False
        with self.cond:
            while True:
                if self.failstop.reason is not None:
                    raise self.failstop.error()
                if self._done_seq >= ticket:
                    return False
                if not self._busy and not self._want_writer:
                    break
                self.cond.wait()
            if ticket > self.last_seq:
                raise InvalidParams(f"ticket {ticket} was never handed out by append")
            # This thread is the leader: it takes everything buffered so far.
            self._busy = True
            records, self._pending = self._pending, []
            first = self._done_seq + 1
        self._lead(first, records)
        return True

    def _lead(self, first: int, records: list[bytes]) -> None:
        """Write the group as the leader, wake its waiters, rotate if the segment is full."""
        writer = self.writer
        assert writer is not None
        error = self._write_group(writer, first, records)
        rotate = error is None and writer.size >= self._segment_max
        with self.cond:
            if error is not None:
                self.failstop.fail(error)
            else:
                self._done_seq = first + len(records) - 1
                if self.durability == "always":
                    self._synced_seq = self._done_seq
            if not rotate:
                self._busy = False
            # Waiters covered by this group return now, even while we rotate.
            self.cond.notify_all()
        if error is not None:
            raise self.failstop.error() from error
        if rotate:
            # The group is durable and acknowledged whatever happens here; a failed
            # rotation fail-stops the store for the callers after it.
            try:
                self.rotate()
            except BaseException as e:
                with self.cond:
                    self.failstop.fail(e)
            finally:
                self.release_writer()

    def _write_group(
        self, writer: SegmentWriter, first: int, records: list[bytes]
    ) -> BaseException | None:
        """Write (and in "always" fsync) one block; on failure cut it off and return why."""
        size_before = writer.size
        try:
            data = writer.encode(first, records)
            writer.write(data, len(records))
            if self.durability == "always":
                writer.sync()
        except BaseException as e:
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
            return e
        return None

    # ---- owning the writer: rotation --------------------------------------------------

    def rotate(self) -> None:
        """Close the current segment (fsync'd) and start the next. Caller owns the writer."""
        old = self.writer
        assert old is not None
        new_first = old.first_seq + old.count
        with self._rot_lock:
            # "periodic" has unsynced data in it; a closed segment is final, and ends at its
            # last block (its preallocated zeros cut) before the next one exists.
            old.seal()
            new = SegmentWriter.create(
                self._io,
                self.path,
                new_first,
                enc=self._enc,
                compression=self._compression,
                created_ms=self._clock(),
            )
            old.close()
            self.writer = new
        with self.mu:
            self.closed_segments.append(ClosedSegment(old.name, old.first_seq, old.size, new_first))
            self._synced_seq = max(self._synced_seq, new_first - 1)

    def rotate_for_snapshot(self) -> None:
        """Make every written record live in closed segments, so they can be deleted."""
        self.acquire_writer()
        try:
            writer = self.writer
            assert writer is not None
            if writer.count:
                self.rotate()
        except BaseException as e:
            with self.cond:
                self.failstop.fail(e)
            raise self.failstop.error() from e
        finally:
            self.release_writer()

    def acquire_writer(self) -> None:
        """Become the owner of the writer without writing (rotation by compaction)."""
        with self.cond:
            self._want_writer += 1
            try:
                while self._busy and self.failstop.reason is None:
                    self.cond.wait()
            finally:
                self._want_writer -= 1
            if self.failstop.reason is not None:
                self.cond.notify_all()
                raise self.failstop.error()
            self._busy = True

    def release_writer(self) -> None:
        with self.cond:
            self._busy = False
            self.cond.notify_all()

    # ---- periodic fsync ---------------------------------------------------------------

    def sync_loop(self) -> None:
        """The "periodic" mode's thread: fsync what was written, every fsync_interval."""
        while not self._stop.wait(self._fsync_interval):
            self._sync_now()

    def _sync_now(self) -> None:
        with self.mu:
            if self.failstop.reason is not None or self._synced_seq >= self._done_seq:
                return
            target = self._done_seq
        # Not owning the writer: fsync may run while the leader appends (both are safe on
        # one fd); _rot_lock only keeps a rotation from closing the fd under us.
        with self._rot_lock:
            writer = self.writer
            if writer is None:
                return
            try:
                writer.sync()
            except OSError as e:
                with self.cond:
                    self.failstop.fail(e)
                    self.cond.notify_all()
                return
        with self.mu:
            self._synced_seq = max(self._synced_seq, target)

    # ---- close and after a failure ----------------------------------------------------

    def finish(self, ticket: int) -> None:
        """Commit everything up to ``ticket`` and make it durable (close's last write)."""
        self.commit(ticket)
        if self.durability != "periodic":
            return
        self.acquire_writer()
        try:
            writer = self.writer
            assert writer is not None
            try:
                writer.sync()
            except OSError as e:
                with self.cond:
                    self.failstop.fail(e)
                raise self.failstop.error() from e
        finally:
            self.release_writer()

    def written_before_failure(self) -> int:
        """After a fail-stop: the last seq written before it, once no leader is writing.
        Caller holds ``mu`` (through ``cond``)."""
        if self.failstop.reason is None:
            raise InvalidParams("read_durable is only for a fail-stopped store")
        while self._busy:  # a leader that was writing when the store failed
            self.cond.wait()
        return self._done_seq

    def take_writer(self) -> SegmentWriter | None:
        """Detach the segment writer for close (no group may follow). Caller holds ``mu``."""
        writer, self.writer = self.writer, None
        return writer

    def journal_bytes(self) -> int:
        """Caller holds ``mu`` (sizes may lag a concurrent write by one group)."""
        current = self.writer.size if self.writer else 0
        return current + sum(c.size for c in self.closed_segments)

    def segment_count(self) -> int:
        """Caller holds ``mu``."""
        return len(self.closed_segments) + (1 if self.writer else 0)

    def take_superseded(self, seq: int | None) -> list[ClosedSegment]:
        """Forget the closed segments whose records are all <= ``seq`` (all of them if
        None) and return them, for deletion. Caller holds ``mu``."""
        gone = [c for c in self.closed_segments if seq is None or c.next_seq <= seq + 1]
        self.closed_segments = [c for c in self.closed_segments if c not in gone]
        return gone
