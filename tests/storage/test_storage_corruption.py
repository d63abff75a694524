"""Every truncation point and every single-bit flip of a small journal and snapshot:
open either succeeds with a correct prefix (torn tail) or refuses with a clear error."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from storage_helpers import LONG, FaultyIO, fold_json, hash_dir, state_of

from sync_queue.errors import CompressionError, EncryptionError, PersistenceError
from sync_queue.storage import EncryptionService, Store

KEY = EncryptionService.generate_key()
CLEAR_ERRORS = (PersistenceError, EncryptionError, CompressionError)


def build(d: str, key: bytes | None, level: int) -> tuple[list[bytes], list[str]]:
    """A store with a snapshot (records a,b), then two segments: two blocks, one block."""
    s = Store.open(d, key=key, compression_level=level, fold=fold_json, segment_max_bytes=4096)
    s.commit(s.append([b"a", b"b"]))
    s.compact()
    recs = [b"a", b"b"]
    for i in range(3):
        group = [f"r{i}-{j}".encode() * (1 + j) for j in range(3)]
        if i == 1:  # incompressible and big enough to make the segment rotate after it
            group.append(os.urandom(4000).hex().encode())
        s.commit(s.append(group))
        recs += group
    s.close()
    assert len([n for n in os.listdir(d) if n.startswith("journal-")]) == 2
    return recs, sorted(os.listdir(d))


def check_open(d: str, key: bytes | None, full: list[bytes], min_len: int) -> str:
    """Open; must give a prefix of ``full`` at least ``min_len`` long, or a clear error."""
    before = hash_dir(d)
    try:
        s = Store.open(d, key=key)
    except CLEAR_ERRORS as e:
        assert str(e) and hash_dir(d) == before  # refused, nothing changed
        return "refused"
    try:
        got = state_of(s.take_recovery())
    finally:
        s.close()
    assert got == full[: len(got)], "recovered data that is not a prefix"
    assert len(got) >= min_len
    return "prefix" if len(got) < len(full) else "full"


def positions(size: int) -> range | list[int]:
    if LONG or size <= 400:
        return range(size)
    # Fast size: every byte of headers and block framing, a sample of payload bytes.
    step = max(1, size // 60)
    return sorted(set(range(0, 120)) | set(range(120, size, step)) | {size - 1})


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "aes"])
def test_truncate_last_segment_everywhere(tmp_path, key):
    src = str(tmp_path / "src")
    full, names = build(src, key, 3)
    last = [n for n in names if n.startswith("journal-")][-1]
    size = os.path.getsize(os.path.join(src, last))
    outcomes = set()
    for cut in positions(size):
        d = str(tmp_path / f"c{cut}")
        shutil.copytree(src, d)
        with open(os.path.join(d, last), "r+b") as f:
            f.truncate(cut)
        # The snapshot's records always survive.
        outcomes.add(check_open(d, key, full, 2))
        shutil.rmtree(d)
    assert "prefix" in outcomes and "refused" not in outcomes


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "aes"])
@pytest.mark.parametrize("target", ["journal-first", "journal-last", "snapshot"])
def test_bit_flips(tmp_path, key, target):
    src = str(tmp_path / "src")
    full, names = build(src, key, 3)
    journals = [n for n in names if n.startswith("journal-")]
    name = {
        "journal-first": journals[0],
        "journal-last": journals[-1],
        "snapshot": next(n for n in names if n.startswith("snapshot-")),
    }[target]
    data = Path(src, name).read_bytes()
    outcomes = set()
    for pos in positions(len(data)):
        # Fast size: one bit per byte, rotating through the bit positions.
        for bit in range(8) if LONG else (pos % 8,):
            d = str(tmp_path / "f")
            shutil.copytree(src, d)
            flipped = bytearray(data)
            flipped[pos] ^= 1 << bit
            with open(os.path.join(d, name), "wb") as f:
                f.write(flipped)
            outcomes.add(check_open(d, key, full, 2))
            quarantined = _quarantine_files(d)
            if quarantined:
                # Never destroyed: the quarantine file holds the dropped tail exactly.
                [q] = quarantined
                off = int(q.rsplit("-at-", 1)[1].removesuffix(".bin"))
                assert Path(d, q).read_bytes() == bytes(flipped[off:])
                assert os.path.getsize(os.path.join(d, name)) == off
            elif target == "journal-last":
                assert Path(d, name).read_bytes() == flipped  # refused: untouched
            shutil.rmtree(d)
    if target == "journal-last":
        # A flip in the last block loses it, but its bytes are kept in quarantine.
        assert "prefix" in outcomes
    else:
        assert outcomes == {"refused"}  # mid-log or snapshot damage is never truncated


def test_truncating_a_middle_segment_is_refused(tmp_path):
    src = str(tmp_path / "src")
    build(src, None, 0)
    s = Store.open(src, segment_max_bytes=4096)
    s.commit(s.append([os.urandom(3000) for _ in range(3)]))  # forces rotations
    s.close()
    journals = sorted(n for n in os.listdir(src) if n.startswith("journal-"))
    assert len(journals) >= 3
    mid = os.path.join(src, journals[1])
    with open(mid, "r+b") as f:
        f.truncate(os.path.getsize(mid) - 1)
    before = hash_dir(src)
    with pytest.raises(PersistenceError, match=r"corrupt at offset|missing"):
        Store.open(src)
    assert hash_dir(src) == before


def test_missing_segment_is_refused(tmp_path):
    d = str(tmp_path / "q")
    s = Store.open(d, segment_max_bytes=4096)
    for _ in range(6):
        s.commit(s.append([os.urandom(2000)]))
    s.close()
    journals = sorted(n for n in os.listdir(d) if n.startswith("journal-"))
    os.unlink(os.path.join(d, journals[1]))
    before = hash_dir(d)
    with pytest.raises(PersistenceError, match="missing"):
        Store.open(d)
    assert hash_dir(d) == before


def test_torn_tail_is_logged_and_truncated(tmp_path, caplog):
    d = str(tmp_path / "q")
    s = Store.open(d)
    s.commit(s.append([b"one"]))
    s.commit(s.append([b"two"]))
    s.close()
    seg = os.path.join(d, "journal-00000000000000000001.log")
    size = os.path.getsize(seg)
    with open(seg, "ab") as f:
        # An append cut short inside its block header. (Zeros, an append whose size landed
        # before its data, read as unused preallocated space: test_storage_preallocation.)
        f.write(b"\xab" * 10)
    s = Store.open(d)
    rec = s.take_recovery()
    assert list(rec.records()) == [b"one", b"two"]
    assert rec.torn_tail is not None and rec.torn_tail.offset == size
    assert rec.torn_tail.file == seg
    s.commit(s.append([b"three"]))
    s.close()
    assert "torn tail" in caplog.text and str(size) in caplog.text
    s = Store.open(d)
    assert list(s.take_recovery().records()) == [b"one", b"two", b"three"]
    s.close()


def test_torn_segment_header_is_removed(tmp_path):
    d = str(tmp_path / "q")
    s = Store.open(d, segment_max_bytes=4096)
    s.commit(s.append([os.urandom(5000)]))  # rotates: a new empty segment follows
    s.close()
    journals = sorted(n for n in os.listdir(d) if n.startswith("journal-"))
    with open(os.path.join(d, journals[-1]), "r+b") as f:
        f.truncate(40)  # crash while the new segment's header was written
    s = Store.open(d, segment_max_bytes=4096)
    assert len(list(s.take_recovery().records())) == 1
    s.commit(s.append([b"next"]))
    s.close()
    s = Store.open(d)
    assert len(list(s.take_recovery().records())) == 2
    s.close()


def _two_blocks(d: str, key: bytes | None) -> tuple[str, int, bytes]:
    """A segment with two blocks; returns its path, the offset of the last block, the file."""
    s = Store.open(d, key=key)
    s.commit(s.append([b"one"]))
    seg = os.path.join(d, "journal-00000000000000000001.log")
    last = s.stats().journal_bytes  # the logical end: the file is preallocated past it
    s.commit(s.append([b"two", b"three"]))
    s.close()
    return seg, last, Path(seg).read_bytes()


def _quarantine_files(d: str) -> list[str]:
    return sorted(n for n in os.listdir(d) if n.startswith("quarantine-"))


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "aes"])
@pytest.mark.parametrize("where", ["crc", "length", "count", "type", "payload", "last byte"])
def test_damaged_last_block_is_quarantined_not_truncated(tmp_path, caplog, key, where):
    """A whole last block that fails its check was damaged after it was written (and may
    have been acknowledged): its bytes go to a quarantine file before the truncation."""
    d = str(tmp_path / "q")
    seg, off, data = _two_blocks(d, key)
    pos = {
        "crc": off,
        "length": off + 4,  # the length grows past the end: still not a short write
        "count": off + 16,
        "type": off + 20,
        "payload": off + 30,
        "last byte": len(data) - 1,
    }[where]
    flipped = bytearray(data)
    flipped[pos] ^= 0x01
    Path(seg).write_bytes(flipped)
    s = Store.open(d, key=key, clock=lambda: 1_764_557_000_123)
    rec = s.take_recovery()
    assert list(rec.records()) == [b"one"]
    assert rec.torn_tail is not None and rec.torn_tail.damaged
    [q] = s.quarantined
    s.close()
    [name] = _quarantine_files(d)
    assert name == f"quarantine-20251201T024320123Z-journal-00000000000000000001-at-{off}.bin"
    assert q.quarantine == os.path.join(d, name) and (q.file, q.offset) == (seg, off)
    assert Path(d, name).read_bytes() == bytes(flipped[off:]) and q.bytes == len(data) - off
    assert os.path.getsize(seg) == off
    assert "NOT in the queue" in caplog.text and name in caplog.text


def test_failed_gcm_tag_in_last_block_is_quarantined(tmp_path):
    """CRC fixed up after the change: only the tag notices, and the bytes are kept too."""
    import zlib

    d = str(tmp_path / "q")
    seg, off, data = _two_blocks(d, KEY)
    flipped = bytearray(data)
    flipped[off + 24 + 14] ^= 0x01
    crc = zlib.crc32(bytes(flipped[off + 24 :]), zlib.crc32(bytes(flipped[off + 4 : off + 24])))
    flipped[off : off + 4] = crc.to_bytes(4, "little")
    Path(seg).write_bytes(flipped)
    s = Store.open(d, key=KEY)
    assert list(s.take_recovery().records()) == [b"one"]
    [q] = s.quarantined
    s.close()
    assert "authentication" in q.reason and q.offset == off
    assert Path(q.quarantine).read_bytes() == bytes(flipped[off:])


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "aes"])
def test_short_writes_are_truncated_without_quarantine(tmp_path, key):
    """Every cut inside the last block, and a zero-filled tail, is an interrupted append."""
    src = str(tmp_path / "src")
    seg, off, data = _two_blocks(src, key)
    name = os.path.basename(seg)
    tails = [data[:cut] for cut in range(off + 1, len(data))]
    tails.append(data + bytes(64))  # the size landed before the data
    for i, tail in enumerate(tails):
        d = str(tmp_path / f"c{i}")
        shutil.copytree(src, d)
        Path(d, name).write_bytes(tail)
        s = Store.open(d, key=key)
        rec = s.take_recovery()
        assert rec.torn_tail is not None and not rec.torn_tail.damaged
        assert not s.quarantined
        s.close()
        assert not _quarantine_files(d)
        shutil.rmtree(d)


def test_failed_quarantine_write_cuts_nothing(tmp_path):
    """If the quarantine file cannot be written, the segment is not truncated either (and
    no partial quarantine file stays): the next open tries again."""
    d = str(tmp_path / "q")
    seg, off, data = _two_blocks(d, None)
    flipped = bytearray(data)
    flipped[-1] ^= 0x01
    Path(seg).write_bytes(flipped)
    before = hash_dir(d)
    io = FaultyIO()
    io.fail_write_at = 1  # the quarantine file's write is the first write of the open
    with pytest.raises(PersistenceError, match="cannot repair"):
        Store.open(d, io=io)
    assert hash_dir(d) == before
    s = Store.open(d)
    assert [q.offset for q in s.quarantined] == [off]
    s.close()
