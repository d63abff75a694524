"""The frozen sidecar (issue 5): same command line as ``python -m sync_queue``, same protocol,
and every way of stopping it leaves no process and no ``_MEI*`` directory behind.

The full protocol suite is ``tests/sidecar``, run with ``SYNC_QUEUE_SIDECAR=<binary>``; this
file covers what only a frozen build can get wrong: the entry point, the bundled native
modules (orjson, zstandard, cryptography), output buffering, the onefile bootloader's
second process, its signal forwarding and its temp-dir cleanup.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .proc import (
    HAVE_PROC,
    ROOT,
    TIMEOUT,
    Frozen,
    alive,
    frozen_env,
    mei_dirs,
    source_argv,
    source_env,
    tree,
    wait_all_gone,
)

needs_proc = pytest.mark.skipif(not HAVE_PROC, reason="process checks read /proc (Linux)")
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")

Spawn = Callable[..., Frozen]


@pytest.fixture
def spawn(tmp_path: Path, private_tmp: Path) -> Iterator[Spawn]:
    """``spawn(exe, *args, **kw)``: a frozen sidecar with a private TMPDIR, killed at teardown."""
    started: list[Frozen] = []

    def start(exe: Path, *args: Any, env: dict[str, str] | None = None, **kw: Any) -> Frozen:
        log = tmp_path / f"stderr-{len(started)}.log"
        process = Frozen([str(exe)], *args, env=env or frozen_env(private_tmp), log=log, **kw)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def run(argv: list[str], env: dict[str, str], *args: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*argv, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


def run_both(exe: Path, tmpdir: Path, *args: Any) -> tuple[Any, Any]:
    """The same command line through the frozen binary and through ``python -m``."""
    frozen = run([str(exe)], frozen_env(tmpdir), *args)
    source = run(source_argv(), source_env(), *args)
    return frozen, source


# -- the command line ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["--help"],
        ["serve", "--help"],
        ["inspect", "--help"],
        ["verify", "--help"],
        ["--bogus"],  # usage error: exit 2, message on stderr
        ["inspect", "--memory"],  # UsageError from the code, not argparse
        ["--memory", "--log-level", "loud"],
    ],
    ids=lambda a: " ".join(a),
)
def test_command_line_is_the_same_as_from_source(
    onefile: Path, private_tmp: Path, args: list[str]
) -> None:
    frozen, source = run_both(onefile, private_tmp, *args)
    assert (frozen.returncode, frozen.stdout, frozen.stderr) == (
        source.returncode,
        source.stdout,
        source.stderr,
    )
    assert mei_dirs(private_tmp) == []


def test_version(onefile: Path, private_tmp: Path) -> None:
    from sync_queue import __version__

    result = run([str(onefile)], frozen_env(private_tmp), "--version")
    assert result.returncode == 0
    assert result.stdout == f"sync-queue {__version__}\n"


# -- the protocol, the native modules, no buffering ----------------------------------------


def _key_file(tmp_path: Path) -> Path:
    key = tmp_path / "key"
    key.write_bytes(base64.b64encode(bytes(range(32))) + b"\n")
    return key


def test_round_trip_on_disk_encrypted_and_compressed(
    build: tuple[str, Path], spawn: Spawn, tmp_path: Path, private_tmp: Path
) -> None:
    """ping/push/pop/complete answered while stdin stays open (nothing waits in a buffer
    for exit); the data goes through zstandard and AES-GCM (cryptography) into a journal
    that ``python -m sync_queue`` reads back, and the other way round."""
    _kind, exe = build
    data, key = tmp_path / "data", _key_file(tmp_path)
    big = {"text": "sync-queue " * 5_000}  # compressible, far above any threshold
    sidecar = spawn(exe, "--data-dir", data, "--key-file", key)
    ready = sidecar.wait_ready()
    assert ready["dataDir"] == str(data) and ready["recovered"]["pending"] == 0
    assert sidecar.call("ping") == {"pong": True}
    first = sidecar.call("push", payload=big, priority="high")["id"]
    sidecar.call("push", payload={"n": 2}, id="second")
    item = sidecar.call("pop")
    assert item["id"] == first and item["payload"] == big
    assert sidecar.call("complete", id=first, leaseId=item["leaseId"]) == {}
    assert sidecar.call("shutdown") == {}
    assert sidecar.wait() == 0, sidecar.stderr()

    journal = b"".join(p.read_bytes() for p in data.iterdir() if p.is_file())
    assert b"sync-queue sync-queue" not in journal  # compressed and/or encrypted

    # The frozen and the source build agree on the files, byte for byte in their reports.
    # (Options go after the subcommand: before it, the subcommand's defaults reset them.)
    reports = {}
    for command in ("verify", "inspect"):
        frozen, source = run_both(
            exe, private_tmp, command, "--data-dir", data, "--key-file", key, "--json"
        )
        assert frozen.returncode == source.returncode == 0, frozen.stderr + source.stderr
        assert json.loads(frozen.stdout) == json.loads(source.stdout)
        reports[command] = json.loads(frozen.stdout)
    assert reports["verify"]["ok"] is True
    assert reports["inspect"]["counts"]["completed"] == 1
    assert reports["inspect"]["counts"]["pending"] == 1

    # Without the key the frozen verify fails the way the source one does (exit 1).
    frozen, source = run_both(exe, private_tmp, "verify", "--data-dir", data)
    assert frozen.returncode == source.returncode == 1
    assert frozen.stdout == source.stdout

    # And a source-run sidecar recovers what the frozen one wrote.
    again = Frozen(
        source_argv(),
        "--data-dir",
        data,
        "--key-file",
        key,
        env=source_env(),
        log=tmp_path / "source.log",
    )
    try:
        assert again.wait_ready()["recovered"]["pending"] == 1
        assert again.call("pop")["id"] == "second"
        again.close_stdin()
        assert again.wait() == 0
    finally:
        again.kill()
    assert mei_dirs(private_tmp) == []


# -- stopping leaves nothing behind -------------------------------------------------------


def _check_layout(kind: str, procs: list[tuple[int, int]], tmpdir: Path) -> None:
    if kind == "onefile":
        # The bootloader and its Python child; the child unpacked into our private TMPDIR.
        assert len(procs) == 2, procs
        assert len(mei_dirs(tmpdir)) == 1, mei_dirs(tmpdir)
    else:
        assert len(procs) == 1, procs
        assert mei_dirs(tmpdir) == []


def _check_nothing_left(procs: list[tuple[int, int]], tmpdir: Path, stderr: str) -> None:
    assert wait_all_gone(procs) == [], f"left running: {procs}\n{stderr}"
    assert mei_dirs(tmpdir) == [], f"temp dir left behind\n{stderr}"


STOPS = {
    "eof": "stopping: end of input",
    "sigterm": "stopping: signal SIGTERM",
    "sigint": "stopping: signal SIGINT",
    "shutdown": "stopping: shutdown requested",
}


@needs_proc
@pytest.mark.parametrize("how", list(STOPS))
def test_stop_leaves_no_process_and_no_temp_dir(
    build: tuple[str, Path], spawn: Spawn, private_tmp: Path, how: str
) -> None:
    """stdin EOF, SIGTERM/SIGINT to the launcher only (the onefile bootloader forwards them
    to its child), a ``shutdown`` request: a clean stop (exit 0, the stop logged by the
    Python child), both processes gone, the ``_MEI*`` dir removed."""
    kind, exe = build
    sidecar = spawn(exe, "--memory")
    sidecar.wait_ready()
    procs = tree(sidecar.pid)
    _check_layout(kind, procs, private_tmp)
    assert sidecar.call("push", payload={"x": 1})["id"]
    if how == "eof":
        sidecar.close_stdin()
    elif how == "sigterm":
        os.kill(sidecar.pid, signal.SIGTERM)
    elif how == "sigint":
        os.kill(sidecar.pid, signal.SIGINT)
    else:
        assert sidecar.call("shutdown") == {}
    status = sidecar.wait()
    stderr = sidecar.stderr()
    assert status == 0, stderr
    assert STOPS[how] in stderr, stderr
    _check_nothing_left(procs, private_tmp, stderr)


@needs_proc
def test_sigterm_keeps_the_data(onefile: Path, spawn: Spawn, tmp_path: Path) -> None:
    """SIGTERM to the launcher is a clean stop: what was pushed is there on the next start."""
    data = tmp_path / "data"
    first = spawn(onefile, "--data-dir", data)
    first.wait_ready()
    for n in range(3):
        first.call("push", payload={"n": n}, id=f"item-{n}")
    os.kill(first.pid, signal.SIGTERM)
    assert first.wait() == 0, first.stderr()
    second = spawn(onefile, "--data-dir", data)
    assert second.wait_ready()["recovered"]["pending"] == 3
    assert second.call("pop")["id"] == "item-0"
    second.close_stdin()
    assert second.wait() == 0, second.stderr()


@needs_proc
def test_parent_death(build: tuple[str, Path], tmp_path: Path, private_tmp: Path) -> None:
    """The app that started the sidecar is SIGKILLed: the sidecar sees stdin EOF, stops
    cleanly (exit 0), both processes go, the ``_MEI*`` dir goes."""
    kind, exe = build
    log = tmp_path / "stderr.log"
    helper = Path(__file__).with_name("orphan.py")
    result = subprocess.run(
        [sys.executable, str(helper), str(private_tmp), str(log), str(exe), "--memory"],
        capture_output=True,
        text=True,
        timeout=3 * TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    stderr = log.read_text()
    assert '"method":"ready"' in report["ready"]
    assert len(report["processes"]) == (2 if kind == "onefile" else 1), report
    assert len(report["mei_while_running"]) == (1 if kind == "onefile" else 0), report
    assert report["launcher_status"] == 0, (report, stderr)
    assert STOPS["eof"] in stderr, stderr
    assert report["left_running"] == [], report
    assert report["mei_after"] == [], report


@needs_proc
@posix_only
def test_sigkill_of_the_launcher_takes_the_child_and_the_next_start_sweeps(
    onefile: Path, spawn: Spawn, tmp_path: Path, private_tmp: Path
) -> None:
    """SIGKILL of the onefile launcher (the pid the app started): the Python child stops
    too (PR_SET_PDEATHSIG with SIGHUP: a clean stop), so the data dir's lock is free and a restart
    works at once; the killed run's ``_MEI*`` dir is removed by the next start."""
    data = tmp_path / "data"
    first = spawn(onefile, "--data-dir", data)
    first.wait_ready()
    for n in range(3):
        first.call("push", payload={"n": n}, id=f"item-{n}")
    procs = tree(first.pid)
    assert len(procs) == 2, procs
    [killed_mei] = mei_dirs(private_tmp)
    os.kill(first.pid, signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    assert wait_all_gone(procs, timeout=10) == [], f"the child outlived its launcher: {procs}"
    assert "stopping: signal SIGHUP" in first.stderr(), "the child stopped cleanly on its own"
    assert mei_dirs(private_tmp) == [killed_mei], "nobody could remove it yet"

    second = spawn(onefile, "--data-dir", data)
    assert second.wait_ready()["recovered"]["pending"] == 3, second.stderr()
    left = mei_dirs(private_tmp)
    assert killed_mei not in left and len(left) == 1, left
    second.close_stdin()
    assert second.wait() == 0, second.stderr()
    assert mei_dirs(private_tmp) == []


@needs_proc
@posix_only
def test_the_sweep_leaves_live_and_foreign_temp_dirs_alone(
    onefile: Path, spawn: Spawn, private_tmp: Path
) -> None:
    """A start removes only stale ``_MEI*`` dirs of ours: not a running sidecar's, not one
    without our marker (another PyInstaller app's)."""
    foreign = private_tmp / "_MEIforeign"
    foreign.mkdir()
    (foreign / "sync-queue-alive.lock").write_bytes(b"")  # lockable, but not ours
    first = spawn(onefile, "--memory")
    first.wait_ready()
    live = next(name for name in mei_dirs(private_tmp) if name != foreign.name)
    second = spawn(onefile, "--memory")
    second.wait_ready()
    assert live in mei_dirs(private_tmp) and foreign.name in mei_dirs(private_tmp)
    assert len(mei_dirs(private_tmp)) == 3
    assert first.call("ping") == {"pong": True}
    for sidecar in (first, second):
        sidecar.close_stdin()
        assert sidecar.wait() == 0, sidecar.stderr()
    assert mei_dirs(private_tmp) == [foreign.name]


@needs_proc
@posix_only
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_to_the_process_group_leaves_nothing(
    onefile: Path, spawn: Spawn, private_tmp: Path, signum: int
) -> None:
    """A signal to the whole group (Ctrl-C in a terminal) reaches the Python child twice:
    directly and forwarded by its launcher. The second copy means "exit at once" (128 + n),
    unless the child was already done; either way nothing is left behind. (The plugin
    sends SIGTERM to the launcher only: one copy, a clean stop, see above.)"""
    sidecar = spawn(onefile, "--memory", process_group=True)
    sidecar.wait_ready()
    procs = tree(sidecar.pid)
    os.killpg(sidecar.pid, signum)
    status = sidecar.wait()
    stderr = sidecar.stderr()
    assert status in (0, 128 + signum), f"exit status {status}\n{stderr}"
    _check_nothing_left(procs, private_tmp, stderr)


@needs_proc
def test_cleanup_helper_sees_both_processes(onefile: Path, spawn: Spawn) -> None:
    """The checks above are only as good as ``tree``: it must find the Python child."""
    sidecar = spawn(onefile, "--memory")
    sidecar.wait_ready()
    procs = tree(sidecar.pid)
    assert len(procs) == 2
    child_pid = procs[1][0]
    cmdline = Path(f"/proc/{child_pid}/cmdline").read_bytes().split(b"\0")
    assert Path(cmdline[0].decode()).name == onefile.name
    sidecar.close_stdin()
    assert sidecar.wait() == 0
    assert alive(procs) == [] or wait_all_gone(procs) == []


def test_repository_root() -> None:
    assert (ROOT / "packaging" / "sync-queue-sidecar.spec").is_file()
