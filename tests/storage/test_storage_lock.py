"""One store per directory: a second opener gets Locked and touches nothing."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import time

import pytest
from storage_helpers import hash_dir

from sync_queue.errors import DataDirUnusable, Locked
from sync_queue.storage import Store, verify


def test_second_open_same_process_is_locked(tmp_path):
    d = str(tmp_path / "q")
    s = Store.open(d)
    s.commit(s.append([b"x"]))
    before = hash_dir(d)
    with pytest.raises(Locked, match="in use"):
        Store.open(d)
    with pytest.raises(Locked):
        verify(d)
    assert hash_dir(d) == before
    s.commit(s.append([b"y"]))  # the first store is unaffected
    s.close()
    s = Store.open(d)
    assert list(s.take_recovery().records()) == [b"x", b"y"]
    s.close()


def test_second_open_other_process_is_locked(tmp_path):
    d = str(tmp_path / "q")
    s = Store.open(d)
    code = (
        "import sys\n"
        "from sync_queue.errors import Locked\n"
        "from sync_queue.storage import Store\n"
        "try:\n"
        f"    Store.open({d!r})\n"
        "except Locked:\n"
        "    sys.exit(3)\n"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 3
    s.close()
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


# -- waiting for the lock (issue 9 §4), LOCK symlinks and directory modes (§5) --------------

HOLDER = (
    "import fcntl, os, sys\n"
    "fd = os.open(os.path.join(sys.argv[1], 'LOCK'), os.O_RDWR | os.O_CREAT, 0o600)\n"
    "fcntl.flock(fd, fcntl.LOCK_EX)\n"
    "print('held', flush=True)\n"
    "sys.stdin.readline()\n"  # released when the test writes a line (or closes the pipe)
)


def hold_lock(d):
    """Another process that holds ``d``'s lock until a line is written to its stdin."""
    os.makedirs(d, mode=0o700, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, d],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline() == "held\n"
    return holder


def release(holder):
    holder.stdin.write("go\n")
    holder.stdin.close()
    assert holder.wait(60) == 0


class _ReleaseWhenWaiting(logging.Handler):
    """Lets the holder go the moment the opener logs that it is waiting: no sleep, and
    proof that the open really waited."""

    def __init__(self, holder):
        super().__init__()
        self.holder = holder
        self.seen = []

    def emit(self, record):
        message = record.getMessage()
        self.seen.append(message)
        if "waiting up to" in message and not self.holder.stdin.closed:
            release(self.holder)


def test_open_waits_for_another_process_to_release_the_lock(tmp_path):
    d = str(tmp_path / "q")
    holder = hold_lock(d)
    handler = _ReleaseWhenWaiting(holder)
    logger = logging.getLogger("sync_queue.storage")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        s = Store.open(d, lock_timeout=60)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        if holder.poll() is None:
            release(holder)
    assert any("held by another store" in m for m in handler.seen), handler.seen
    s.commit(s.append([b"x"]))
    s.close()


def test_the_wait_is_bounded_then_locked_and_nothing_touched(tmp_path):
    d = str(tmp_path / "q")
    s = Store.open(d)
    s.commit(s.append([b"x"]))
    s.close()
    before = hash_dir(d)
    holder = hold_lock(d)
    try:
        started = time.monotonic()
        with pytest.raises(Locked, match="still held after waiting 300 ms"):
            Store.open(d, lock_timeout=0.3)
        assert time.monotonic() - started >= 0.3
        with pytest.raises(Locked, match="is held"):
            Store.open(d)  # the default: no wait
    finally:
        release(holder)
    assert hash_dir(d) == before


def test_queue_config_lock_timeout_reaches_the_store(tmp_path):
    from sync_queue import QueueConfig, SyncQueue

    d = tmp_path / "q"
    holder = hold_lock(str(d))
    try:
        started = time.monotonic()
        with pytest.raises(Locked, match="after waiting 200 ms"):
            SyncQueue(QueueConfig(persistence_path=d, lock_timeout=0.2), maintenance_thread=False)
        assert time.monotonic() - started >= 0.2
    finally:
        release(holder)
    assert QueueConfig().lock_timeout == 2.0


@pytest.mark.parametrize("target_exists", [False, True])
def test_a_lock_symlink_is_refused_not_followed(tmp_path, target_exists):
    d = tmp_path / "q"
    d.mkdir(mode=0o700)
    target = tmp_path / "elsewhere"
    if target_exists:
        target.write_bytes(b"not yours")
    (d / "LOCK").symlink_to(target)
    with pytest.raises(DataDirUnusable, match="symbolic link") as info:
        Store.open(str(d))
    assert str(d / "LOCK") in info.value.message
    with pytest.raises(DataDirUnusable, match="symbolic link"):
        verify(str(d))
    assert target.exists() == target_exists, "the link's target was never created"
    if target_exists:
        assert target.read_bytes() == b"not yours"
    assert os.listdir(d) == ["LOCK"]


def test_missing_parents_are_created_0700_whatever_the_umask(tmp_path):
    d = tmp_path / "a" / "b" / "q"
    old = os.umask(0)
    try:
        Store.open(str(d)).close()
    finally:
        os.umask(old)
    for path in (tmp_path / "a", tmp_path / "a" / "b", d):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path


def test_an_existing_open_data_dir_is_restricted_to_0700(tmp_path, caplog):
    d = tmp_path / "q"
    d.mkdir()
    d.chmod(0o777)
    with caplog.at_level(logging.WARNING, logger="sync_queue.storage"):
        Store.open(str(d)).close()
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert "had mode 0777" in caplog.text and str(d) in caplog.text


def test_a_stray_temp_directory_is_named_and_left_alone(tmp_path, caplog):
    d = tmp_path / "q"
    s = Store.open(str(d))
    s.commit(s.append([b"x"]))
    s.close()
    stray = d / "snapshot-00000000000000000001.tmp"
    stray.mkdir()
    (stray / "someone's file").write_bytes(b"keep")
    with caplog.at_level(logging.WARNING, logger="sync_queue.storage"):
        s = Store.open(str(d))
    assert list(s.take_recovery().records()) == [b"x"]
    s.close()
    assert str(stray) in caplog.text and "left alone" in caplog.text
    assert (stray / "someone's file").read_bytes() == b"keep"
    report = verify(str(d))
    assert report.ok
    assert any(str(stray) == p.file and "directory" in p.message for p in report.problems)


def test_a_file_system_without_locks_is_unusable_not_locked(tmp_path, monkeypatch):
    """Only "someone holds it" is waited for and reported as ``Locked``: a file system that
    cannot lock at all (ENOLCK on some network mounts) is ``DataDirUnusable`` at once, or
    the plugin would report a second instance that does not exist."""
    import errno

    from sync_queue.storage import lock

    def no_locks(fd, shared):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(lock, "_lock", no_locks)
    started = time.monotonic()
    with pytest.raises(DataDirUnusable, match="supports locks"):
        Store.open(tmp_path / "d", lock_timeout=5.0)
    assert time.monotonic() - started < 2.5  # not the 5 s wait of a held lock
