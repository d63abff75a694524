"""Snapshots: the whole state as one blob in one file, swapped in atomically.

``snapshot-<last seq, 20 digits>.snap`` is a file header (whose ``seq`` is the last journal
sequence number the snapshot includes) followed by exactly one block of type snapshot: the
blob as one zstd frame (when compression is on), then AES-256-GCM (when a key is set).

Writing follows the atomic-replace protocol: temp file in the same directory (same
filesystem, so the rename is atomic), write, fsync, ``os.replace``, fsync the directory.
Only after that may anything the snapshot supersedes be deleted.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from sync_queue.errors import PersistenceError
from sync_queue.storage.blocks import (
    decode_payload,
    encode_block,
    read_final_file,
    scan_blocks,
)
from sync_queue.storage.codec import Compression, EncryptionService
from sync_queue.storage.fileio import FileIO, write_all
from sync_queue.storage.format import (
    BT_SNAPSHOT,
    FILE_HEADER_SIZE,
    KIND_SNAPSHOT,
    MAX_PAYLOAD,
    FileHeader,
    snapshot_name,
)

__all__ = ["PURPOSE", "SnapshotRead", "is_temp_name", "read_snapshot", "write_snapshot_file"]

PURPOSE = b"snapshot"
_TMP_SUFFIX = ".tmp"
# A snapshot blob decompresses to at most this (a bound against a damaged size field).
_MAX_BLOB = 1 << 36


def is_temp_name(name: str) -> bool:
    """A leftover temp file of an interrupted snapshot write."""
    return name.startswith("snapshot-") and name.endswith(_TMP_SUFFIX)


@dataclass(frozen=True)
class SnapshotRead:
    name: str
    path: str
    size: int
    header: FileHeader
    blob: bytes

    @property
    def last_seq(self) -> int:
        return self.header.seq


def write_snapshot_file(
    io: FileIO,
    dirpath: str,
    last_seq: int,
    blob: bytes,
    *,
    enc: EncryptionService | None,
    compression: Compression,
    created_ms: int,
) -> tuple[str, int]:
    """Durably install a snapshot; returns ``(file name, size)``.

    Raises ``OSError`` (the caller converts it) with the old snapshot still in place.
    """
    file_id = os.urandom(16)
    salt = enc.new_salt() if enc else bytes(32)
    header = FileHeader(
        KIND_SNAPSHOT,
        enc is not None,
        file_id,
        salt,
        enc.key_check if enc else bytes(16),
        last_seq,
        created_ms,
    )
    cipher = enc.file_cipher(purpose=PURPOSE, file_id=file_id, salt=salt) if enc else None
    block = encode_block(
        kind=KIND_SNAPSHOT,
        file_id=file_id,
        first_seq=last_seq,
        count=1,
        btype=BT_SNAPSHOT,
        plain=blob,
        compression=compression,
        cipher=cipher,
    )
    if len(block) > MAX_PAYLOAD:
        raise PersistenceError(
            f"snapshot is too large ({len(block)} bytes stored; the limit is {MAX_PAYLOAD})"
        )
    name = snapshot_name(last_seq)
    final = os.path.join(dirpath, name)
    tmp = f"{final}.{os.getpid()}-{os.urandom(4).hex()}{_TMP_SUFFIX}"
    data = header.pack() + block
    fd = io.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            write_all(io, fd, data)
            io.fsync(fd)  # contents durable before the name points at them
        finally:
            io.close(fd)
        io.replace(tmp, final)  # atomic switch
    except BaseException:
        with contextlib.suppress(OSError):
            io.unlink(tmp)
        raise
    io.fsync_dir(dirpath)  # the rename itself durable
    return name, len(data)


def read_snapshot(
    io: FileIO,
    dirpath: str,
    name: str,
    last_seq: int,
    *,
    enc: EncryptionService | None,
    compression: Compression,
) -> SnapshotRead:
    """Read and decode a snapshot; any defect is an error (snapshots are never torn: they
    only appear under their name once complete and fsync'd)."""
    path = os.path.join(dirpath, name)
    data, header, cipher = read_final_file(
        io, path, what="snapshot", kind=KIND_SNAPSHOT, seq=last_seq, enc=enc, purpose=PURPOSE
    )
    scan = scan_blocks(
        data, FILE_HEADER_SIZE, btype=BT_SNAPSHOT, aes=cipher is not None, first_seq=last_seq
    )
    if scan.bad_offset is not None or len(scan.blocks) != 1:
        offset = scan.bad_offset if scan.bad_offset is not None else scan.end
        reason = scan.bad_reason or f"{len(scan.blocks)} blocks instead of 1"
        raise PersistenceError(
            f"snapshot {path} is corrupt at offset {offset}: {reason}", file=path, offset=offset
        )
    b = scan.blocks[0]
    if b.header.count != 1:
        raise PersistenceError(
            f"snapshot {path} is corrupt at offset {b.offset}: bad block count",
            file=path,
            offset=b.offset,
        )
    blob = decode_payload(
        kind=KIND_SNAPSHOT,
        file_id=header.file_id,
        header=b.header,
        payload=b.payload,
        compression=compression,
        cipher=cipher,
        max_size=_MAX_BLOB,
        where=f"snapshot {path} at offset {b.offset}",
    )
    return SnapshotRead(name, path, len(data), header, blob)
