"""Lifecycle (docs/protocol.md §2, the cli's exit codes): every way of stopping ends in exit 0
with the data intact and no process left behind; a second signal exits at once; Locked,
a bad config and a wrong key exit with their codes and touch nothing."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import Spawn
from .harness import (
    ROOT,
    TIMEOUT,
    SidecarProcess,
    dir_snapshot,
    line,
    list_all,
    process_gone,
    request,
    sidecar_argv,
    sidecar_env,
    write_config,
)

pytestmark = pytest.mark.process  # about the process: see conftest.py

HERE = Path(__file__).resolve().parent


def fill(sidecar: SidecarProcess) -> None:
    """Some state to find again: pending, processing, completed and a pause."""
    sidecar.result("pushBatch", items=[{"id": f"i{n}", "payload": {"n": n}} for n in range(10)])
    done = sidecar.result("pop")
    sidecar.result("complete", id=done["id"], leaseId=done["leaseId"])
    sidecar.result("pop")  # left processing: back to pending after the restart


def check_intact(sidecar: SidecarProcess) -> None:
    items = {item["id"]: item for item in list_all(sidecar)}
    assert sorted(items) == sorted(f"i{n}" for n in range(10))
    assert items["i0"]["status"] == "completed"
    assert items["i1"]["status"] == "pending" and items["i1"]["attempts"] == 1
    assert all(items[f"i{n}"]["payload"] == {"n": n} for n in range(10))


@pytest.mark.parametrize("how", ["eof", "sigterm", "sigint", "sighup", "shutdown"])
def test_stop_exits_zero_with_data_intact(spawn: Spawn, tmp_path: Path, how: str) -> None:
    data = tmp_path / "data"
    sidecar = spawn("--data-dir", data)
    fill(sidecar)
    if how == "eof":
        sidecar.close_stdin()
    elif how == "sigterm":
        sidecar.signal(signal.SIGTERM)
    elif how == "sigint":
        sidecar.signal(signal.SIGINT)
    elif how == "sighup":
        sidecar.signal(signal.SIGHUP)
    else:
        assert sidecar.call("shutdown")["result"] == {}
    assert sidecar.wait_exit() == 0, sidecar.stderr
    assert process_gone(sidecar.pid)
    assert "Traceback" not in sidecar.stderr
    again = spawn("--data-dir", data)
    check_intact(again)
    assert again.shutdown() == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_waiting_pop_is_answered_on_sigterm_and_not_on_sighup(
    spawn: Spawn, tmp_path: Path, signum: int
) -> None:
    """SIGTERM: waiting long polls get their empty answer (PROTOCOL §7). SIGHUP (the parent
    hung up; a onefile child gets it when its launcher dies): no answer, so a client that
    is still there fails the call as "the sidecar went away" instead of reading "no item"."""
    sidecar = spawn("--data-dir", tmp_path / "data")
    sidecar.send(request("pop", "waiting", {"timeoutMs": 600_000}))
    assert sidecar.result("ping") == {"pong": True}  # read after the pop, which now waits
    sidecar.signal(signum)
    assert sidecar.wait_exit() == 0, sidecar.stderr
    with sidecar._cond:
        replies = sidecar.responses.get(("str", "waiting"), [])
    if signum == signal.SIGTERM:
        assert [r.get("result", r) for r in replies] == [None]
    else:
        assert replies == []


def test_signal_while_requests_stream_in(spawn: Spawn, tmp_path: Path) -> None:
    """Everything answered before the exit was applied; the exit is still 0."""
    data = tmp_path / "data"
    sidecar = spawn("--data-dir", data)
    lines = b"".join(
        b'{"jsonrpc":"2.0","id":%d,"method":"push","params":{"id":"s%d","payload":1}}\n' % (n, n)
        for n in range(20_000)
    )
    try:
        sidecar.send_raw(lines[: len(lines) // 2])
        sidecar.wait_lines(100)
        sidecar.signal(signal.SIGTERM)
        sidecar.send_raw(lines[len(lines) // 2 :])
    except BrokenPipeError:
        pass
    assert sidecar.wait_exit() == 0
    acked = {n for n in range(20_000) if sidecar.has_reply(n)}
    assert acked
    again = spawn("--data-dir", data)
    present = {item["id"] for item in list_all(again)}
    assert {f"s{n}" for n in acked} <= present


def test_parent_that_dies_takes_the_sidecar_with_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = sidecar_env()
    out = subprocess.run(
        [
            sys.executable,
            str(HERE / "parent_dies.py"),
            str(data),
            json.dumps(sidecar_argv()),
            json.dumps(env),
        ],
        capture_output=True,
        timeout=60,
        check=True,
    )
    report = json.loads(out.stdout.splitlines()[-1])
    assert report["status"] == 0, (report, out.stderr.decode(errors="replace")[-2000:])
    assert process_gone(report["pid"])
    again = SidecarProcess("--data-dir", data)
    try:
        again.wait_ready()
        assert {item["id"] for item in list_all(again)} == {f"item-{n}" for n in range(20)}
        assert again.shutdown() == 0
    finally:
        again.kill()


def big_queue(spawn: Spawn, tmp_path: Path, count: int, **options: object) -> SidecarProcess:
    config = write_config(tmp_path / "c.json", max_capacity=1_000_000, **options)
    sidecar = spawn("--data-dir", tmp_path / "data", "--config", config)
    for start in range(0, count, 8000):
        items = [
            {"payload": {"blob": os.urandom(600).hex()}, "id": f"{n}"}
            for n in range(start, min(count, start + 8000))
        ]
        sidecar.result("pushBatch", items=items)
    return sidecar


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_second_signal_while_closing_exits_at_once(
    spawn: Spawn, tmp_path: Path, signum: int
) -> None:
    """A second signal while the sidecar is stopping exits with 128 + n.

    In "snapshot" durability, stopping writes a snapshot of the whole queue, which keeps
    the sidecar busy for a while with this much data; the second signal comes as soon as
    the sidecar logs that the first began the stop, inside that snapshot. (A fixed 250 ms
    wait was not: on an idle machine the close could end first, and a frozen build's
    launcher, cleaning up after its child's exit 0, then died of the second signal.)
    """
    sidecar = big_queue(spawn, tmp_path, 32_000, durability="snapshot")
    sidecar.signal(signum)
    deadline = time.monotonic() + 10
    while "stopping: signal" not in sidecar.stderr:
        assert time.monotonic() < deadline, sidecar.stderr[-2000:]
        time.sleep(0.002)
    sidecar.signal(signum)
    status = sidecar.wait_exit()
    assert status == 128 + signum, (status, sidecar.stderr[-2000:])
    # Stopped mid-snapshot: the data directory still opens (the last complete state).
    again = spawn("--data-dir", tmp_path / "data", "--config", tmp_path / "c.json")
    assert again.result("stats")["currentSize"] in (0, 32_000)


def _read_lines_until(fd: int, pending: bytearray, marker: bytes) -> None:
    """Read stdout (raw, no read-ahead buffer) until a line containing ``marker`` came."""
    while True:
        lines = bytes(pending).split(b"\n")
        if any(marker in one for one in lines[:-1]):
            del pending[: bytes(pending).rindex(b"\n") + 1]
            return
        ready, _, _ = select.select([fd], [], [], TIMEOUT)
        assert ready, f"no {marker!r} within {TIMEOUT} s"
        chunk = os.read(fd, 1 << 16)
        assert chunk, f"stdout closed before {marker!r}"
        pending += chunk


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_second_signal_after_close_still_exits_128_plus_n(tmp_path: Path, signum: int) -> None:
    """A second signal after ``close()``, while the last replies are being written: exit
    128 + n at once, and everything was persisted before.

    Slow by construction, not by luck: 3000 long polls wait on an empty queue. The stop
    answers them with their empty result in the one write that follows ``close()``, about
    130 KB, and this test does not read stdout then: the write blocks in the full pipe (its
    size set to one page where Linux allows it) until the second signal ends the process.
    The first byte of that write in the pipe says ``close()`` has returned.
    """
    data = tmp_path / "data"
    read_fd, write_fd = os.pipe()
    with contextlib.suppress(AttributeError, OSError):
        fcntl.fcntl(read_fd, fcntl.F_SETPIPE_SZ, 4096)  # type: ignore[attr-defined,unused-ignore]
    log = (tmp_path / "stderr.log").open("wb")
    proc = subprocess.Popen(
        [*sidecar_argv(), "--data-dir", str(data)],
        cwd=ROOT,
        env=sidecar_env(),
        stdin=subprocess.PIPE,
        stdout=write_fd,
        stderr=log,
    )
    os.close(write_fd)
    try:
        assert proc.stdin is not None
        pending = bytearray()
        _read_lines_until(read_fd, pending, b'"method":"ready"')
        polls = [request("pop", f"p{n}", {"timeoutMs": 600_000}) for n in range(3000)]
        messages = [request("push", "kept", {"id": "kept", "payload": 1}), *polls]
        proc.stdin.write(b"".join(line(m) for m in [*messages, request("ping", "sync")]))
        proc.stdin.flush()
        _read_lines_until(read_fd, pending, b'"id":"sync"')  # all 3000 polls are waiting
        assert not pending
        proc.send_signal(signum)
        readable, _, _ = select.select([read_fd], [], [], TIMEOUT)
        assert readable, "the last replies never came"
        assert proc.poll() is None, "the write of the last replies cannot have finished"
        proc.send_signal(signum)
        status = proc.wait(TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT)
        os.close(read_fd)
        log.close()
    stderr = (tmp_path / "stderr.log").read_text(errors="replace")
    assert status == 128 + signum, (status, stderr[-2000:])
    assert "Traceback" not in stderr, stderr[-2000:]
    again = SidecarProcess("--data-dir", data)
    try:
        again.wait_ready()
        assert [item["id"] for item in list_all(again)] == ["kept"], "closed before the write"
        assert again.shutdown() == 0
    finally:
        again.kill()


def test_second_sidecar_on_the_same_dir_is_locked(spawn: Spawn, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = spawn("--data-dir", data)
    first.result("push", id="a", payload=1)
    before = dir_snapshot(data)
    second = spawn("--data-dir", data, ready=False)
    assert second.wait_exit() == 3
    assert "Locked" in second.stderr
    assert second.lines == [], "nothing on stdout"
    assert dir_snapshot(data) == before, "the second one touched nothing"
    # The first one is unaffected.
    assert first.result("get", id="a")["payload"] == 1
    first.result("push", id="b", payload=2)
    assert first.shutdown() == 0


@pytest.mark.parametrize(
    "config",
    [
        b"{not json",
        b"[1, 2]",
        b'{"max_capacity": 0}',
        b'{"durability": "sometimes"}',
        b'{"no_such_option": 1}',
        b'{"batch_size": "ten"}',
    ],
)
def test_bad_config_exits_2(spawn: Spawn, tmp_path: Path, config: bytes) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(config)
    sidecar = spawn("--data-dir", tmp_path / "data", "--config", path, ready=False)
    assert sidecar.wait_exit() == 2
    assert sidecar.lines == []
    assert sidecar.stderr.strip(), "a message says what is wrong"
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


@pytest.mark.parametrize(
    "args",
    [
        ["--no-such-flag"],
        ["--memory", "--data-dir", "x"],
        ["--config", "/nonexistent/config.json", "--memory"],
        ["--key-file", "/nonexistent/key", "--memory"],
    ],
)
def test_bad_command_line_exits_2(spawn: Spawn, args: list[str]) -> None:
    sidecar = spawn(*args, ready=False)
    assert sidecar.wait_exit() == 2
    assert sidecar.lines == []


def test_bad_key_exits_2_and_never_shows_the_key(spawn: Spawn, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(b"c2VjcmV0LWJ1dC10b28tc2hvcnQ=")  # base64, but 20 bytes
    sidecar = spawn("--data-dir", tmp_path / "d", "--key-file", key_file, ready=False)
    assert sidecar.wait_exit() == 2
    assert "c2VjcmV0" not in sidecar.stderr and "secret" not in sidecar.stderr


def encrypted_dir(spawn: Spawn, tmp_path: Path, key: bytes) -> Path:
    data = tmp_path / "data"
    key_file = tmp_path / "key"
    key_file.write_bytes(base64.b64encode(key))
    sidecar = spawn("--data-dir", data, "--key-file", key_file)
    sidecar.result(
        "pushBatch", items=[{"payload": "secret payload", "id": f"e{n}"} for n in range(5)]
    )
    assert sidecar.shutdown() == 0
    return data


def test_wrong_key_exits_4_and_changes_nothing(spawn: Spawn, tmp_path: Path) -> None:
    key = os.urandom(32)
    data = encrypted_dir(spawn, tmp_path, key)
    before = dir_snapshot(data)
    assert b"secret payload" not in b"".join(before.values()), "encrypted at rest"
    wrong = tmp_path / "wrong"
    wrong.write_bytes(os.urandom(32))  # raw 32 bytes
    sidecar = spawn("--data-dir", data, "--key-file", wrong, ready=False)
    assert sidecar.wait_exit() == 4
    assert "EncryptionError" in sidecar.stderr
    assert wrong.read_bytes().hex() not in sidecar.stderr
    assert sidecar.lines == []
    assert dir_snapshot(data) == before, "files byte-for-byte unchanged"
    # Without a key: also refused, also nothing changed.
    no_key = spawn("--data-dir", data, ready=False)
    assert no_key.wait_exit() == 4
    assert dir_snapshot(data) == before
    # The key from the environment works, and the data is all there.
    right = spawn("--data-dir", data, env={"SYNC_QUEUE_KEY": base64.b64encode(key).decode()})
    assert len(list_all(right)) == 5
    assert right.result("get", id="e0")["payload"] == "secret payload"


def test_key_on_unencrypted_data_exits_4_and_changes_nothing(spawn: Spawn, tmp_path: Path) -> None:
    data = tmp_path / "data"
    plain = spawn("--data-dir", data)
    plain.result("push", payload=1)
    assert plain.shutdown() == 0
    before = dir_snapshot(data)
    sidecar = spawn(
        "--data-dir",
        data,
        ready=False,
        env={"SYNC_QUEUE_KEY": base64.b64encode(os.urandom(32)).decode()},
    )
    assert sidecar.wait_exit() == 4
    assert dir_snapshot(data) == before


def test_persistence_error_goes_fail_stop(spawn: Spawn, tmp_path: Path) -> None:
    """A write that fails (here: the file size limit, EFBIG) is PersistenceError for that
    request, then the sidecar stays up, answers reads, refuses changes, and says why."""
    import resource

    data = tmp_path / "data"
    limit = 256 * 1024
    sidecar = spawn("--data-dir", data)
    # Set once it runs (a one-file frozen binary must first unpack itself). Python ignores
    # SIGXFSZ, so a write past the limit fails with EFBIG.
    resource.prlimit(sidecar.server_pid, resource.RLIMIT_FSIZE, (limit, limit))
    sidecar.result("push", id="small", payload=1)
    error = sidecar.error("push", payload=os.urandom(2 * limit).hex())  # incompressible
    assert error["code"] == -32006 and error["data"]["kind"] == "PersistenceError", error
    health = sidecar.result("health")
    assert health["healthy"] is False and health["reason"]
    assert sidecar.result("get", id="small")["payload"] == 1, "reads still answered"
    refused = sidecar.error("push", payload=2)
    assert refused["code"] == -32006
    assert sidecar.error("pop")["code"] == -32006
    assert sidecar.result("ping") == {"pong": True}
    sidecar.close_stdin()
    assert sidecar.wait_exit() in (0, 1)  # (0 today: everything acknowledged is on disk)
    # Restarted (without the limit), it recovers what was acknowledged, and nothing else.
    again = spawn("--data-dir", data)
    assert [item["id"] for item in list_all(again)] == ["small"]
