"""Parent death, acted out: ``python orphan.py TMPDIR LOG BINARY ARGS...`` prints one JSON line.

Three generations. This script (the *reaper*) makes itself the child subreaper
(``prctl(PR_SET_CHILD_SUBREAPER)``, Linux), starts a *parent* that starts the sidecar with
piped stdio (as a Tauri app does) and reports the sidecar's pid once ``ready`` came. The
reaper notes the sidecar's process tree and ``_MEI*`` dirs, SIGKILLs the parent (an app
crash: nothing is closed politely, the kernel just closes the parent's pipe ends), and then,
being the subreaper, inherits the orphaned sidecar launcher and can ``waitpid`` it for its
exit status. Run as its own process so that pytest never becomes a subreaper.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from proc import alive, mei_dirs, tree, wait_all_gone

PR_SET_CHILD_SUBREAPER = 36

PARENT = r"""
import json, subprocess, sys, time
log = open(sys.argv[1], "wb")
child = subprocess.Popen(sys.argv[2:], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
ready = child.stdout.readline()
print(json.dumps({"pid": child.pid, "ready": ready.decode()}), flush=True)
time.sleep(3600)
"""


def main() -> int:
    tmpdir, log, *argv = sys.argv[1:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(json.dumps({"error": f"prctl: errno {ctypes.get_errno()}"}))
        return 1
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNC_QUEUE_", "PYTHON"))}
    env.update(TMPDIR=tmpdir, TMP=tmpdir, TEMP=tmpdir)
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, log, *argv], stdout=subprocess.PIPE, env=env
    )
    assert parent.stdout is not None
    started = json.loads(parent.stdout.readline())
    launcher = started["pid"]
    procs = tree(launcher)
    mei_running = mei_dirs(Path(tmpdir))

    parent.send_signal(signal.SIGKILL)
    parent.wait()
    killed = time.monotonic()

    status = None
    while time.monotonic() - killed < 30:
        pid, raw = os.waitpid(launcher, os.WNOHANG)
        if pid == launcher:
            status = os.waitstatus_to_exitcode(raw)
            break
        time.sleep(0.02)
    left = wait_all_gone(procs, timeout=5)
    for pid, _ in alive(procs):  # do not leave them to the next test
        os.kill(pid, signal.SIGKILL)
    print(
        json.dumps(
            {
                "ready": started["ready"],
                "processes": procs,
                "mei_while_running": mei_running,
                "launcher_status": status,
                "seconds_to_exit": round(time.monotonic() - killed, 3),
                "left_running": left,
                "mei_after": mei_dirs(Path(tmpdir)),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
