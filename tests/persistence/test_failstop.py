"""Fail-stop at the queue: a change refused because its write or fsync failed is not
visible to any later read, and what the queue shows afterwards is what a reopen recovers.

Failures are injected through the storage's ``FileIO`` seam (``SyncQueue(file_io=...)``).
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sync_queue import (
    DataDirUnusable,
    ItemNotFound,
    ManualClock,
    PersistenceError,
    QueueConfig,
    SyncItem,
    SyncQueue,
)
from sync_queue.persistence import open_store, rebuild
from sync_queue.storage.codec import Compression
from sync_queue.storage.fileio import FileIO
from sync_queue.storage.recovery import load_directory


class FailingIO(FileIO):
    """Real file I/O that raises ``OSError`` on every fsync or write once armed."""

    def __init__(self) -> None:
        self.fail: str | None = None  # "fsync" or "write"
        self.errno = errno.EIO

    def fsync(self, fd: int) -> None:
        if self.fail == "fsync":
            raise OSError(self.errno, os.strerror(self.errno))
        super().fsync(fd)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        if self.fail == "write":
            # A failing write may have written a prefix (a full disk does).
            os.write(fd, bytes(data[: len(data) // 2]))
            raise OSError(self.errno, os.strerror(self.errno))
        return super().write(fd, data)


def make_queue(
    tmp_path: Path, durability: str = "always", **kw: Any
) -> tuple[SyncQueue, FailingIO]:
    io = FailingIO()
    config = QueueConfig(
        persistence_path=tmp_path / "data",
        durability=durability,  # type: ignore[arg-type]
        persistence_interval=kw.pop("persistence_interval", 3600),
        sync_interval=kw.pop("sync_interval", 3600),
        **kw,
    )
    return SyncQueue(config, maintenance_thread=False, file_io=io), io


def view(q: SyncQueue) -> tuple[Any, ...]:
    """Everything a client can read, through the public API."""
    items = [item.to_dict() for item in q.list(limit=1000).items]
    m = q.metrics()
    return items, m.current_size, q.ready_count(), q.health().paused


def recovered(q: SyncQueue) -> Any:
    """The state a reopen recovers (before it releases interrupted leases, itself a change)."""
    q.shutdown()
    state, persistence = open_store(q.config)
    try:
        return state.fingerprint()
    finally:
        persistence.close(lambda: b"")


def setup_items(q: SyncQueue) -> dict[str, str]:
    """Acknowledged history: pending, processing, completed and cancelled items."""
    for name in ("w1", "w2", "done", "gone"):
        q.push(SyncItem.new({"n": name}).with_id(name))
    leases = {item.id: item.lease_id or "" for item in q.pop_batch(4)}
    for name in ("p1", "p2"):
        q.push(SyncItem.new({"n": name}).with_id(name))
    q.pause()
    q.resume()
    q.mark_completed("done", leases["done"])
    q.cancel("gone")
    return leases


REFUSED: dict[str, Callable[[SyncQueue, dict[str, str]], object]] = {
    "push": lambda q, _: q.push(SyncItem.new("new").with_id("new")),
    "push_batch": lambda q, _: q.push_batch([SyncItem.new(i) for i in range(3)]),
    "pop": lambda q, _: q.pop(),
    "complete": lambda q, leases: q.mark_completed("w1", leases["w1"]),
    "fail": lambda q, leases: q.mark_failed("w1", "boom", leases["w1"]),
    "extend_lease": lambda q, leases: q.extend_lease("w1", 99, leases["w1"]),
    "cancel": lambda q, _: q.cancel("p1"),
    "requeue": lambda q, _: q.requeue("gone"),
    "purge": lambda q, _: q.purge("completed"),
    "pause": lambda q, _: q.pause(),
}


@pytest.mark.parametrize("what", ["fsync", "write"])
@pytest.mark.parametrize("op", sorted(REFUSED))
def test_a_refused_change_is_not_applied(tmp_path: Path, op: str, what: str) -> None:
    q, io = make_queue(tmp_path)
    leases = setup_items(q)
    before = view(q)
    io.fail = what
    with pytest.raises(PersistenceError):
        REFUSED[op](q, leases)
    assert view(q) == before  # no ghost: the refused change is not visible
    assert q.storage_failure is not None and not q.health_check()
    with pytest.raises(PersistenceError):  # fail-stop: later changes are refused
        q.push(SyncItem.new("later"))
    live = q._engine.core.state.fingerprint()
    io.fail = None
    assert recovered(q) == live


# "periodic" does not fsync in the group commit: its fsync failure is tested below.
@pytest.mark.parametrize(
    ("durability", "what"), [("always", "fsync"), ("always", "write"), ("periodic", "write")]
)
def test_a_refused_group_is_rolled_back_whole(tmp_path: Path, what: str, durability: str) -> None:
    q, io = make_queue(tmp_path, durability)
    leases = setup_items(q)
    before = view(q)
    io.fail = what
    engine, core = q._engine, q._engine.core
    with pytest.raises(PersistenceError):  # one group and one commit, as the sidecar does
        core.push(engine.begin_change(), SyncItem.new("a").with_id("ghost"))
        core.complete(engine.begin_change(), "w1", leases["w1"])
        core.cancel(engine.begin_change(), "p1")
        assert core.item("ghost").status.value == "pending"  # applied, not yet durable
        engine.commit(core.ticket)
    with pytest.raises(ItemNotFound):
        q.get("ghost")
    assert q.get("w1").status.value == "processing"
    assert q.get("p1").status.value == "pending"
    assert view(q) == before
    live = q._engine.core.state.fingerprint()
    io.fail = None
    assert recovered(q) == live


def test_callers_of_the_failed_group_see_the_rollback_before_their_error(tmp_path: Path) -> None:
    q, io = make_queue(tmp_path)
    q.push(SyncItem.new("kept").with_id("kept"))
    io.fail = "fsync"
    start = threading.Barrier(4)
    seen: list[object] = []

    def push(n: int) -> None:
        start.wait()
        try:
            q.push(SyncItem.new(n).with_id(f"t{n}"))
            seen.append("acked")
        except PersistenceError:
            # After our error no read may show our push (or any other refused one).
            seen.append([i.id for i in q.list().items])

    threads = [threading.Thread(target=push, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [["kept"]] * 4
    live = q._engine.core.state.fingerprint()
    io.fail = None
    assert recovered(q) == live


def test_the_failed_block_is_cut_and_synced(tmp_path: Path) -> None:
    """Bytes written before the fsync failed reached the page cache: the block is
    truncated and the truncation synced, so a restart cannot bring the refused push back."""

    class Recording(FailingIO):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[tuple[str, int]] = []

        def ftruncate(self, fd: int, size: int) -> None:
            self.calls.append(("ftruncate", fd))
            super().ftruncate(fd, size)

        def fsync(self, fd: int) -> None:
            self.calls.append(("fsync", fd))
            if self.fail == "fsync" and len([c for c in self.calls if c[0] == "fsync"]) == 1:
                raise OSError(errno.EIO, "Input/output error")
            super().fsync(fd)

    io = Recording()
    config = QueueConfig(persistence_path=tmp_path / "data", persistence_interval=3600)
    q = SyncQueue(config, maintenance_thread=False, file_io=io)
    q.push(SyncItem.new("a").with_id("a"))
    io.calls.clear()
    io.fail = "fsync"
    with pytest.raises(PersistenceError):
        q.push(SyncItem.new("b").with_id("b"))
    fd = io.calls[0][1]
    assert io.calls[:3] == [("fsync", fd), ("ftruncate", fd), ("fsync", fd)]
    io.fail = None
    assert [i.id for i in q.list().items] == ["a"]
    live = q._engine.core.state.fingerprint()
    assert recovered(q) == live


def test_periodic_fsync_failure_keeps_what_was_acknowledged(tmp_path: Path) -> None:
    """ "periodic": a write that reached the OS was acknowledged, so a failed background
    fsync refuses only what comes after it, and the live state stays what a reopen recovers
    (a lease that expired during a read was written with that read)."""
    io = FailingIO()
    clock = ManualClock()
    config = QueueConfig(
        persistence_path=tmp_path / "data", durability="periodic", sync_interval=0.02
    )
    q = SyncQueue(config, clock=clock, maintenance_thread=False, file_io=io)
    q.push(SyncItem.new("a").with_id("a"))
    q.push(SyncItem.new("b").with_id("b"))
    assert q.pop(lease=1) is not None  # written to the OS: acknowledged
    clock.advance(5_000)
    assert q.get("a").status.value == "pending"  # the read expired the lease: not written
    io.fail = "fsync"
    deadline = time.monotonic() + 10
    while q.storage_failure is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert q.storage_failure is not None
    with pytest.raises(PersistenceError):
        q.push(SyncItem.new("c").with_id("c"))
    q.run_maintenance()
    assert [i.id for i in q.list().items] == ["a", "b"]
    assert q.get("a").status.value == "pending"  # the read's expiry was written with it
    live = q._engine.core.state.fingerprint()
    io.fail = None
    assert recovered(q) == live


def test_unreadable_durable_state_refuses_reads(tmp_path: Path) -> None:
    """If the directory cannot even be read back after the failure, reads are refused
    rather than answered from a state that holds refused changes."""

    class Unreadable(FailingIO):
        def read_file(self, path: str) -> bytes:
            if self.fail:
                raise OSError(errno.EIO, "Input/output error", path)
            return super().read_file(path)

    io = Unreadable()
    config = QueueConfig(persistence_path=tmp_path / "data", persistence_interval=3600)
    q = SyncQueue(config, maintenance_thread=False, file_io=io)
    q.push(SyncItem.new("a").with_id("a"))
    io.fail = "fsync"
    with pytest.raises(PersistenceError):
        q.push(SyncItem.new("b").with_id("b"))
    with pytest.raises(PersistenceError, match="could not be read back"):
        q.get("b")
    with pytest.raises(PersistenceError, match="could not be read back"):
        q.list()
    # health still answers, and says why (it is what a monitor polls).
    health = q.health()
    assert not health.healthy and "could not be read back" in (health.reason or "")
    assert q.health_check() is False
    io.fail = None
    q.shutdown()


def test_a_write_failing_at_open_is_an_unusable_directory_and_releases_it(
    tmp_path: Path,
) -> None:
    """Opening writes records (interrupted leases released, a re-base): if that write fails,
    the directory is unusable (exit 5), not corrupt (exit 4), and its lock is released."""
    config = QueueConfig(persistence_path=tmp_path / "data", persistence_interval=3600)
    q = SyncQueue(config, maintenance_thread=False)
    q.push(SyncItem.new("a").with_id("a"))
    assert q.pop() is not None  # processing when the process "dies"
    q._engine.storage.store.close()  # type: ignore[union-attr]  # no clean stop: as after a crash
    io = FailingIO()
    io.fail = "fsync"
    with pytest.raises(DataDirUnusable, match="cannot write to the data directory"):
        SyncQueue(config.replace(lock_timeout=0), maintenance_thread=False, file_io=io)
    reopened = SyncQueue(config.replace(lock_timeout=0), maintenance_thread=False)
    assert reopened.get("a").status.value == "pending"  # released by this open
    reopened.shutdown()


def test_reads_commit_what_catching_up_with_time_changed(tmp_path: Path) -> None:
    """A read that finds a lease expired journals that; in the server (one commit per
    cycle) the cycle's commit must make it durable, or a crash after the reply undoes what
    it showed."""
    clock = ManualClock(1_700_000_000_000)
    config = QueueConfig(persistence_path=tmp_path / "data", persistence_interval=3600)
    q = SyncQueue(config, clock=clock, maintenance_thread=False)
    q.push(SyncItem.new("a").with_id("a"))
    engine, core = q._engine, q._engine.core
    core.pop(engine.begin_change(), 1, lease_ms=1)
    engine.commit(core.ticket)
    clock.advance(5000)
    engine.before_read()
    engine.begin_read()  # a read, as the sidecar does it: it catches up with time
    assert core.item("a").status.value == "pending"  # the lease ran out
    engine.commit(core.ticket)  # the cycle's one commit
    # What is on disk now, read as a crash right after the reply would leave it (the store
    # is still open: closing it would write what it buffered).
    plan = load_directory(
        FileIO(), str(config.persistence_path), enc=None, compression=Compression(0)
    )
    state, _ = rebuild(config, plan.recovery)
    assert state.items["a"].status.value == "pending"
    q.shutdown()
