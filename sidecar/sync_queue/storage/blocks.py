"""Blocks: sealing a payload into a checksummed, optionally compressed and encrypted
block, and scanning a file's blocks back while telling a torn tail from corruption.

A block is the unit of one write: a group commit's records, or a whole snapshot. Its CRC
covers the stored (compressed, encrypted) bytes and the length, so damage is found before
any decoding; AES-GCM then authenticates the content and its position (the AAD).
"""

from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass

from sync_queue.errors import DataDirUnusable, EncryptionError, PersistenceError
from sync_queue.storage.codec import Compression, EncryptionService, FileCipher
from sync_queue.storage.fileio import FileIO
from sync_queue.storage.format import (
    BF_AESGCM,
    BF_ZSTD,
    BLOCK_HEADER,
    BlockHeader,
    FileHeader,
    HeaderError,
    block_aad,
    block_crc,
    pack_block,
)

__all__ = [
    "ZERO_TAIL",
    "BlockScan",
    "ScannedBlock",
    "decode_payload",
    "encode_block",
    "is_short_write",
    "join_records",
    "open_header",
    "read_final_file",
    "scan_blocks",
    "split_records",
]

_HDR = BLOCK_HEADER.size
# Below this a block is stored raw without trying: one small record barely compresses
# (about 1.2x for a 200-byte JSON record) and a zstd call costs ~20 µs, a tenth of an
# fsync on a fast disk. Group commits and snapshots are far larger and still compressed.
MIN_COMPRESS_BYTES = 1024


def encode_block(
    *,
    kind: int,
    file_id: bytes,
    first_seq: int,
    count: int,
    btype: int,
    plain: bytes,
    compression: Compression,
    cipher: FileCipher | None,
) -> bytes:
    """Compress (if it helps), encrypt (if a cipher is given) and frame ``plain``."""
    flags = 0
    payload = plain
    if compression.enabled and len(plain) >= MIN_COMPRESS_BYTES:
        packed = compression.compress(plain)
        # Incompressible input (tiny records, already-compressed payloads) is stored raw:
        # smaller on disk and no decompression on replay.
        if len(packed) < len(plain):
            payload, flags = packed, BF_ZSTD
    if cipher is not None:
        flags |= BF_AESGCM
        aad = block_aad(kind, file_id, first_seq, count, btype, flags)
        payload = cipher.encrypt(payload, aad)
    return pack_block(first_seq, count, btype, flags, payload)


def decode_payload(
    *,
    kind: int,
    file_id: bytes,
    header: BlockHeader,
    payload: bytes,
    compression: Compression,
    cipher: FileCipher | None,
    max_size: int,
    where: str,
) -> bytes:
    """Inverse of :func:`encode_block` for a block whose CRC has already been checked."""
    data = payload
    if header.flags & BF_AESGCM:
        if cipher is None:  # pragma: no cover - callers check the file header first
            raise PersistenceError(f"{where}: encrypted block in an unencrypted file")
        aad = block_aad(kind, file_id, header.first_seq, header.count, header.type, header.flags)
        data = cipher.decrypt(data, aad, where=where)
    if header.flags & BF_ZSTD:
        data = compression.decompress(data, max_size=max_size, where=where)
    return data


@dataclass(frozen=True)
class ScannedBlock:
    offset: int
    header: BlockHeader
    payload: bytes


# Why a scan stopped at a tail of zeros: a journal segment's preallocated space (every
# crash's usual end since segments are preallocated), or an append whose size landed
# before its data. Either way nothing there was written whole: a torn tail, not damage.
ZERO_TAIL = "only zeros past the last block (preallocated space)"


@dataclass
class BlockScan:
    """The good blocks of a file, and where (and why) reading stopped if not at EOF."""

    blocks: list[ScannedBlock]
    end: int  # offset just after the last good block
    bad_offset: int | None = None
    bad_reason: str = ""
    # True when a well-formed block (CRC ok) exists after bad_offset: then the damage is
    # in the middle and must not be truncated away.
    valid_after: bool = False
    # True when the bytes from bad_offset on cannot be an interrupted append (see
    # :func:`is_short_write`): a complete block that fails its check. Never truncated
    # silently: the store moves those bytes to a quarantine file first.
    damaged: bool = False


def _good_at(data: bytes, off: int, btype: int, aes: bool) -> tuple[BlockHeader | None, str]:
    n = len(data)
    if n - off < _HDR:
        return None, f"incomplete block header ({n - off} of {_HDR} bytes)"
    h = BlockHeader.unpack_from(data, off)
    if not h.plausible(btype, aes):
        return None, "malformed block header"
    if h.length > n - off - _HDR:
        return None, f"block runs past the end of the file ({h.length} payload bytes)"
    start = off + _HDR
    view = memoryview(data)
    if block_crc(view[off + 4 : start], view[start : start + h.length]) != h.crc:
        return None, "block checksum mismatch"
    return h, ""


def _valid_block_after(data: bytes, off: int, btype: int, aes: bool, min_seq: int) -> bool:
    """Is there any well-formed block starting after ``off``?

    LevelDB's rule: a bad length cannot be trusted to find the next block, so look at every
    candidate offset. A header has ``type`` at byte 20 and two zero bytes at 22, so
    ``bytes.find`` on the type byte keeps this fast even over megabytes of garbage.
    """
    marker = bytes((btype,))
    pos = off + 1 + 20
    n = len(data)
    while True:
        pos = data.find(marker, pos, n - 3)
        if pos < 0:
            return False
        cand = pos - 20
        if data[pos + 2] == 0 and data[pos + 3] == 0:
            h, _ = _good_at(data, cand, btype, aes)
            if h is not None and h.first_seq >= min_seq:
                return True
        pos += 1


def is_short_write(data: bytes, off: int, btype: int, aes: bool) -> bool:
    """Could the bad bytes from ``off`` to the end be an append cut short by a crash?

    A crash (``kill -9``, power loss) can only stop an append early: the file then ends
    inside the block (an incomplete header, or a payload that runs past the end), or its
    size grew before its data landed and the rest reads as zeros (filesystems that do not
    write data before metadata). A block that was written whole, and so may have been
    fsync'd and acknowledged, does not change afterwards by any crash: if it fails its
    check, the disk (or someone) damaged it. A flipped bit in the length field makes a
    whole last block look too short, so a length that runs past the end only counts as a
    short write if the bytes that are there do not check out with their true length.
    """
    n = len(data)
    if n - off < _HDR:
        return True
    if not any(data[off:]):  # size landed before the data (or preallocated space)
        return True
    h = BlockHeader.unpack_from(data, off)
    if not h.plausible(btype, aes) or h.length <= n - off - _HDR:
        return False  # a whole block (or a header no append of ours wrote) is damaged
    start = off + _HDR
    view = memoryview(data)
    true_length = struct.pack("<I", n - start)
    tail = bytes(view[off + 4 : start])
    # Complete with its own bytes, only the length field wrong: damage, not a short write.
    return block_crc(true_length + tail[4:], view[start:]) != h.crc


def scan_blocks(data: bytes, start: int, *, btype: int, aes: bool, first_seq: int) -> BlockScan:
    """Walk the blocks of ``data`` from ``start``; sequence numbers must continue from
    ``first_seq`` without gaps. Stops at the first block that is not good."""
    blocks: list[ScannedBlock] = []
    off = start
    expected = first_seq
    n = len(data)
    while off < n:
        h, reason = _good_at(data, off, btype, aes)
        if h is None:
            after = _valid_block_after(data, off, btype, aes, expected)
            if not after and not any(data[off:]):
                return BlockScan(blocks, off, off, ZERO_TAIL)  # a short write, named
            damaged = not after and not is_short_write(data, off, btype, aes)
            return BlockScan(blocks, off, off, reason, after, damaged)
        if h.first_seq != expected:
            # The block itself is intact, so this is not a torn write: records are missing.
            return BlockScan(
                blocks,
                off,
                off,
                f"sequence gap: expected {expected}, block starts at {h.first_seq}",
                True,
            )
        body = off + _HDR
        blocks.append(ScannedBlock(off, h, data[body : body + h.length]))
        expected += h.count
        off = body + h.length
    return BlockScan(blocks, off)


_U32 = struct.Struct("<I")


def join_records(records: list[bytes]) -> bytes:
    """``u32 length || bytes`` for each record, as one buffer."""
    pack = _U32.pack
    return b"".join([x for r in records for x in (pack(len(r)), r)])


def split_records(plain: bytes, count: int, where: str) -> list[bytes]:
    out: list[bytes] = []
    off = 0
    n = len(plain)
    unpack = _U32.unpack_from
    for _ in range(count):
        if off + 4 > n:
            break
        (ln,) = unpack(plain, off)
        off += 4
        if off + ln > n:
            break
        out.append(plain[off : off + ln])
        off += ln
    if len(out) != count or off != n:
        # CRC and (if encrypted) the GCM tag were good, so this is not disk damage.
        raise PersistenceError(f"{where}: block content does not match its record count")
    return out


def open_header(
    data: bytes,
    *,
    path: str,
    kind: int,
    seq: int,
    enc: EncryptionService | None,
    purpose: bytes,
) -> tuple[FileHeader, FileCipher | None]:
    """Check a file's header against its name and the key; return the file's cipher.

    Raises :class:`HeaderError` for a damaged header (the caller decides whether that is
    a torn write or corruption) and :class:`EncryptionError` for a key mismatch, which is
    checked before any block is decrypted so a wrong key never looks like corruption.
    """
    header = FileHeader.unpack(data)
    if header.kind != kind or header.seq != seq:
        raise HeaderError(
            f"file header (kind {header.kind}, seq {header.seq}) does not match its name"
        )
    if header.encrypted and enc is None:
        raise EncryptionError(f"{path} is encrypted: open the store with its key")
    if not header.encrypted and enc is not None:
        raise EncryptionError(
            f"{path} is not encrypted, but a key was given: open the store without a key"
        )
    if enc is None:
        return header, None
    if not hmac.compare_digest(header.key_check, enc.key_check):
        raise EncryptionError(f"{path}: wrong encryption key (the key check value does not match)")
    return header, enc.file_cipher(purpose=purpose, file_id=header.file_id, salt=header.salt)


def read_final_file(
    io: FileIO,
    path: str,
    *,
    what: str,
    kind: int,
    seq: int,
    enc: EncryptionService | None,
    purpose: bytes,
) -> tuple[bytes, FileHeader, FileCipher | None]:
    """Read a file that can no longer be torn (a snapshot, a closed journal segment) and
    check its header: unreadable is :class:`DataDirUnusable`, a damaged header corruption
    (:class:`PersistenceError`). ``what`` names the file in errors ("snapshot")."""
    try:
        data = io.read_file(path)
    except OSError as e:
        raise DataDirUnusable(f"cannot read {what} {path}: {e.strerror or e}") from e
    try:
        header, cipher = open_header(data, path=path, kind=kind, seq=seq, enc=enc, purpose=purpose)
    except HeaderError as e:
        raise PersistenceError(
            f"{what} {path} is corrupt at offset 0: {e}", file=path, offset=0
        ) from e
    return data, header, cipher
