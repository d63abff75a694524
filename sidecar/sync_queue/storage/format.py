"""The on-disk layout: file names, the file header and the block header.

Everything is little-endian. See the ``storage`` package docstring for the full spec.

File header (92 bytes, at offset 0 of every journal segment and snapshot)::

    magic      4s   b"SYNQ"
    version    u8   1
    kind       u8   1 = journal segment, 2 = snapshot
    flags      u8   bit 0: encrypted
    reserved   u8   0
    file_id    16s  random, bound into every block's AAD (no splicing between files)
    salt       32s  HKDF salt of this file's key (zeros when not encrypted)
    key_check  16s  key-check value of the master key (zeros when not encrypted)
    seq        u64  journal: first sequence number it holds; snapshot: last seq it includes
    created_ms u64  wall-clock creation time, ms since the epoch
    crc        u32  CRC-32 of the 88 bytes above

Block header (24 bytes) followed by ``length`` payload bytes::

    crc        u32  CRC-32 of the other 20 header bytes, then of the payload (covers length)
    length     u32  payload bytes
    first_seq  u64  seq of the first record in the block
    count      u32  records in the block (>= 1)
    type       u8   1 = journal records, 2 = snapshot blob
    flags      u8   bit 0: zstd frame, bit 1: AES-256-GCM (payload = nonce || ct || tag)
    reserved   u16  0

Decoded payload of a records block: ``count`` times ``u32 length || record bytes``.
Decoded payload of a snapshot block: the snapshot blob itself (count = 1).
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

__all__ = [
    "BF_AESGCM",
    "BF_ZSTD",
    "BLOCK_HEADER",
    "BT_RECORDS",
    "BT_SNAPSHOT",
    "FILE_HEADER_SIZE",
    "KIND_JOURNAL",
    "KIND_SNAPSHOT",
    "MAGIC",
    "MAX_PAYLOAD",
    "VERSION",
    "BlockHeader",
    "FileHeader",
    "HeaderError",
    "block_aad",
    "block_crc",
    "pack_block",
    "parse_name",
    "segment_name",
    "snapshot_name",
]

MAGIC = b"SYNQ"
VERSION = 1
KIND_JOURNAL = 1
KIND_SNAPSHOT = 2
FF_ENCRYPTED = 1

BT_RECORDS = 1
BT_SNAPSHOT = 2
BF_ZSTD = 1
BF_AESGCM = 2
_BF_ALL = BF_ZSTD | BF_AESGCM

# AES-GCM takes at most 2^31-1 bytes per call; a block never holds more.
MAX_PAYLOAD = 2**31 - 1

_FILE_HEADER = struct.Struct("<4sBBBB16s32s16sQQ")
_CRC = struct.Struct("<I")
FILE_HEADER_SIZE = _FILE_HEADER.size + _CRC.size
BLOCK_HEADER = struct.Struct("<IIQIBBH")

_SEGMENT_RE = re.compile(r"^journal-(\d{20})\.log$")
_SNAPSHOT_RE = re.compile(r"^snapshot-(\d{20})\.snap$")


class HeaderError(Exception):
    """A file header that cannot be trusted (internal; callers add file and offset)."""


def segment_name(first_seq: int) -> str:
    # Zero-padded so that name order is sequence order.
    return f"journal-{first_seq:020d}.log"


def snapshot_name(last_seq: int) -> str:
    return f"snapshot-{last_seq:020d}.snap"


def parse_name(name: str) -> tuple[int, int] | None:
    """``(kind, seq)`` for a journal segment or snapshot file name, else None."""
    m = _SEGMENT_RE.match(name)
    if m:
        return KIND_JOURNAL, int(m.group(1))
    m = _SNAPSHOT_RE.match(name)
    if m:
        return KIND_SNAPSHOT, int(m.group(1))
    return None


@dataclass(frozen=True)
class FileHeader:
    kind: int
    encrypted: bool
    file_id: bytes
    salt: bytes
    key_check: bytes
    seq: int
    created_ms: int

    def pack(self) -> bytes:
        body = _FILE_HEADER.pack(
            MAGIC,
            VERSION,
            self.kind,
            FF_ENCRYPTED if self.encrypted else 0,
            0,
            self.file_id,
            self.salt,
            self.key_check,
            self.seq,
            self.created_ms,
        )
        return body + _CRC.pack(zlib.crc32(body))

    @classmethod
    def unpack(cls, data: bytes) -> FileHeader:
        if len(data) < FILE_HEADER_SIZE:
            raise HeaderError(f"file header incomplete ({len(data)} of {FILE_HEADER_SIZE} bytes)")
        body = data[: _FILE_HEADER.size]
        (crc,) = _CRC.unpack_from(data, _FILE_HEADER.size)
        if zlib.crc32(body) != crc:
            raise HeaderError("file header checksum mismatch")
        magic, version, kind, flags, _res, file_id, salt, kcv, seq, created = _FILE_HEADER.unpack(
            body
        )
        if magic != MAGIC:
            raise HeaderError("not a sync-queue file (bad magic)")
        if version != VERSION:
            raise HeaderError(f"unsupported format version {version}")
        if kind not in (KIND_JOURNAL, KIND_SNAPSHOT) or flags & ~FF_ENCRYPTED:
            raise HeaderError("file header has unknown kind or flags")
        return cls(kind, bool(flags & FF_ENCRYPTED), file_id, salt, kcv, seq, created)


@dataclass(frozen=True)
class BlockHeader:
    crc: int
    length: int
    first_seq: int
    count: int
    type: int
    flags: int
    reserved: int

    @classmethod
    def unpack_from(cls, data: bytes | memoryview, offset: int) -> BlockHeader:
        return cls(*BLOCK_HEADER.unpack_from(data, offset))

    def plausible(self, block_type: int, aes: bool) -> bool:
        """Could this be a block we wrote (before checking its CRC)?"""
        return (
            self.reserved == 0
            and self.type == block_type
            and not self.flags & ~_BF_ALL
            and bool(self.flags & BF_AESGCM) == aes
            and self.count >= 1
        )


def block_crc(header_tail: bytes | memoryview, payload: bytes | memoryview) -> int:
    """CRC-32 over the header after its crc field (length included), then the payload."""
    return zlib.crc32(payload, zlib.crc32(header_tail))


def pack_block(first_seq: int, count: int, block_type: int, flags: int, payload: bytes) -> bytes:
    tail = BLOCK_HEADER.pack(0, len(payload), first_seq, count, block_type, flags, 0)[4:]
    return _CRC.pack(block_crc(tail, payload)) + tail + payload


_AAD_TAIL = struct.Struct("<QIBB")


def block_aad(
    kind: int, file_id: bytes, first_seq: int, count: int, btype: int, flags: int
) -> bytes:
    """Associated data: format, file, position and type of a block (stops splicing)."""
    return MAGIC + bytes((VERSION, kind)) + file_id + _AAD_TAIL.pack(first_seq, count, btype, flags)
