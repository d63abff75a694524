"""The data directory at the edges (issue 9 §4, §5), through a real sidecar: exit codes
that mean what the README's table says, the wait for the directory lock, a closed stderr,
a LOCK symlink, directory modes, a stray temp directory."""

from __future__ import annotations

import ctypes
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import Spawn
from .harness import TIMEOUT, SidecarProcess, dir_snapshot, list_all, sidecar_argv, sidecar_env

pytestmark = pytest.mark.process  # about the process: see conftest.py

EXIT_LOCKED = 3
EXIT_DATA_DIR = 5

HOLDER = (
    "import fcntl, os, sys\n"
    "fd = os.open(os.path.join(sys.argv[1], 'LOCK'), os.O_RDWR | os.O_CREAT, 0o600)\n"
    "fcntl.flock(fd, fcntl.LOCK_EX)\n"
    "print('held', flush=True)\n"
    "sys.stdin.readline()\n"
)


class Holder:
    """Another process holding a data directory's lock until :meth:`release`."""

    def __init__(self, data: Path) -> None:
        data.mkdir(mode=0o700, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(data)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        assert self.proc.stdout.readline() == "held\n"

    def release(self) -> None:
        assert self.proc.stdin is not None
        if not self.proc.stdin.closed:
            self.proc.stdin.write("go\n")
            self.proc.stdin.close()
        assert self.proc.wait(TIMEOUT) == 0


Hold = Callable[[Path], Holder]


@pytest.fixture
def hold() -> Iterator[Hold]:
    """``hold(data)``: a Holder, released at teardown if the test did not."""
    made: list[Holder] = []

    def make(data: Path) -> Holder:
        holder = Holder(data)
        made.append(holder)
        return holder

    yield make
    for holder in made:
        holder.release()


def wait_for_stderr(sidecar: SidecarProcess, text: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while text not in sidecar.stderr:
        assert sidecar.proc.poll() is None, f"exited {sidecar.proc.poll()}: {sidecar.stderr}"
        assert time.monotonic() < deadline, f"no {text!r} on stderr: {sidecar.stderr}"
        time.sleep(0.01)


# -- §4: a bounded wait for the lock at start ------------------------------------------------


def test_a_restart_waits_for_the_previous_owner_to_let_go(
    spawn: Spawn, tmp_path: Path, hold: Hold
) -> None:
    data = tmp_path / "data"
    holder = hold(data)
    sidecar = spawn("--data-dir", data, "--lock-timeout", "60000", ready=False)
    wait_for_stderr(sidecar, "waiting up to")
    assert sidecar.lines == [], "no ready while another process owns the directory"
    holder.release()
    sidecar.wait_ready()
    assert sidecar.result("push", id="a", payload=1) == {"id": "a"}
    assert sidecar.shutdown() == 0


@pytest.mark.parametrize(
    ("args", "env", "waited_ms"),
    [
        (["--lock-timeout", "300"], {}, 300),
        ([], {"SYNC_QUEUE_LOCK_TIMEOUT_MS": "250"}, 250),
        (["serve", "--lock-timeout", "200"], {"SYNC_QUEUE_LOCK_TIMEOUT_MS": "60000"}, 200),
        ([], {}, 2000),  # the default
    ],
)
def test_the_wait_is_bounded_then_exit_3(
    spawn: Spawn,
    tmp_path: Path,
    hold: Hold,
    args: list[str],
    env: dict[str, str],
    waited_ms: int,
) -> None:
    data = tmp_path / "data"
    hold(data)
    before = dir_snapshot(data)
    started = time.monotonic()
    sidecar = spawn(*args, "--data-dir", data, ready=False, env=env)
    assert sidecar.wait_exit() == EXIT_LOCKED
    assert time.monotonic() - started >= waited_ms / 1000
    assert "Locked" in sidecar.stderr
    assert f"still held after waiting {waited_ms} ms" in sidecar.stderr, sidecar.stderr
    assert sidecar.lines == []
    assert dir_snapshot(data) == before


def test_a_bad_lock_timeout_exits_2(spawn: Spawn, tmp_path: Path) -> None:
    for args, env in [
        (["--lock-timeout", "-1"], {}),
        (["--lock-timeout", "soon"], {}),
        ([], {"SYNC_QUEUE_LOCK_TIMEOUT_MS": "2s"}),
    ]:
        sidecar = spawn(*args, "--data-dir", tmp_path / "data", ready=False, env=env)
        assert sidecar.wait_exit() == 2, sidecar.stderr
        assert "lock" in sidecar.stderr.lower()
        assert not (tmp_path / "data").exists()


# -- §5: exit codes ---------------------------------------------------------------------------


def permission_bits_bind_root() -> None:
    """In the child, before exec: root loses CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (from
    the bounding set, so also after the exec), so a directory's mode binds it as it binds
    any user. Nothing to do for a user."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.mark.parametrize("case", ["existing data", "empty", "only the journal read-only"])
def test_a_read_only_data_dir_exits_5_naming_it(spawn: Spawn, tmp_path: Path, case: str) -> None:
    """Exit 4 means "corrupt or wrong key": a directory we may not write is neither."""
    data = tmp_path / "data"
    if case == "empty":
        data.mkdir(mode=0o700)
    else:
        first = spawn("--data-dir", data)
        first.result("push", id="a", payload=1)
        assert first.shutdown() == 0
    paths = [data, *data.iterdir()]
    for path in paths:
        if case != "only the journal read-only" or path.name.startswith("journal-"):
            path.chmod(stat.S_IMODE(path.stat().st_mode) & ~0o222)
    if case == "only the journal read-only":
        data.chmod(0o500)
    before = dir_snapshot(data)
    try:
        sidecar = spawn("--data-dir", data, ready=False, preexec_fn=permission_bits_bind_root)
        status = sidecar.wait_exit()
    finally:
        for path in paths:
            path.chmod(stat.S_IMODE(path.stat().st_mode) | 0o200)
    assert status == EXIT_DATA_DIR, sidecar.stderr
    assert "DataDirUnusable" in sidecar.stderr and str(data) in sidecar.stderr
    assert "Permission denied" in sidecar.stderr
    assert "Traceback" not in sidecar.stderr
    assert sidecar.lines == []
    assert dir_snapshot(data) == before


@pytest.mark.parametrize("target_exists", [False, True])
def test_a_lock_symlink_exits_5_and_is_not_followed(
    spawn: Spawn, tmp_path: Path, target_exists: bool
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    target = tmp_path / "target"
    if target_exists:
        target.write_bytes(b"someone else's file")
    (data / "LOCK").symlink_to(target)
    sidecar = spawn("--data-dir", data, ready=False)
    assert sidecar.wait_exit() == EXIT_DATA_DIR
    assert "symbolic link" in sidecar.stderr and str(data / "LOCK") in sidecar.stderr
    assert target.exists() == target_exists, "the target was never created"
    if target_exists:
        assert target.read_bytes() == b"someone else's file"
    assert sorted(os.listdir(data)) == ["LOCK"]


def test_a_stray_temp_directory_is_named_and_left_alone(spawn: Spawn, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = spawn("--data-dir", data)
    first.result("push", id="a", payload=1)
    assert first.shutdown() == 0
    stray = data / "snapshot-00000000000000000001.tmp"
    stray.mkdir()
    (stray / "inside").write_bytes(b"not ours")
    sidecar = spawn("--data-dir", data)
    assert [item["id"] for item in list_all(sidecar)] == ["a"]
    assert sidecar.shutdown() == 0
    assert str(stray) in sidecar.stderr and "left alone" in sidecar.stderr
    assert (stray / "inside").read_bytes() == b"not ours"
    verify = subprocess.run(
        [*sidecar_argv(), "verify", "--data-dir", str(data)],
        env=sidecar_env(),
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert verify.returncode == 0, verify
    assert str(stray).encode() in verify.stdout and b"directory" in verify.stdout


def test_the_data_dir_and_its_parents_are_private(spawn: Spawn, tmp_path: Path) -> None:
    # Parents made under umask 000 used to be 0777.
    data = tmp_path / "a" / "b" / "data"
    sidecar = spawn("--data-dir", data, preexec_fn=lambda: os.umask(0))
    assert sidecar.shutdown() == 0
    for path in (tmp_path / "a", tmp_path / "a" / "b", data):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    # A directory anyone may write to was used as it was; it is restricted, and said so.
    data.chmod(0o777)
    sidecar = spawn("--data-dir", data)
    assert sidecar.shutdown() == 0
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert "had mode 0777" in sidecar.stderr


def test_a_closed_stderr_changes_no_exit_status(spawn: Spawn, tmp_path: Path) -> None:
    """``2>&-``: a clean stop used to exit 1 (the last flush of a missing sys.stderr)."""

    def close_stderr() -> None:
        os.close(2)

    data = tmp_path / "data"
    sidecar = spawn("--data-dir", data, "--log-level", "debug", preexec_fn=close_stderr)
    sidecar.result("pushBatch", items=[{"id": f"i{n}", "payload": n} for n in range(20)])
    sidecar.close_stdin()
    assert sidecar.wait_exit() == 0
    owner = spawn("--data-dir", data)
    locked = spawn("--data-dir", data, "--lock-timeout", "0", ready=False, preexec_fn=close_stderr)
    assert locked.wait_exit() == EXIT_LOCKED
    assert locked.lines == [], "the message did not go to stdout instead"
    # Nothing meant for stderr landed in a data file: everything is there, verify is clean.
    assert [item["id"] for item in list_all(owner)] == [f"i{n}" for n in range(20)]
    assert owner.shutdown() == 0
    verify = subprocess.run(
        [*sidecar_argv(), "verify", "--data-dir", str(data)],
        env=sidecar_env(),
        stderr=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        timeout=TIMEOUT,
        preexec_fn=close_stderr,
    )
    assert verify.returncode == 0 and verify.stdout.endswith(b"ok\n"), verify
