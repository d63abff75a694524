"""Injected write/fsync failures and full disks: the failing group is refused (never
acknowledged), the store fail-stops, and a reopen recovers exactly what was acked."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time
import uuid

import pytest
from storage_helpers import FaultyIO, fold_json, state_of

from sync_queue.errors import InvalidParams, PersistenceError
from sync_queue.storage import EncryptionService, Store

KEY = EncryptionService.generate_key()


def reopen_records(d: str, key: bytes | None = None) -> list[bytes]:
    s = Store.open(d, key=key)
    try:
        return state_of(s.take_recovery())
    finally:
        s.close()


@pytest.mark.parametrize("what", ["fsync", "write"])
@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "aes"])
def test_failed_group_is_refused_and_store_fail_stops(tmp_path, what, key):
    d = str(tmp_path / "q")
    io = FaultyIO()
    s = Store.open(d, io=io, key=key, compression_level=3)
    acked = []
    for i in range(5):
        rec = b"ok-%d" % i
        s.commit(s.append([rec]))
        acked.append(rec)
    # Three callers share the failing group.
    tickets = [s.append([b"doomed-%d" % i]) for i in range(3)]
    if what == "fsync":
        io.fail_fsync_at = io.fsyncs + 1
    else:
        io.fail_write_at = io.writes + 1
    errors: list[BaseException] = []

    def commit(t: int) -> None:
        try:
            s.commit(t)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=commit, args=(t,)) for t in tickets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 3 and all(isinstance(e, PersistenceError) for e in errors)
    assert "Input/output error" in str(errors[0])
    # Fail-stop: refused until reopened, even once the disk is fine again.
    io.fail_fsync_at = io.fail_write_at = None
    with pytest.raises(PersistenceError, match="reopened"):
        s.append([b"later"])
    with pytest.raises(PersistenceError):
        s.commit(tickets[0])
    with pytest.raises(PersistenceError):
        s.write_snapshot(b"[]")
    assert s.stats().failure is not None
    s.close()
    assert reopen_records(d, key) == acked  # nothing acked lost, nothing failed replayed
    s = Store.open(d, key=key)
    s.commit(s.append([b"after"]))
    s.close()
    assert reopen_records(d, key) == [*acked, b"after"]


def test_short_writes_are_continued(tmp_path):
    d = str(tmp_path / "q")
    io = FaultyIO()
    io.short_writes = True
    s = Store.open(d, io=io)
    recs = [os.urandom(1000) for _ in range(10)]
    s.commit(s.append(recs))
    s.close()
    assert reopen_records(d) == recs


def test_periodic_fsync_failure_fail_stops(tmp_path):
    d = str(tmp_path / "q")
    io = FaultyIO()
    s = Store.open(d, io=io, durability="periodic", fsync_interval=0.02)
    s.commit(s.append([b"a"]))
    io.fail_fsync_at = io.fsyncs + 1
    s.commit(s.append([b"b"]))  # written to the OS: acked in periodic mode
    deadline = time.monotonic() + 5
    while s.stats().failure is None and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(PersistenceError):
        s.commit(s.append([b"c"]))
    io.fail_fsync_at = None
    s.close()
    assert reopen_records(d)[:1] == [b"a"]


def test_snapshot_write_failure_keeps_journal_usable(tmp_path):
    d = str(tmp_path / "q")
    io = FaultyIO()
    s = Store.open(d, io=io, fold=fold_json)
    s.commit(s.append([b"a"]))
    # compact: rotation fsyncs old + new segment + dir; then the snapshot temp fsync fails.
    io.fail_fsync_at = io.fsyncs + 3
    with pytest.raises(PersistenceError, match="snapshot"):
        s.compact()
    io.fail_fsync_at = None
    assert s.stats().failure is None
    s.commit(s.append([b"b"]))
    s.compact()
    s.commit(s.append([b"c"]))
    s.close()
    assert reopen_records(d) == [b"a", b"b", b"c"]
    assert not [n for n in os.listdir(d) if n.endswith(".tmp")]


def _fill_until_error(s: Store) -> tuple[list[bytes], BaseException]:
    acked: list[bytes] = []
    i = 0
    while True:
        rec = b"%06d" % i + os.urandom(600)
        try:
            s.commit(s.append([rec]))
        except PersistenceError as e:
            return acked, e
        acked.append(rec)
        i += 1


def test_full_disk_tmpfs(tmp_path):
    mnt = str(tmp_path / "mnt")
    os.mkdir(mnt)
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", mnt], capture_output=True
    ).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        d = os.path.join(mnt, "q")
        s = Store.open(d, segment_max_bytes=64 * 1024)
        acked, err = _fill_until_error(s)
        assert "No space left" in str(err)
        with pytest.raises(PersistenceError):
            s.append([b"more"])
        s.close()
        assert len(acked) > 10
        assert reopen_records(d) == acked
    finally:
        subprocess.run(["umount", "-l", mnt], check=False)


CHILD = r"""
import os, resource, signal, sys
from sync_queue.errors import InvalidParams, PersistenceError
from sync_queue.storage import Store
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # get EFBIG instead of being killed
s = Store.open(sys.argv[1], segment_max_bytes=1 << 20)
resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))
i = 0
while True:
    rec = b"%06d" % i + os.urandom(500)
    try:
        s.commit(s.append([rec]))
    except PersistenceError as e:
        print("ERR", e, flush=True)
        break
    print("ACK", rec.hex(), flush=True)
    i += 1
s.close()
"""


def test_file_size_limit_in_subprocess(tmp_path):
    d = str(tmp_path / f"q-{uuid.uuid4().hex}")
    out = subprocess.run(
        [sys.executable, "-c", CHILD, d], capture_output=True, text=True, timeout=120
    ).stdout.splitlines()
    acked = [bytes.fromhex(line.split()[1]) for line in out if line.startswith("ACK ")]
    errs = [line for line in out if line.startswith("ERR ")]
    assert errs and ("too large" in errs[0] or str(errno.EFBIG) in errs[0]), out[-3:]
    assert len(acked) > 10
    assert reopen_records(d) == acked


# "periodic" group commits do not fsync: its fsync failure is the periodic test above.
@pytest.mark.parametrize(
    ("durability", "what"), [("always", "fsync"), ("always", "write"), ("periodic", "write")]
)
@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "aes"])
def test_read_durable_equals_what_a_reopen_recovers(tmp_path, what, durability, key):
    """After a failed group, ``read_durable`` (what the queue rebuilds its live state from)
    holds every acknowledged record and no refused one, exactly as a reopen does, also
    across a snapshot and several segments."""
    d = str(tmp_path / "q")
    io = FaultyIO()
    s = Store.open(d, io=io, key=key, durability=durability, fold=fold_json, segment_max_bytes=4096)
    acked = []
    for i in range(40):
        rec = b"ok-%03d-" % i + b"x" * 200
        s.commit(s.append([rec]))
        acked.append(rec)
        if i == 20:
            s.compact()
    with pytest.raises(InvalidParams):
        s.read_durable()  # only for a failed store
    if what == "fsync":
        io.fail_fsync_at = io.fsyncs + 1
    else:
        io.fail_write_at = io.writes + 1
    with pytest.raises(PersistenceError):
        s.commit(s.append([b"doomed-1", b"doomed-2"]))
    io.fail_fsync_at = io.fail_write_at = None
    live = state_of(s.read_durable())
    assert live == acked
    s.close()
    assert reopen_records(d, key) == live


def test_read_durable_leaves_out_a_group_whose_cut_failed(tmp_path):
    """If even the truncation of the refused block fails, the refused records stay in the
    file; the live state still leaves them out (they were answered with an error)."""

    class NoTruncate(FaultyIO):
        def ftruncate(self, fd: int, size: int) -> None:
            if self.fail_fsync_at is not None:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            super().ftruncate(fd, size)

    d = str(tmp_path / "q")
    io = NoTruncate()
    s = Store.open(d, io=io)
    s.commit(s.append([b"a"]))
    io.fail_fsync_at = io.fsyncs + 1
    with pytest.raises(PersistenceError):
        s.commit(s.append([b"refused"]))
    assert state_of(s.read_durable()) == [b"a"]
    io.fail_fsync_at = None
    s.close()
