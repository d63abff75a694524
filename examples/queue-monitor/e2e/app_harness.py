"""What the queue monitor's end-to-end test runs on: the built app, an X server (Xvfb),
tauri-driver with Debian's WebKitWebDriver, and a look at the processes the app leaves.

Every process of one run carries ``SYNC_QUEUE_E2E_RUN=<random>`` in its environment
(tauri-driver passes its environment to WebKitWebDriver, which starts the app, which
starts the sidecar), so the checks see this run's processes and nobody else's, even
when another app on the machine runs the same sidecar binary.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from monitor_page import Monitor

EXAMPLE = Path(__file__).resolve().parent.parent
ROOT = EXAMPLE.parent.parent
OUT = EXAMPLE / "e2e" / "out"
TOOLS = Path.home() / ".cache" / "sync-queue" / "e2e-tools"
MARKER = "SYNC_QUEUE_E2E_RUN"


def app_target_dir() -> Path:
    """Where cargo builds the app: outside the clone, kept between runs."""
    default = Path.home() / ".cache" / "sync-queue" / "cargo-target-app"
    return Path(os.environ.get("SYNC_QUEUE_APP_TARGET_DIR") or default)


def sidecar_name() -> str:
    """The sidecar's file name next to the app's executable: externalBin without its folder."""
    conf = json.loads((EXAMPLE / "src-tauri" / "tauri.conf.json").read_text())
    (external_bin,) = conf["bundle"]["externalBin"]
    return Path(external_bin).name


def build_app() -> Path:
    """Build the example as its README says (setup, then a release build without bundles)."""
    OUT.mkdir(parents=True, exist_ok=True)
    log = OUT / "build.log"
    env = {**os.environ, "CARGO_TARGET_DIR": str(app_target_dir())}
    with log.open("w") as sink:
        for command in (
            ["./setup"],
            ["npm", "run", "tauri", "build", "--", "--no-bundle", "--", "--locked"],
        ):
            started = time.monotonic()
            done = subprocess.run(command, cwd=EXAMPLE, env=env, stdout=sink, stderr=sink)
            sink.write(
                f"\n== {' '.join(command)}: exit {done.returncode}, "
                f"{time.monotonic() - started:.0f} s\n"
            )
            sink.flush()
            if done.returncode != 0:
                tail = log.read_text()[-4000:]
                raise RuntimeError(f"{' '.join(command)} failed (full log: {log}):\n{tail}")
    app = app_target_dir() / "release" / "queue-monitor"
    assert app.is_file(), f"the build did not make {app}"
    return app


def find_tool(name: str, env_var: str, hint: str) -> str:
    """A tool the test cannot run without: missing is a failure, never a skip."""
    explicit = os.environ.get(env_var)
    candidates = [explicit] if explicit else [str(TOOLS / "bin" / name), shutil.which(name)]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(f"{name} not found ({env_var} or PATH): {hint}")


@contextmanager
def x_server() -> Iterator[str]:
    """A private Xvfb; yields its DISPLAY once it accepts clients."""
    xvfb = find_tool("Xvfb", "XVFB", "run scripts/install-e2e-tools (Debian package xvfb)")
    read_end, write_end = os.pipe()
    # -displayfd: Xvfb picks a free display and writes its number when it is ready.
    proc = subprocess.Popen(
        [xvfb, "-displayfd", str(write_end), "-screen", "0", "1400x960x24", "-nolisten", "tcp"],
        pass_fds=(write_end,),
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    with os.fdopen(read_end) as numbers:
        number = numbers.readline().strip()
    try:
        if not number:
            raise RuntimeError(f"Xvfb exited with {proc.wait()} before it was ready")
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tauri-driver exited with {proc.returncode}; see {OUT}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listened on port {port} within {deadline_s} s; see {OUT}")


@contextmanager
def webdriver_server(env: dict[str, str]) -> Iterator[str]:
    """tauri-driver in front of WebKitWebDriver; yields the WebDriver URL."""
    driver = find_tool("tauri-driver", "TAURI_DRIVER", "run scripts/install-e2e-tools")
    native = find_tool(
        "WebKitWebDriver", "WEBKIT_WEBDRIVER", "run scripts/install-e2e-tools (webkit2gtk-driver)"
    )
    port, native_port = _free_port(), _free_port()
    command = [driver, "--port", str(port), "--native-port", str(native_port)]
    OUT.mkdir(parents=True, exist_ok=True)
    with (OUT / "tauri-driver.log").open("wb") as log:
        # Its own process group, so that WebKitWebDriver goes with it at the end.
        proc = subprocess.Popen(
            [*command, "--native-driver", native],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            # tauri-driver accepts before the WebKitWebDriver it started does, and drops
            # a request it cannot pass on: wait for both.
            _wait_for_port(port, proc, 30)
            _wait_for_port(native_port, proc, 30)
            yield f"http://127.0.0.1:{port}"
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=10)


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    name: str  # the executable's file name


def run_processes(marker: str) -> list[Proc]:
    """The live processes of this run (by the marker in their environment)."""
    tag = f"{MARKER}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if tag not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            exe = os.readlink(entry / "exe")
            # The field after the parenthesised command name: state, then ppid.
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # gone meanwhile, or a zombie
        found.append(Proc(int(entry.name), ppid, Path(exe.removesuffix(" (deleted)")).name))
    return found


def wait_until(condition: Callable[[], object], what: str, timeout_s: float = 30.0) -> None:
    """Poll ``condition()`` until it is true; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


class Run:
    """One run's processes and private directories (queue data, TMPDIR for ``_MEI*``)."""

    def __init__(self, base: Path) -> None:
        self.marker = uuid.uuid4().hex
        self.tmp = base / "tmp"
        dirs = {n: base / n for n in ("data", "config", "cache", "runtime")}
        for d in [self.tmp, *dirs.values()]:
            d.mkdir(mode=0o700)
        self.env = {k: v for k, v in os.environ.items() if k != "WAYLAND_DISPLAY"}
        self.env |= {
            MARKER: self.marker,
            "TMPDIR": str(self.tmp),
            "XDG_DATA_HOME": str(dirs["data"]),  # the queue: <data>/<identifier>/sync-queue
            "XDG_CONFIG_HOME": str(dirs["config"]),
            "XDG_CACHE_HOME": str(dirs["cache"]),
            "XDG_RUNTIME_DIR": str(dirs["runtime"]),
            "GDK_BACKEND": "x11",
            # Xvfb has no GPU: WebKit's software path, without the DMA-BUF renderer.
            "WEBKIT_DISABLE_DMABUF_RENDERER": "1",
            "LIBGL_ALWAYS_SOFTWARE": "1",
        }

    def processes(self, name: str) -> list[Proc]:
        return [p for p in run_processes(self.marker) if p.name == name]

    def mei_dirs(self) -> list[Path]:
        return sorted(self.tmp.glob("_MEI*"))


@contextmanager
def session(ui: Monitor, name: str) -> Iterator[Monitor]:
    """End the WebDriver session; on failure, first keep a screenshot in e2e/out/."""
    try:
        yield ui
    except BaseException:
        with suppress(Exception):
            ui.screenshot(OUT / f"failed-{name}.png")
        raise
    finally:
        ui.end_session()
