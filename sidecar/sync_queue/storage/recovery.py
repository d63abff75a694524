"""Reading a data directory back: newest snapshot, then the journal after it.

:func:`load_directory` only reads. It returns what the engine replays (:class:`Recovery`)
and what an opener for writing must change (:class:`Plan`: the torn tail to truncate,
leftovers of interrupted compactions to delete). Every refusal (corruption in the middle,
a wrong or missing key, an unreadable or damaged snapshot, a sequence gap) is raised
before anything is changed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from sync_queue.errors import DataDirUnusable, PersistenceError
from sync_queue.storage.codec import Compression, EncryptionService
from sync_queue.storage.fileio import FileIO
from sync_queue.storage.format import KIND_JOURNAL, KIND_SNAPSHOT, parse_name, segment_name
from sync_queue.storage.journal import SegmentRead, read_segment
from sync_queue.storage.snapshot import SnapshotRead, is_temp_name, read_snapshot

__all__ = [
    "QUARANTINE_PREFIX",
    "Listing",
    "Plan",
    "Quarantined",
    "Recovery",
    "TornTail",
    "list_directory",
    "load_directory",
]

# ``quarantine-<UTC time>-<segment>-at-<offset>.bin``: bytes a store set aside on open.
QUARANTINE_PREFIX = "quarantine-"


@dataclass(frozen=True)
class Quarantined:
    """A damaged last block that an open moved to ``quarantine`` before truncating."""

    quarantine: str  # path of the quarantine file
    file: str  # the journal segment it came from
    offset: int  # where in that segment
    bytes: int
    reason: str

    def to_dict(self) -> dict[str, str | int]:
        """For the sidecar's ``ready.recovered.quarantined``."""
        return {
            "file": self.file,
            "offset": self.offset,
            "bytes": self.bytes,
            "quarantine": self.quarantine,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class TornTail:
    """An incomplete or damaged end of the last segment, with nothing valid after it.

    ``damaged``: the end is a whole block that fails its CRC or GCM tag, not an append cut
    short by a crash. Its records may have been acknowledged, so an opener for writing
    moves the bytes to a quarantine file before it truncates (``Store``'s rule).
    """

    file: str
    offset: int
    dropped_bytes: int
    reason: str
    damaged: bool = False


@dataclass
class Recovery:
    """What the engine replays: ``snapshot`` (or None), then :meth:`records` in order.

    ``snapshot_seq`` is the last sequence number the snapshot includes (0 if none);
    ``last_seq`` the last sequence number recovered (records are ``snapshot_seq + 1 ..
    last_seq``). ``torn_tail`` notes a truncated (when opened for writing) torn tail.
    """

    snapshot: bytes | None
    snapshot_seq: int
    last_seq: int
    torn_tail: TornTail | None
    _chunks: list[list[bytes]] = field(default_factory=list, repr=False)
    snapshot_file: str | None = None  # path of the snapshot read, if any
    # Per segment read: (path, [(block offset, first seq), ...]), for locate().
    _blocks: list[tuple[str, list[tuple[int, int]]]] = field(default_factory=list, repr=False)

    @property
    def record_count(self) -> int:
        return sum(len(c) for c in self._chunks)

    def records(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            yield from chunk

    def locate(self, seq: int) -> tuple[str, int] | None:
        """(segment path, offset of the block) holding record ``seq``, if it was read."""
        found: tuple[str, int] | None = None
        for path, starts in self._blocks:
            for offset, first in starts:
                if first > seq:
                    return found
                found = (path, offset)
        return found if found is not None and seq <= self.last_seq else None


@dataclass
class Listing:
    snapshots: list[tuple[int, str]]  # (last seq, name), ascending
    segments: list[tuple[int, str]]  # (first seq, name), ascending
    temps: list[str]
    quarantined: list[str] = field(default_factory=list)  # quarantine files, by name


def list_directory(io: FileIO, dirpath: str) -> Listing:
    try:
        names = io.listdir(dirpath)
    except OSError as e:
        raise DataDirUnusable(f"cannot list data directory {dirpath}: {e.strerror or e}") from e
    snaps: list[tuple[int, str]] = []
    segs: list[tuple[int, str]] = []
    temps: list[str] = []
    quarantined: list[str] = []
    for name in names:
        parsed = parse_name(name)
        if parsed is None:
            if is_temp_name(name):
                temps.append(name)
            elif name.startswith(QUARANTINE_PREFIX) and name.endswith(".bin"):
                quarantined.append(name)
            continue  # LOCK and anything not ours
        kind, seq = parsed
        (segs if kind == KIND_JOURNAL else snaps).append((seq, name))
        assert kind in (KIND_JOURNAL, KIND_SNAPSHOT)
    return Listing(sorted(snaps), sorted(segs), sorted(temps), sorted(quarantined))


@dataclass
class Plan:
    """Recovery result plus the changes an opener for writing makes (in this order)."""

    recovery: Recovery
    snapshot: SnapshotRead | None
    segments: list[SegmentRead]  # live segments, in order (the last one may be torn)
    truncate: SegmentRead | None  # last segment whose torn tail is cut at torn_offset
    delete: list[str]  # superseded segments and snapshots, temps, a torn-header segment
    tail: SegmentRead | None  # the segment to keep appending to, if any
    next_seq: int


def load_directory(
    io: FileIO, dirpath: str, *, enc: EncryptionService | None, compression: Compression
) -> Plan:
    """Read the directory back (newest snapshot, then the journal after it) and plan the
    changes an opener for writing makes; change nothing. Refuses with a clear error."""
    listing = list_directory(io, dirpath)
    delete: list[str] = list(listing.temps)
    snap: SnapshotRead | None = None
    snap_seq = 0
    if listing.snapshots:
        # Only the newest counts: the journal it superseded may already be gone, so an
        # older snapshot could not be completed from the journal anyway.
        seq, name = listing.snapshots[-1]
        snap = read_snapshot(io, dirpath, name, seq, enc=enc, compression=compression)
        snap_seq = seq
        delete.extend(n for _, n in listing.snapshots[:-1])
    live = _live_segments(listing.segments, snap_seq, delete)
    reads = _read_segments(io, dirpath, live, snap, snap_seq, enc=enc, compression=compression)
    torn, truncate, tail = _settle_last_segment(reads, snap_seq, delete)
    chunks: list[list[bytes]] = []
    last_seq = snap_seq
    for seg in reads:
        skip = max(0, snap_seq + 1 - seg.first_seq)
        if seg.count > skip:
            chunks.append(seg.records[skip:] if skip else seg.records)
            last_seq = seg.first_seq + seg.count - 1
    recovery = Recovery(
        snap.blob if snap else None,
        snap_seq,
        last_seq,
        torn,
        chunks,
        snap.path if snap else None,
        [(seg.path, seg.block_starts) for seg in reads],
    )
    return Plan(recovery, snap, reads, truncate, delete, tail, last_seq + 1)


def _live_segments(
    segs: list[tuple[int, str]], snap_seq: int, delete: list[str]
) -> list[tuple[int, str]]:
    """The segments recovery reads; those the snapshot supersedes go to ``delete``."""
    live: list[tuple[int, str]] = []
    for i, (first, name) in enumerate(segs):
        # A non-last segment is superseded when the next one starts within the snapshot:
        # a compaction finished its snapshot but not its deletions.
        if i + 1 < len(segs) and segs[i + 1][0] <= snap_seq + 1:
            delete.append(name)
        else:
            live.append((first, name))
    return live


def _read_segments(
    io: FileIO,
    dirpath: str,
    live: list[tuple[int, str]],
    snap: SnapshotRead | None,
    snap_seq: int,
    *,
    enc: EncryptionService | None,
    compression: Compression,
) -> list[SegmentRead]:
    """Read each live segment, refusing a gap in sequence numbers before or between them."""
    reads: list[SegmentRead] = []
    expected: int | None = None
    for i, (first, name) in enumerate(live):
        if expected is None:
            if first > snap_seq + 1:
                raise PersistenceError(
                    f"journal records {snap_seq + 1}..{first - 1} are missing: the first "
                    f"journal segment is {name} but "
                    + (
                        f"the newest snapshot ends at {snap_seq}"
                        if snap
                        else "there is no snapshot"
                    ),
                    file=os.path.join(dirpath, name),
                    offset=0,
                )
        elif first != expected:
            raise PersistenceError(
                f"journal segment {segment_name(expected)} is missing or was cut short "
                f"(the next segment is {name})",
                file=os.path.join(dirpath, name),
                offset=0,
            )
        last = i == len(live) - 1
        seg = read_segment(io, dirpath, name, first, enc=enc, compression=compression, last=last)
        reads.append(seg)
        expected = first + seg.count
    return reads


def _settle_last_segment(
    reads: list[SegmentRead], snap_seq: int, delete: list[str]
) -> tuple[TornTail | None, SegmentRead | None, SegmentRead | None]:
    """The last segment's torn tail, the segment to truncate and the one to append to
    (each or None); a last segment with nothing to keep leaves ``reads`` for ``delete``."""
    if not reads:
        return None, None, None
    lastseg = reads[-1]
    torn: TornTail | None = None
    if lastseg.torn_offset is not None:
        torn = TornTail(
            lastseg.path,
            lastseg.torn_offset,
            lastseg.size - lastseg.torn_offset,
            lastseg.torn_reason,
            lastseg.torn_damaged,
        )
    if lastseg.header is None:
        # Torn while being created: holds nothing, so it is removed, not truncated.
        delete.append(lastseg.name)
        reads.pop()
        return torn, None, None
    if lastseg.first_seq + lastseg.count < snap_seq + 1:
        # Entirely older than the snapshot (a snapshot-mode store wrote it after
        # the journal): appending to it would break the sequence, so drop it.
        delete.append(lastseg.name)
        reads.pop()
        return torn, None, None
    truncate = lastseg if lastseg.torn_offset is not None else None
    return torn, truncate, lastseg
