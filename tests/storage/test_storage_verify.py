"""verify(): walks every file, reports what it finds, changes nothing."""

from __future__ import annotations

import os
from pathlib import Path

from storage_helpers import fold_json, hash_dir

from sync_queue.storage import EncryptionService, Store, verify

KEY = EncryptionService.generate_key()


def make(d: str) -> None:
    s = Store.open(d, key=KEY, fold=fold_json, segment_max_bytes=4096, compression_level=6)
    s.commit(s.append([b"a", b"b"]))
    s.compact()
    for i in range(5):
        s.commit(s.append([os.urandom(1500).hex().encode(), b"%d" % i]))
    s.close()


def test_verify_clean(tmp_path):
    d = str(tmp_path / "q")
    make(d)
    before = hash_dir(d)
    r = verify(d, key=KEY)
    assert r.ok and not r.problems
    assert r.snapshot_seq == 2 and r.last_seq == 12 and r.records_after_snapshot == 10
    kinds = sorted(f.kind for f in r.files)
    assert kinds.count("snapshot") == 1 and kinds.count("journal") >= 2
    j = [f for f in r.files if f.kind == "journal"]
    assert sum(f.records for f in j) == 10 and all(f.encrypted for f in j)
    assert j[0].first_seq == 3
    assert hash_dir(d) == before


def test_verify_reports_problems_without_changing_anything(tmp_path):
    d = str(tmp_path / "q")
    make(d)
    journals = sorted(n for n in os.listdir(d) if n.startswith("journal-"))
    with open(os.path.join(d, journals[-1]), "ab") as f:
        f.write(b"\x01torn")
    Path(d, "snapshot-00000000000000000009.snap.1-ab.tmp").write_bytes(b"x")
    before = hash_dir(d)
    r = verify(d, key=KEY)
    assert r.ok  # torn tail and temp file are warnings: open would cope
    assert {p.severity for p in r.problems} == {"warning"}
    assert any(p.offset is not None and "torn tail" in p.message for p in r.problems)
    # Mid-log damage: an error with file and offset.
    first = os.path.join(d, journals[0])
    data = bytearray(Path(first).read_bytes())
    data[130] ^= 0xFF
    Path(first).write_bytes(data)
    before = hash_dir(d)
    r = verify(d, key=KEY)
    assert not r.ok
    err = next(p for p in r.problems if p.severity == "error")
    assert err.file == first and isinstance(err.offset, int)
    assert hash_dir(d) == before
    # Wrong key: reported as an error, per file.
    r = verify(d, key=EncryptionService.generate_key())
    assert not r.ok and any("wrong encryption key" in p.message for p in r.problems)
    assert hash_dir(d) == before


def test_verify_missing_dir(tmp_path):
    r = verify(str(tmp_path / "nope"))
    assert not r.ok


def test_verify_fails_on_a_damaged_last_block_and_on_quarantine_files(tmp_path):
    """A damaged last block is an error (the next open quarantines it), and so is the
    quarantine file afterwards, until someone deals with it (deletes it)."""
    d = str(tmp_path / "q")
    make(d)
    last = os.path.join(d, sorted(n for n in os.listdir(d) if n.startswith("journal-"))[-1])
    data = bytearray(Path(last).read_bytes())
    data[-1] ^= 0x01
    Path(last).write_bytes(data)
    before = hash_dir(d)
    r = verify(d, key=KEY)
    assert not r.ok and hash_dir(d) == before
    err = next(p for p in r.problems if p.severity == "error")
    assert err.file == last and isinstance(err.offset, int) and "damaged" in err.message
    assert r.last_seq is not None  # the rest of the directory was still checked
    assert next(f for f in r.files if f.name == os.path.basename(last)).status == "damaged-tail"

    Store.open(d, key=KEY).close()  # quarantines and truncates
    r = verify(d, key=KEY)
    assert not r.ok
    [q] = [f for f in r.files if f.kind == "quarantine"]
    assert q.status == "quarantined" and q.size > 0
    assert any(p.severity == "error" and q.name in p.file for p in r.problems)
    os.unlink(os.path.join(d, q.name))
    r = verify(d, key=KEY)
    assert r.ok and not r.problems
