"""Journal segments are preallocated (``SegmentWriter``, ``FileIO.preallocate``): records are
written over zeros already counted in the file's size. A clean close and a rotation cut the
zeros off; after a crash the next open reads them as an interrupted append and cuts them,
with every acknowledged record replayed."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from sync_queue.storage import Store
from sync_queue.storage.blocks import ZERO_TAIL
from sync_queue.storage.journal import PREALLOCATE_BYTES

SEGMENT = "journal-00000000000000000001.log"


def _records(n: int) -> list[bytes]:
    return [b"record %d " % i + os.urandom(40).hex().encode() for i in range(n)]


def test_a_live_segment_is_preallocated_and_a_clean_close_cuts_the_zeros(tmp_path: Path) -> None:
    d = str(tmp_path / "q")
    s = Store.open(d)
    s.commit(s.append(_records(10)))
    logical = s.stats().journal_bytes
    path = os.path.join(d, SEGMENT)
    assert os.path.getsize(path) >= PREALLOCATE_BYTES > logical
    assert not any(Path(path).read_bytes()[logical:])  # zeros past the last block
    s.close()
    assert os.path.getsize(path) == logical
    s = Store.open(d)
    rec = s.take_recovery()
    assert rec.torn_tail is None
    assert len(list(rec.records())) == 10
    s.close()


def test_a_crash_with_a_preallocated_segment_replays_every_committed_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The directory as a crash leaves it (copied while the store is open, after commits):
    the zeros after the last block are cut, nothing is quarantined, nothing is lost, and
    the reopened store appends after the last record."""
    live, crashed = str(tmp_path / "live"), str(tmp_path / "crashed")
    s = Store.open(live)
    written = []
    for _ in range(5):
        batch = _records(7)
        s.commit(s.append(batch))
        written += batch
    logical = s.stats().journal_bytes
    shutil.copytree(live, crashed, ignore=shutil.ignore_patterns("*.lock", "lock"))
    s.close()
    assert os.path.getsize(os.path.join(crashed, SEGMENT)) > logical
    s = Store.open(crashed)
    rec = s.take_recovery()
    assert list(rec.records()) == written
    assert rec.torn_tail is not None and not rec.torn_tail.damaged
    assert rec.torn_tail.offset == logical
    # Expected after every crash: logged as the unused space it is, not as a torn write.
    assert rec.torn_tail.reason == ZERO_TAIL
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert not s.quarantined
    assert not [n for n in os.listdir(crashed) if n.startswith("quarantine-")]
    more = _records(3)
    s.commit(s.append(more))
    s.close()
    s = Store.open(crashed)
    assert list(s.take_recovery().records()) == written + more
    s.close()


def test_rotation_seals_the_closed_segment_before_the_next_exists(tmp_path: Path) -> None:
    """Only the last segment may end in anything but blocks: a closed one holds no zeros."""
    d = str(tmp_path / "q")
    s = Store.open(d, segment_max_bytes=4096)
    written = []
    for _ in range(30):
        batch = _records(5)
        s.commit(s.append(batch))
        written += batch
    segments = sorted(n for n in os.listdir(d) if n.startswith("journal-"))
    assert len(segments) > 2
    for name in segments[:-1]:
        data = Path(d, name).read_bytes()
        assert data[-16:] != bytes(16), f"{name} still ends in preallocated zeros"
    crashed = str(tmp_path / "crashed")
    shutil.copytree(d, crashed)
    s.close()
    s = Store.open(crashed)
    assert list(s.take_recovery().records()) == written
    s.close()


def test_without_preallocation_the_journal_still_works(tmp_path: Path) -> None:
    """A filesystem (or platform) that cannot preallocate: the writes grow the file."""
    from sync_queue.storage.fileio import FileIO

    class NoPreallocation(FileIO):
        def preallocate(self, fd: int, offset: int, length: int) -> bool:
            return False

    d = str(tmp_path / "q")
    s = Store.open(d, io=NoPreallocation())
    s.commit(s.append(_records(4)))
    assert os.path.getsize(os.path.join(d, SEGMENT)) == s.stats().journal_bytes
    s.close()
    s = Store.open(d)
    assert len(list(s.take_recovery().records())) == 4
    s.close()
