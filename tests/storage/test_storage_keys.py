"""Wrong key, missing key, key on unencrypted data, unreadable files: a clear error and
the directory byte-for-byte unchanged."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from storage_helpers import FaultyIO, fold_json, hash_dir

from sync_queue.errors import EncryptionError, PersistenceError
from sync_queue.storage import EncryptionService, Store
from sync_queue.storage.codec import zstd_level

KEY = EncryptionService.generate_key()


def make(d: str, key: bytes | None, snapshot: bool = True) -> None:
    s = Store.open(d, key=key, compression_level=5, fold=fold_json)
    s.commit(s.append([b"a", b"b"]))
    if snapshot:
        s.compact()
    s.commit(s.append([b"c"]))
    s.close()


@pytest.mark.parametrize("snapshot", [True, False])
@pytest.mark.parametrize(
    ("written", "opened", "match"),
    [
        (KEY, EncryptionService.generate_key(), "wrong encryption key"),
        (KEY, None, "is encrypted"),
        (None, KEY, "not encrypted"),
    ],
    ids=["wrong-key", "missing-key", "key-on-plain"],
)
def test_key_mismatch_refuses_and_changes_nothing(tmp_path, written, opened, match, snapshot):
    d = str(tmp_path / "q")
    make(d, written, snapshot)
    before = hash_dir(d)
    with pytest.raises(EncryptionError, match=match) as exc:
        Store.open(d, key=opened)
    assert KEY.hex() not in str(exc.value)
    assert hash_dir(d) == before
    s = Store.open(d, key=written)  # the right key still opens it, and the lock was freed
    s.close()


def test_directory_where_a_file_is_expected(tmp_path):
    d = str(tmp_path / "q")
    make(d, None)
    os.mkdir(os.path.join(d, "journal-00000000000000000099.log"))
    before = hash_dir(d)
    with pytest.raises(PersistenceError, match="journal-00000000000000000099"):
        Store.open(d)
    assert hash_dir(d) == before


@pytest.mark.parametrize("which", ["snapshot-", "journal-"])
def test_injected_read_error(tmp_path, which):
    d = str(tmp_path / "q")
    make(d, KEY)
    io = FaultyIO()
    io.fail_read = which
    before = hash_dir(d)
    with pytest.raises(PersistenceError, match=f"cannot read .*{which}"):
        Store.open(d, key=KEY, io=io)
    assert hash_dir(d) == before


def test_tampered_block_with_fixed_crc_is_encryption_error(tmp_path):
    import zlib

    d = str(tmp_path / "q")
    s = Store.open(d, key=KEY)
    s.commit(s.append([b"secret-1"]))
    s.commit(s.append([b"secret-2"]))
    s.close()
    seg = os.path.join(d, "journal-00000000000000000001.log")
    data = bytearray(Path(seg).read_bytes())
    # Flip a ciphertext byte of the first block and recompute its CRC: only GCM notices.
    off = 92
    length = int.from_bytes(data[off + 4 : off + 8], "little")
    data[off + 24 + 14] ^= 0x01
    crc = zlib.crc32(
        bytes(data[off + 24 : off + 24 + length]), zlib.crc32(bytes(data[off + 4 : off + 24]))
    )
    data[off : off + 4] = crc.to_bytes(4, "little")
    Path(seg).write_bytes(data)
    before = hash_dir(d)
    with pytest.raises(EncryptionError, match="failed authentication"):
        Store.open(d, key=KEY)
    assert hash_dir(d) == before


def test_encryption_service():
    k = EncryptionService.generate_key()
    assert len(k) == 32 and k != EncryptionService.generate_key()
    svc = EncryptionService(k)
    assert "key hidden" in repr(svc) and k.hex() not in repr(svc)
    assert EncryptionService(k).key_check == svc.key_check != EncryptionService(KEY).key_check
    c1 = svc.file_cipher(purpose=b"journal", file_id=b"1" * 16, salt=b"s" * 32)
    c2 = svc.file_cipher(purpose=b"journal", file_id=b"2" * 16, salt=b"s" * 32)
    sealed = c1.encrypt(b"hello", b"aad")
    assert c1.decrypt(sealed, b"aad", where="t") == b"hello"
    with pytest.raises(EncryptionError):
        c2.decrypt(sealed, b"aad", where="t")  # another file's key
    with pytest.raises(EncryptionError):
        c1.decrypt(sealed, b"other", where="t")  # another position
    assert zstd_level(0) == 0
    assert all(zstd_level(i) > 0 for i in range(1, 10))
