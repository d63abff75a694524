"""First thing the Python child of a onefile build does: die with its launcher, and remove the
``_MEI*`` directories that killed launchers left behind.

A onefile binary is two processes: the PyInstaller bootloader (the *launcher*, the pid the app
started) unpacks the bundle into ``$TMPDIR/_MEIxxxxxx`` and runs the Python *child* from it.
When the launcher is SIGKILLed it can neither forward the signal nor remove that directory:
without this module the child would run on, holding the data dir's lock, and 30 MB would leak
every time.

* **Die with the launcher.** Linux: ``prctl(PR_SET_PDEATHSIG, SIGHUP)``, then check that the
  parent is still the launcher (same executable), because the launcher may have died before
  the prctl. macOS: a daemon thread waits on a kqueue ``EVFILT_PROC``/``NOTE_EXIT`` for the
  parent pid (registration fails with ESRCH if it is already gone; a parent of 1 means it
  is). Windows: a daemon thread waits on a ``SYNCHRONIZE`` handle of the parent process.
  The child then gets SIGHUP (SIGTERM on Windows), a clean stop (persist, release the lock,
  exit 0) that leaves waiting long polls unanswered, so the app's calls fail with
  SidecarExited; before the server installed its handler, the default action ends it.
  The macOS and Windows paths are written to the platform APIs but only Linux is tested.
* **Mark our directory live.** The child takes an exclusive lock (``flock``; ``msvcrt`` on
  Windows) on ``sync-queue-alive.lock`` in its own ``_MEI`` dir and holds it until it exits.
  The file is created under a temporary name, locked, then renamed into place, so nobody can
  see it unlocked while the child lives.
* **Sweep.** In the directory its own ``_MEI`` dir is in, the child removes every other
  ``_MEI*`` dir that is ours (it holds ``sync-queue-onefile.marker``, which only our onefile
  build bundles; other PyInstaller apps' dirs are never touched), owned by this user, and
  stale: its lock file can be locked (no live child holds it), or it has no lock file and is
  older than :data:`EXTRACTION_GRACE_S` (a launcher killed while unpacking; a younger one may
  be a sidecar that is starting right now).

We keep PyInstaller's default ``runtime_tmpdir`` ($TMPDIR or the platform's): on POSIX the
bootloader does not expand variables in ``runtime_tmpdir``, so a directory of our own would
be one fixed path shared by every user and blind to ``TMPDIR``.

Nothing here runs from source or in a onedir build (no marker in ``sys._MEIPASS``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import sys
import threading
import time
from typing import Any

MARKER = "sync-queue-onefile.marker"
ALIVE = "sync-queue-alive.lock"
EXTRACTION_GRACE_S = 600.0
PR_SET_PDEATHSIG = 1

_held: list[Any] = []  # the alive lock's file descriptor: open for the life of the process


def start() -> None:
    """Run once, before the sidecar is imported (the earliest point of the frozen entry)."""
    meipass = getattr(sys, "_MEIPASS", None)
    if not meipass or not os.path.isfile(os.path.join(meipass, MARKER)):
        return  # from source, or onedir: no launcher, nothing unpacked
    # Each step is best effort: none of them may keep the sidecar from serving.
    for step in (
        lambda: hold_alive_lock(meipass),
        die_with_launcher,
        lambda: sweep(os.path.dirname(meipass), own=meipass),
    ):
        try:
            step()
        except Exception as exc:  # reported, then the sidecar starts anyway
            print(f"sync-queue-sidecar: onefile start-up step failed: {exc!r}", file=sys.stderr)


# -- dying with the launcher ----------------------------------------------------------------


# The launcher is gone: SIGHUP, the sidecar's clean stop for "whoever started us hung up"
# (it persists and exits 0, but leaves waiting long polls unanswered, so the app's calls fail
# with SidecarExited instead of reading `null`). Windows has no SIGHUP: SIGTERM there.
STOP_SIGNAL = getattr(signal, "SIGHUP", signal.SIGTERM)


def _stop_now() -> None:
    """The launcher is gone: stop (a clean stop once serving; before that, the signal's
    default action ends the process)."""
    signal.raise_signal(STOP_SIGNAL)


def die_with_launcher() -> None:
    if sys.platform.startswith("linux"):
        _linux_pdeathsig()
    elif sys.platform == "darwin":
        _watch_parent_kqueue(os.getppid())
    elif sys.platform == "win32":
        _watch_parent_windows(os.getppid())


def _linux_pdeathsig() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(STOP_SIGNAL), 0, 0, 0) != 0:
        print(
            f"sync-queue-sidecar: prctl(PR_SET_PDEATHSIG) failed (errno {ctypes.get_errno()}); "
            "this process will outlive a killed launcher",
            file=sys.stderr,
        )
        return
    # The launcher may have died between its fork and the prctl: then our parent is now
    # init or a subreaper, which is not running our executable.
    if not _parent_runs_our_executable():
        _stop_now()


def _parent_runs_our_executable() -> bool:
    try:
        return os.readlink(f"/proc/{os.getppid()}/exe") == os.readlink("/proc/self/exe")
    except OSError:
        return True  # /proc hidden from us: PDEATHSIG alone has to do


def _watch_parent_kqueue(ppid: int) -> None:
    import select

    if ppid == 1:  # already reparented to launchd: the launcher is gone
        _stop_now()
        return
    kq = select.kqueue()  # type: ignore[attr-defined,unused-ignore]
    event = select.kevent(  # type: ignore[attr-defined,unused-ignore]
        ppid,
        filter=select.KQ_FILTER_PROC,  # type: ignore[attr-defined,unused-ignore]
        flags=select.KQ_EV_ADD | select.KQ_EV_ONESHOT,  # type: ignore[attr-defined,unused-ignore]
        fflags=select.KQ_NOTE_EXIT,  # type: ignore[attr-defined,unused-ignore]
    )
    try:
        kq.control([event], 0)
    except ProcessLookupError:
        _stop_now()
        return

    def wait() -> None:
        while not kq.control(None, 1):
            pass
        _stop_now()

    threading.Thread(target=wait, name="launcher-watch", daemon=True).start()


def _watch_parent_windows(ppid: int) -> None:
    synchronize, infinite = 0x00100000, 0xFFFFFFFF
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
    kernel32.OpenProcess.restype = ctypes.c_void_p
    handle = kernel32.OpenProcess(synchronize, False, ppid)
    if not handle:
        _stop_now()
        return

    def wait() -> None:
        kernel32.WaitForSingleObject(ctypes.c_void_p(handle), infinite)
        _stop_now()

    threading.Thread(target=wait, name="launcher-watch", daemon=True).start()


# -- the alive lock and the sweep -----------------------------------------------------------


def _try_lock(fd: int) -> bool:
    """Take the exclusive lock on ``fd`` without waiting; False if a live process has it."""
    try:
        if os.name == "nt":
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined,unused-ignore]
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def hold_alive_lock(meipass: str) -> None:
    path = os.path.join(meipass, ALIVE)
    flags = os.O_CREAT | os.O_RDWR | getattr(os, "O_CLOEXEC", 0)
    if os.name == "nt":
        # Windows cannot rename a file that is open; the window between creating and
        # locking it in place is microseconds, against a sweeper that must find it first.
        fd = os.open(path, flags, 0o600)
        _try_lock(fd)
        _held.append(fd)
        return
    temporary = f"{path}.{os.getpid()}"
    fd = os.open(temporary, flags, 0o600)
    _held.append(fd)  # held open either way: the temporary name marks the dir live too
    if _try_lock(fd):  # nobody else can know this name yet
        os.replace(temporary, path)


def _stale(path: str) -> bool:
    """Is ``path`` (an ``_MEI`` dir of ours) left by a sidecar that no longer runs?"""
    try:
        fd = os.open(os.path.join(path, ALIVE), os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        with contextlib.suppress(OSError):
            unlocked = [n for n in os.listdir(path) if n.startswith(ALIVE + ".")]
            if unlocked:
                # A child that could not lock its file left it under its pid: live while
                # that process runs (a reused pid only keeps the dir longer).
                return not any(_pid_runs(n[len(ALIVE) + 1 :]) for n in unlocked)
            return time.time() - os.stat(path).st_mtime > EXTRACTION_GRACE_S
        return False
    except OSError:
        return False
    try:
        return _try_lock(fd)
    finally:
        os.close(fd)  # a stale dir is removed right after; no child can come back to it


def _pid_runs(pid: str) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT there; never written there
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError):
        return True  # not ours to signal, or not a pid: assume live, never delete
    return True


def sweep(tmp_root: str, own: str) -> list[str]:
    """Remove the stale ``_MEI*`` dirs of ours in ``tmp_root``; the paths removed."""
    removed: list[str] = []
    try:
        entries = list(os.scandir(tmp_root))
    except OSError:
        return removed
    uid = os.getuid() if hasattr(os, "getuid") else None
    for entry in entries:
        if not entry.name.startswith("_MEI") or entry.name == os.path.basename(own):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
            if uid is not None and entry.stat(follow_symlinks=False).st_uid != uid:
                continue
            if not os.path.isfile(os.path.join(entry.path, MARKER)):
                continue  # another PyInstaller app's, or not ours to judge
        except OSError:
            continue
        if _stale(entry.path):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
    return removed
