"""The append-only journal: segment files of blocks of opaque records.

A segment ``journal-<first seq, 20 digits>.log`` is a file header followed by blocks; each
block holds the records of one group commit (see ``format``). Sequence numbers continue
without gaps from one block to the next and from one segment to the next, which is how
recovery notices a missing block or file. A new segment is created with ``O_EXCL``, its
header fsync'd, then the directory fsync'd, so that the name survives power loss before
any record in it is acknowledged. A segment's file is preallocated ahead of its last block
(``PREALLOCATE_BYTES``) and cut back to it when the segment is closed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from sync_queue.errors import DataDirUnusable, EncryptionError, PersistenceError
from sync_queue.storage.blocks import (
    BlockScan,
    ScannedBlock,
    decode_payload,
    encode_block,
    join_records,
    open_header,
    read_final_file,
    scan_blocks,
    split_records,
)
from sync_queue.storage.codec import Compression, EncryptionService, FileCipher
from sync_queue.storage.fileio import FileIO, write_all
from sync_queue.storage.format import (
    BT_RECORDS,
    FILE_HEADER_SIZE,
    KIND_JOURNAL,
    MAX_PAYLOAD,
    FileHeader,
    HeaderError,
    segment_name,
)

__all__ = [
    "PURPOSE",
    "SegmentRead",
    "SegmentWriter",
    "iter_segment_records",
    "read_segment",
]

PURPOSE = b"journal"
# One block holds at most this much plaintext; a bigger group commit becomes several
# blocks (still one write). Keeps single allocations and AES-GCM calls bounded.
_BLOCK_PLAIN_MAX = 64 * 1024 * 1024
_ZERO16 = bytes(16)
# A segment's file is grown this much at a time with FileIO.preallocate: the records are then
# written over zeros already counted in its size, and only one fdatasync per step commits a
# size change. The zeros past the last record are cut off when the segment is closed; after
# a crash recovery reads them as an interrupted append and truncates them (blocks.py,
# ``is_short_write``: "size landed before the data (or preallocated space)").
PREALLOCATE_BYTES = 1024 * 1024
_ZERO32 = bytes(32)


@dataclass
class SegmentRead:
    """What reading one segment found."""

    name: str
    path: str
    size: int  # bytes in the file
    first_seq: int
    header: FileHeader | None  # None: the header itself is torn (last segment only)
    records: list[bytes]
    blocks: int
    end: int  # offset just after the last good block
    torn_offset: int | None = None  # where a torn tail starts (last segment only)
    torn_reason: str = ""
    # The tail from torn_offset is a complete block that fails its check (CRC or GCM
    # tag), not an interrupted append: it is quarantined, never silently dropped.
    torn_damaged: bool = False
    # (offset, first seq) of each good block, to name where a record came from.
    block_starts: list[tuple[int, int]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.records)


def read_segment(
    io: FileIO,
    dirpath: str,
    name: str,
    first_seq: int,
    *,
    enc: EncryptionService | None,
    compression: Compression,
    last: bool,
) -> SegmentRead:
    """Read and fully decode one segment, or raise a clear error naming file and offset.

    A torn tail (an incomplete or bad block with no good block after it) is accepted only
    in the ``last`` segment and reported through ``torn_offset``; the file is not touched.
    ``torn_damaged`` says the tail is a whole block that fails its CRC or GCM tag (see
    :func:`~sync_queue.storage.blocks.is_short_write`) rather than an interrupted append.
    """
    path = os.path.join(dirpath, name)
    try:
        data = io.read_file(path)
    except OSError as e:
        raise DataDirUnusable(f"cannot read journal segment {path}: {e.strerror or e}") from e
    size = len(data)
    try:
        header, cipher = open_header(
            data, path=path, kind=KIND_JOURNAL, seq=first_seq, enc=enc, purpose=PURPOSE
        )
    except HeaderError as e:
        if last and size <= FILE_HEADER_SIZE:
            # Crash while the segment was being created: nothing in it was acknowledged
            # (its header is fsync'd before any record is written).
            return SegmentRead(name, path, size, first_seq, None, [], 0, 0, 0, str(e))
        raise PersistenceError(
            f"journal segment {path} is corrupt at offset 0: {e}", file=path, offset=0
        ) from e
    scan = scan_blocks(
        data, FILE_HEADER_SIZE, btype=BT_RECORDS, aes=cipher is not None, first_seq=first_seq
    )
    read = SegmentRead(name, path, size, first_seq, header, [], 0, scan.end)
    read.torn_offset = _torn_tail_offset(scan, path, last)
    read.torn_reason, read.torn_damaged = scan.bad_reason, scan.damaged
    _decode_blocks(read, scan.blocks, header, cipher, compression, last)
    return read


def _torn_tail_offset(scan: BlockScan, path: str, last: bool) -> int | None:
    """Where the segment's torn tail starts, or None; a bad block anywhere else (not the
    last segment, or good blocks after it) is corruption in the middle: refused."""
    if scan.bad_offset is None:
        return None
    if not last or scan.valid_after:
        what = "good blocks follow it" if scan.valid_after else "later segments follow it"
        raise PersistenceError(
            f"journal segment {path} is corrupt at offset {scan.bad_offset}: "
            f"{scan.bad_reason}; {what}, so this is not a torn tail and nothing was "
            "truncated",
            file=path,
            offset=scan.bad_offset,
        )
    return scan.bad_offset


def _decode_blocks(
    read: SegmentRead,
    blocks: list[ScannedBlock],
    header: FileHeader,
    cipher: FileCipher | None,
    compression: Compression,
    last: bool,
) -> None:
    """Decode the good blocks' records into ``read``, in order; in the ``last`` segment, a
    last block that fails its GCM tag becomes a damaged tail instead."""
    for i, b in enumerate(blocks):
        try:
            records = _decode_block(b, header, cipher, compression, read.path)
        except EncryptionError:
            if not (last and i == len(blocks) - 1):
                raise  # blocks or segments follow it: corruption in the middle
            # The last block's bytes passed their CRC but not their tag: as damaged as a
            # failed CRC, and handled the same way (quarantined, never dropped silently).
            read.torn_offset, read.torn_damaged, read.end = b.offset, True, b.offset
            read.torn_reason = "block failed authentication (GCM tag mismatch)"
            return
        read.records.extend(records)
        read.block_starts.append((b.offset, b.header.first_seq))
        read.blocks += 1


def _decode_block(
    b: ScannedBlock,
    header: FileHeader,
    cipher: FileCipher | None,
    compression: Compression,
    path: str,
) -> list[bytes]:
    """The records of one checked block of the journal segment at ``path``."""
    where = f"journal segment {path} at offset {b.offset}"
    plain = decode_payload(
        kind=KIND_JOURNAL,
        file_id=header.file_id,
        header=b.header,
        payload=b.payload,
        compression=compression,
        cipher=cipher,
        max_size=MAX_PAYLOAD,
        where=where,
    )
    return split_records(plain, b.header.count, where)


def iter_segment_records(
    io: FileIO,
    dirpath: str,
    segments: list[tuple[str, int]],
    *,
    enc: EncryptionService | None,
    compression: Compression,
    after_seq: int,
) -> Iterator[bytes]:
    """Records with seq > ``after_seq`` from closed segments ``(name, first_seq)``, in order.

    Closed segments were fsync'd before they were closed, so any damage is an error here.
    One block is decoded at a time to bound memory: a 64 MiB segment of compressed records
    decodes to several times that, which the fold would otherwise hold beside its state.
    """
    expected: int | None = None
    for name, first_seq in segments:
        if expected is not None and first_seq != expected:
            raise PersistenceError(
                f"journal segment {segment_name(expected)} is missing (next is {name})"
            )
        blocks, header, cipher, path = _scan_closed_segment(io, dirpath, name, first_seq, enc)
        expected = first_seq + sum(b.header.count for b in blocks)
        seq = first_seq
        blocks.reverse()  # popped from the end: each block's bytes go once decoded
        while blocks:
            b = blocks.pop()
            records = _decode_block(b, header, cipher, compression, path)
            del b
            skip = max(0, after_seq + 1 - seq)
            seq += len(records)
            yield from records[skip:] if skip else records


def _scan_closed_segment(
    io: FileIO, dirpath: str, name: str, first_seq: int, enc: EncryptionService | None
) -> tuple[list[ScannedBlock], FileHeader, FileCipher | None, str]:
    """The checked blocks of a closed segment (any bad block is an error: see
    :func:`read_segment` with ``last=False``), its header, cipher and path."""
    path = os.path.join(dirpath, name)
    data, header, cipher = read_final_file(
        io,
        path,
        what="journal segment",
        kind=KIND_JOURNAL,
        seq=first_seq,
        enc=enc,
        purpose=PURPOSE,
    )
    scan = scan_blocks(
        data, FILE_HEADER_SIZE, btype=BT_RECORDS, aes=cipher is not None, first_seq=first_seq
    )
    _torn_tail_offset(scan, path, last=False)  # raises for any bad block
    return scan.blocks, header, cipher, path


class SegmentWriter:
    """Appends blocks to one segment. Not thread-safe: the store's commit leader owns it."""

    def __init__(
        self,
        io: FileIO,
        path: str,
        fd: int,
        header: FileHeader,
        cipher: FileCipher | None,
        compression: Compression,
        size: int,
        count: int,
    ) -> None:
        self.io = io
        self.path = path
        self.name = os.path.basename(path)
        self.fd = fd
        self.header = header
        self.cipher = cipher
        self.compression = compression
        self.size = size  # the logical end: just after the last block written
        self.count = count
        self.allocated = size  # the file's size: past ``size`` it holds preallocated zeros

    @property
    def first_seq(self) -> int:
        return self.header.seq

    @classmethod
    def create(
        cls,
        io: FileIO,
        dirpath: str,
        first_seq: int,
        *,
        enc: EncryptionService | None,
        compression: Compression,
        created_ms: int,
    ) -> SegmentWriter:
        file_id = os.urandom(16)
        salt = enc.new_salt() if enc else _ZERO32
        header = FileHeader(
            KIND_JOURNAL,
            enc is not None,
            file_id,
            salt,
            enc.key_check if enc else _ZERO16,
            first_seq,
            created_ms,
        )
        cipher = enc.file_cipher(purpose=PURPOSE, file_id=file_id, salt=salt) if enc else None
        path = os.path.join(dirpath, segment_name(first_seq))
        # O_EXCL: never reuse (and so never re-key or overwrite) an existing segment.
        # No O_APPEND: blocks are written at the logical end, over preallocated zeros.
        fd = io.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            data = header.pack()
            write_all(io, fd, data)
            io.fsync(fd)
            io.fsync_dir(dirpath)
        except BaseException:
            io.close(fd)
            # Best effort: a half-created segment holds no record, and recovery treats a
            # header-only last segment as torn anyway.
            with contextlib.suppress(OSError):
                io.unlink(path)
            raise
        return cls(io, path, fd, header, cipher, compression, len(data), 0)

    @classmethod
    def reopen(
        cls,
        io: FileIO,
        seg: SegmentRead,
        *,
        enc: EncryptionService | None,
        compression: Compression,
    ) -> SegmentWriter:
        """Append to an existing, fully valid segment (its torn tail already truncated)."""
        assert seg.header is not None
        fd = io.open(seg.path, os.O_WRONLY)
        os.lseek(fd, seg.end, os.SEEK_SET)
        cipher = (
            enc.file_cipher(purpose=PURPOSE, file_id=seg.header.file_id, salt=seg.header.salt)
            if enc
            else None
        )
        return cls(io, seg.path, fd, seg.header, cipher, compression, seg.end, seg.count)

    def encode(self, first_seq: int, records: list[bytes]) -> bytes:
        """The blocks holding ``records`` (seq ``first_seq``...), ready for one write."""
        out: list[bytes] = []
        i = 0
        n = len(records)
        while i < n:
            j, total = i, 0
            while j < n and (j == i or total + len(records[j]) + 4 <= _BLOCK_PLAIN_MAX):
                total += len(records[j]) + 4
                j += 1
            out.append(
                encode_block(
                    kind=KIND_JOURNAL,
                    file_id=self.header.file_id,
                    first_seq=first_seq + i,
                    count=j - i,
                    btype=BT_RECORDS,
                    plain=join_records(records[i:j]),
                    compression=self.compression,
                    cipher=self.cipher,
                )
            )
            i = j
        return out[0] if len(out) == 1 else b"".join(out)

    def write(self, data: bytes, count: int) -> None:
        """Append encoded blocks. On failure the file is cut back (best effort) and the
        error propagates; the caller must then stop using the journal (fail-stop)."""
        end = self.size + len(data)
        if end > self.allocated:
            self._preallocate(end)
        try:
            write_all(self.io, self.fd, data)
        except BaseException:
            self.rollback(self.size)
            raise
        self.size = end
        self.count += count

    def _preallocate(self, end: int) -> None:
        """Grow the file to at least ``end``, a ``PREALLOCATE_BYTES`` step past its size."""
        new_size = max(end, self.allocated + PREALLOCATE_BYTES)
        if self.io.preallocate(self.fd, self.allocated, new_size - self.allocated):
            self.allocated = new_size

    def rollback(self, size: int) -> OSError | None:
        """Remove an unacknowledged tail, so a reopen does not replay a group whose callers
        were told it failed (bytes that reached the page cache before an fsync failed are
        still in the file). The cut is synced so it outlives a crash; never retried: the
        file is abandoned after this. Returns the error if the cut may not have held."""
        try:
            self.io.ftruncate(self.fd, size)
            os.lseek(self.fd, size, os.SEEK_SET)
        except OSError as e:
            return e
        self.size = min(self.size, size)
        self.allocated = size
        try:
            self.io.fsync(self.fd)
        except OSError as e:
            return e
        return None

    def sync(self) -> None:
        self.io.fsync(self.fd)

    def seal(self) -> None:
        """Cut the preallocated zeros off and make the segment final (fsync): before a
        later segment exists, since only the last segment may end in anything but blocks."""
        if self.allocated > self.size:
            self.io.ftruncate(self.fd, self.size)
            self.allocated = self.size
        self.io.fsync(self.fd)

    def close(self) -> None:
        """Close; a segment still holding preallocated zeros is sealed first (best effort:
        zeros left by a failure here are cut by the next open, as after a crash)."""
        try:
            if self.allocated > self.size:
                self.seal()
        finally:
            self.io.close(self.fd)
