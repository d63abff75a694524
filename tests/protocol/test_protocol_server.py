"""The stdio server, through a real subprocess running the fake method table."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .rpc_checks import check_output, line, notification, request

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 30


class Sidecar:
    """``python -m tests.protocol.fake_sidecar`` with pipes on all three streams."""

    def __init__(self, *args: str, stdin: Any = subprocess.PIPE) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.protocol.fake_sidecar", *args],
            cwd=ROOT,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
        )
        self.stderr_lines: list[bytes] = []
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.stderr_lines.append(raw)

    @property
    def stderr(self) -> bytes:
        return b"".join(self.stderr_lines)

    def send(self, *messages: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"".join(line(m) for m in messages))

    def send_raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)

    def read_message(self) -> Any:
        assert self.proc.stdout is not None
        raw = self.proc.stdout.readline()
        assert raw, f"stdout closed; stderr: {self.stderr.decode(errors='replace')}"
        return check_output(raw)[0]

    def call(self, method: str, request_id: Any = 1, **params: Any) -> Any:
        self.send(request(method, request_id, **params))
        return self.read_message()

    def wait_for_stderr(self, text: bytes) -> None:
        deadline = time.monotonic() + TIMEOUT
        while text not in self.stderr:
            assert time.monotonic() < deadline, self.stderr
            time.sleep(0.01)

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def finish(self) -> tuple[int, bytes]:
        """Wait for the exit; the status and what was left on stdout (all checked)."""
        assert self.proc.stdout is not None
        rest = self.proc.stdout.read()
        status = self.proc.wait(TIMEOUT)
        self._stderr_reader.join(TIMEOUT)
        check_output(rest)
        return status, rest

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def sidecar() -> Iterator[Sidecar]:
    process = Sidecar()
    yield process
    process.kill()


def test_ping_and_stdin_eof_exits_zero(sidecar: Sidecar) -> None:
    assert sidecar.call("ping", 1) == {"jsonrpc": "2.0", "id": 1, "result": {"pong": True}}
    sidecar.close_stdin()
    status, rest = sidecar.finish()
    assert (status, rest) == (0, b"")


def test_ready_notification_comes_first() -> None:
    process = Sidecar("--ready")
    try:
        assert process.read_message() == {
            "jsonrpc": "2.0",
            "method": "ready",
            "params": {"protocol": 1},
        }
        assert process.call("ping")["result"] == {"pong": True}
    finally:
        process.kill()


def test_pipelining_10000_requests_each_get_exactly_one_reply(sidecar: Sidecar) -> None:
    count = 10_000
    batch = b"".join(
        line(request("push" if i % 2 else "ping", i, **({"item": i} if i % 2 else {})))
        for i in range(count)
    )
    writer = threading.Thread(target=sidecar.send_raw, args=(batch,))
    writer.start()
    seen: list[Any] = []
    while len(seen) < count:
        seen.append(sidecar.read_message()["id"])
    writer.join()
    assert sorted(seen) == list(range(count))
    assert sidecar.call("state", "s")["result"]["items"] == count // 2
    sidecar.close_stdin()
    assert sidecar.finish() == (0, b"")


def test_eof_answers_waiting_long_polls_at_once(sidecar: Sidecar) -> None:
    sidecar.send(request("pop", "w", timeoutMs=60_000), request("ping", 2))
    assert sidecar.read_message()["id"] == 2
    started = time.monotonic()
    sidecar.close_stdin()
    status, rest = sidecar.finish()
    assert status == 0
    assert check_output(rest) == [{"jsonrpc": "2.0", "id": "w", "result": None}]
    assert time.monotonic() - started < 10


def test_long_poll_is_answered_by_a_later_push(sidecar: Sidecar) -> None:
    sidecar.send(request("pop", "w", timeoutMs=60_000))
    assert sidecar.call("ping", 2)["id"] == 2  # other requests flow past the waiting pop
    sidecar.send(request("push", 3, item="job"))
    replies = {m["id"]: m["result"] for m in (sidecar.read_message(), sidecar.read_message())}
    assert replies == {"w": "job", 3: {}}


def test_long_poll_times_out(sidecar: Sidecar) -> None:
    started = time.monotonic()
    assert sidecar.call("pop", "w", timeoutMs=200) == {"jsonrpc": "2.0", "id": "w", "result": None}
    assert 0.15 < time.monotonic() - started < 5


def test_delayed_item_reaches_a_waiter_through_tick(sidecar: Sidecar) -> None:
    sidecar.send(request("pop", "w", timeoutMs=10_000), request("push", 1, item="x", delayMs=200))
    assert sidecar.read_message() == {"jsonrpc": "2.0", "id": 1, "result": {}}
    assert sidecar.read_message() == {"jsonrpc": "2.0", "id": "w", "result": "x"}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_with_status_zero(sidecar: Sidecar, signum: int) -> None:
    sidecar.send(request("pop", "w", timeoutMs=60_000))
    assert sidecar.call("ping", 1)["id"] == 1
    sidecar.proc.send_signal(signum)
    status, rest = sidecar.finish()
    assert status == 0
    assert check_output(rest) == [{"jsonrpc": "2.0", "id": "w", "result": None}]


def test_shutdown_request(sidecar: Sidecar) -> None:
    sidecar.send(
        request("pop", "w", timeoutMs=60_000),
        request("shutdown", 1),
        request("ping", 2),
        notification("ping"),
    )
    status, rest = sidecar.finish()  # exits without waiting for stdin to close
    assert status == 0
    out = check_output(rest)
    assert out[:2] == [
        {"jsonrpc": "2.0", "id": "w", "result": None},
        {"jsonrpc": "2.0", "id": 1, "result": {}},
    ]
    assert out[2]["id"] == 2 and out[2]["error"]["data"]["kind"] == "ShuttingDown"
    assert len(out) == 3


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (signal.SIGTERM, signal.SIGTERM),
        (signal.SIGTERM, signal.SIGINT),
        (signal.SIGINT, signal.SIGINT),
    ],
)
def test_second_signal_exits_at_once(first: int, second: int) -> None:
    process = Sidecar("--close-sleep", "60")
    try:
        assert process.call("ping")["id"] == 1
        process.proc.send_signal(first)
        process.wait_for_stderr(b"stopping: signal")
        time.sleep(0.2)  # inside the slow close() by now
        started = time.monotonic()
        process.proc.send_signal(second)
        assert process.proc.wait(TIMEOUT) == 128 + second
        assert time.monotonic() - started < 10
    finally:
        process.kill()


def test_stdout_closed_by_the_parent_is_treated_as_eof(sidecar: Sidecar) -> None:
    assert sidecar.proc.stdout is not None
    sidecar.proc.stdout.close()
    sidecar.send(request("ping", 1))
    assert sidecar.proc.wait(TIMEOUT) == 0
    assert b"stopping: stdout closed" in sidecar.stderr


def test_stray_print_goes_to_stderr_not_stdout(sidecar: Sidecar) -> None:
    sidecar.send(request("print", 1), request("raise", 2, kind="bug"), request("ping", 3))
    assert [sidecar.read_message()["id"] for _ in range(3)] == [1, 2, 3]
    sidecar.close_stdin()
    status, rest = sidecar.finish()
    assert (status, rest) == (0, b"")
    assert b"a stray print that must not reach the protocol stream" in sidecar.stderr
    assert b"RuntimeError: a bug with a secret detail" in sidecar.stderr


def test_bad_input_keeps_the_sidecar_serving(sidecar: Sidecar) -> None:
    sidecar.send_raw(b"{oops\n\xff\xfe\n[]\n" + b"[" * 600 + b"]" * 600 + b"\n\r\n\n")
    codes = [sidecar.read_message()["error"]["code"] for _ in range(4)]
    assert codes == [-32700, -32700, -32600, -32600]
    assert sidecar.call("ping", 9)["id"] == 9


def vm_rss_kib(pid: int) -> int:
    for raw in Path(f"/proc/{pid}/status").read_text().splitlines():
        if raw.startswith("VmRSS:"):
            return int(raw.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_a_100_mb_line_keeps_memory_bounded_and_the_next_request_works(sidecar: Sidecar) -> None:
    assert sidecar.call("ping", 0)["id"] == 0
    baseline = vm_rss_kib(sidecar.proc.pid)
    peak = baseline
    first_reply: list[Any] = []
    reader = threading.Thread(target=lambda: first_reply.append(sidecar.read_message()))
    reader.start()
    chunk = b"x" * (1 << 20)
    sidecar.send_raw(b'{"jsonrpc":"2.0","id":1,"method":"echo","params":{"s":"')
    sent_when_answered = None
    for megabyte in range(100):
        sidecar.send_raw(chunk)
        if megabyte % 5 == 0:
            peak = max(peak, vm_rss_kib(sidecar.proc.pid))
        if sent_when_answered is None and first_reply:
            sent_when_answered = megabyte
    sidecar.send_raw(b'"}}\n')
    reader.join(TIMEOUT)
    peak = max(peak, vm_rss_kib(sidecar.proc.pid))
    assert first_reply[0]["id"] is None
    assert first_reply[0]["error"]["data"]["kind"] == "MessageTooLarge"
    # answered while the line was still streaming, soon after the 16 MiB limit
    assert sent_when_answered is not None and sent_when_answered < 60
    assert sidecar.call("ping", 2) == {"jsonrpc": "2.0", "id": 2, "result": {"pong": True}}
    growth_mib = (peak - baseline) / 1024
    assert growth_mib < 40, f"RSS grew by {growth_mib:.0f} MiB"


def test_regular_file_as_stdin(tmp_path: Path) -> None:
    # epoll refuses regular files: the server falls back to a reader thread.
    source = tmp_path / "requests.ndjson"
    source.write_bytes(
        b"".join(line(request("ping", i)) for i in range(1000))
        + line(request("echo", "last", a=1))[:-1]
    )
    with source.open("rb") as stdin:
        process = Sidecar(stdin=stdin)
        status, rest = process.finish()
    assert status == 0
    out = check_output(rest)
    assert [m["id"] for m in out] == [*range(1000), "last"]


def test_the_output_is_exactly_protocol_lines_even_with_everything_going_wrong(
    sidecar: Sidecar,
) -> None:
    sidecar.send_raw(
        b"".join(
            [
                line(request("print", 1)),
                line(request("raise", 2, kind="bug")),
                line([request("print", 3), notification("print")]),
                b"garbage\n",
                line(request("nope", 4)),
            ]
        )
    )
    sidecar.close_stdin()
    status, rest = sidecar.finish()
    assert status == 0
    assert len(check_output(rest)) == 5
    assert all(raw.startswith((b"{", b"[")) for raw in rest.splitlines())
