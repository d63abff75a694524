"""Helper for test_lifecycle: a sidecar whose parent is SIGKILLed.

    python parent_dies.py DATA_DIR SIDECAR_ARGV_JSON ENV_JSON

This process makes itself a child subreaper (Linux), then starts an *intermediate* Python
process that starts the sidecar with pipes, waits for ``ready``, gets some pushes
acknowledged, reports the sidecar's pid and then sleeps. This process SIGKILLs the
intermediate: the sidecar's stdin reaches EOF (nobody holds the write end any more) and it
must exit by itself. Being the subreaper, this process inherits the orphaned sidecar and
reaps it, so it can report its exit status. Output: one JSON line on stdout.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36

INTERMEDIATE = r"""
import json, subprocess, sys, time
argv, env = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sidecar = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
assert b'"ready"' in sidecar.stdout.readline()
for n in range(20):
    request = {"jsonrpc": "2.0", "id": n, "method": "push",
               "params": {"id": f"item-{n}", "payload": n}}
    sidecar.stdin.write(json.dumps(request).encode() + b"\n")
    sidecar.stdin.flush()
    while True:  # skip notifications (itemsAvailable) up to this push's reply
        reply = json.loads(sidecar.stdout.readline())
        if reply.get("id") == n:
            assert "result" in reply, reply
            break
print(sidecar.pid, flush=True)
time.sleep(600)
"""


def main() -> int:
    argv, env = json.loads(sys.argv[2]), json.loads(sys.argv[3])
    argv = [*argv, "--data-dir", sys.argv[1]]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(json.dumps({"error": "prctl failed"}))
        return 1
    intermediate = subprocess.Popen(
        [sys.executable, "-c", INTERMEDIATE, json.dumps(argv), json.dumps(env)],
        stdout=subprocess.PIPE,
    )
    assert intermediate.stdout is not None
    sidecar_pid = int(intermediate.stdout.readline())
    intermediate.send_signal(signal.SIGKILL)
    intermediate.wait()
    start = time.monotonic()
    # The orphan is now our child: wait for it (bounded) and report how it ended.
    status = None
    while time.monotonic() - start < 20:
        pid, raw = os.waitpid(sidecar_pid, os.WNOHANG)
        if pid:
            status = os.waitstatus_to_exitcode(raw)
            break
        time.sleep(0.01)
    if status is None:
        os.kill(sidecar_pid, signal.SIGKILL)
        os.waitpid(sidecar_pid, 0)
    print(json.dumps({"pid": sidecar_pid, "status": status, "seconds": time.monotonic() - start}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
