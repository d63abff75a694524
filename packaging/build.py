"""Build the frozen sidecar: ``sync-queue-sidecar-<target-triple>`` for Tauri's externalBin.

    .venv/bin/python packaging/build.py [--onedir] [--out DIR] [--app-dir PATH/TO/src-tauri]

Installs nothing: PyInstaller comes from the ``package`` extra (``pip install -e '.[package]'``).
Runs PyInstaller on ``packaging/sync-queue-sidecar.spec`` with this Python and writes:

* onefile (default): ``DIR/sync-queue-sidecar-<triple>[.exe]``, one self-extracting file;
  ``--app-dir`` copies it to ``<app>/binaries/`` for ``bundle.externalBin``.
* ``--onedir``: ``DIR/sync-queue-sidecar-onedir-<triple>/`` holding ``sync-queue-sidecar[.exe]``
  and ``_internal/`` (no extraction at start-up); ``--app-dir`` copies the folder to
  ``<app>/binaries/sync-queue-sidecar-onedir/`` for ``bundle.resources``.

``DIR`` defaults to ``dist/`` at the repository root. The target triple is the ``host:`` line
of ``rustc -vV``, or ``$SYNC_QUEUE_TARGET_TRIPLE``, or derived from the platform when Rust is
absent. The last line printed is the path of the result.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "packaging" / "sync-queue-sidecar.spec"
NAME = "sync-queue-sidecar"
TRIPLE_ENV = "SYNC_QUEUE_TARGET_TRIPLE"


def fallback_triple() -> str:
    """The Rust target triple of this machine, from the platform (no rustc)."""
    machine = platform.machine().lower()
    arch = {
        "x86_64": "x86_64",
        "amd64": "x86_64",
        "arm64": "aarch64",
        "aarch64": "aarch64",
        "i386": "i686",
        "i686": "i686",
        "x86": "i686",
        "armv7l": "armv7",
    }.get(machine, machine)
    if sys.platform == "darwin":
        return f"{arch}-apple-darwin"
    if sys.platform == "win32":
        # A MinGW Python reports "mingw" in its platform tag; everything else is MSVC.
        env = "gnu" if "mingw" in sysconfig.get_platform() else "msvc"
        return f"{arch}-pc-windows-{env}"
    if sys.platform.startswith("linux"):
        libc = platform.libc_ver()[0]
        env = "gnu" if libc == "glibc" else "musl"
        if arch == "armv7":
            env += "eabihf"
        return f"{arch}-unknown-linux-{env}"
    if sys.platform.startswith("freebsd"):
        return f"{arch}-unknown-freebsd"
    raise SystemExit(
        f"build.py: cannot tell the target triple of {sys.platform}/{machine}; set ${TRIPLE_ENV}"
    )


def target_triple() -> tuple[str, str]:
    """(triple, where it came from)."""
    from_env = os.environ.get(TRIPLE_ENV)
    if from_env:
        return from_env.strip(), f"${TRIPLE_ENV}"
    rustc = shutil.which("rustc")
    if rustc:
        try:
            out = subprocess.run(
                [rustc, "-vV"], capture_output=True, text=True, check=True, timeout=60
            ).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        for line in out.splitlines():
            if line.startswith("host:"):
                return line.split(":", 1)[1].strip(), "rustc -vV"
    return fallback_triple(), "platform (no rustc)"


def exe_suffix(triple: str) -> str:
    return ".exe" if "windows" in triple else ""


def human(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB ({size:,} bytes)"


def tree_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def run_pyinstaller(*, onedir: bool, name: str, distpath: Path, workpath: Path) -> None:
    if importlib.util.find_spec("PyInstaller") is None:
        raise SystemExit(
            "build.py: PyInstaller is not installed in this Python; run\n"
            f"  {sys.executable} -m pip install -e '.[package]'"
        )
    cmd = [
        sys.executable,
        "-m",
        "PyInstaller",
        "--noconfirm",
        "--clean",
        "--log-level",
        os.environ.get("PYINSTALLER_LOG_LEVEL", "WARN"),
        "--distpath",
        str(distpath),
        "--workpath",
        str(workpath),
        str(SPEC),
        "--",
        "--name",
        name,
    ]
    if onedir:
        cmd.append("--onedir")
    env = dict(os.environ)
    # Reproducible bytecode and archive order; no stray site-packages from the user.
    env.setdefault("PYTHONHASHSEED", "0")
    env.setdefault("SOURCE_DATE_EPOCH", "1700000000")
    env["PYTHONNOUSERSITE"] = "1"
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="packaging/build.py",
        description="Build the frozen sync-queue sidecar with PyInstaller.",
    )
    parser.add_argument(
        "--onedir",
        action="store_true",
        help="a folder (executable + _internal/) instead of one file: faster start-up, "
        "shipped with bundle.resources",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "dist", metavar="DIR", help="output dir (dist/)"
    )
    parser.add_argument(
        "--app-dir",
        type=Path,
        metavar="SRC_TAURI",
        help="a Tauri app's src-tauri/: copy the result into its binaries/",
    )
    args = parser.parse_args(argv)

    triple, source = target_triple()
    suffix = exe_suffix(triple)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    mode = "onedir" if args.onedir else "onefile"
    work = ROOT / "build" / "pyinstaller" / mode
    staging = ROOT / "build" / "pyinstaller" / f"dist-{mode}"
    if staging.exists():
        shutil.rmtree(staging)
    print(f"target triple: {triple} (from {source}); mode: {mode}", flush=True)

    started = time.monotonic()
    if args.onedir:
        run_pyinstaller(onedir=True, name=NAME, distpath=staging, workpath=work)
        result = out / f"{NAME}-onedir-{triple}"
        if result.exists():
            shutil.rmtree(result)
        shutil.move(str(staging / NAME), str(result))
        exe = result / f"{NAME}{suffix}"
    else:
        name = f"{NAME}-{triple}"
        run_pyinstaller(onedir=False, name=name, distpath=staging, workpath=work)
        result = out / f"{name}{suffix}"
        if result.exists():
            result.unlink()
        shutil.move(str(staging / f"{name}{suffix}"), str(result))
        exe = result
    elapsed = time.monotonic() - started
    shutil.rmtree(staging, ignore_errors=True)
    if not exe.is_file():
        raise SystemExit(f"build.py: PyInstaller did not produce {exe}")

    print(f"built in {elapsed:.0f} s: {exe}")
    print(f"size: {human(tree_size(result))}" + (" (whole folder)" if args.onedir else ""))

    if args.app_dir is not None:
        binaries = args.app_dir.resolve() / "binaries"
        binaries.mkdir(parents=True, exist_ok=True)
        if args.onedir:
            target = binaries / f"{NAME}-onedir"
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(result, target, symlinks=True)
        else:
            target = binaries / result.name
            shutil.copy2(result, target)
        print(f"copied to {target}")
    print(exe)
    return 0


if __name__ == "__main__":
    sys.exit(main())
