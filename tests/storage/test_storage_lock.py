"""One store per directory: a second opener gets Locked and touches nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest
from storage_helpers import hash_dir

from sync_queue.errors import Locked
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
