"""Build the frozen sidecar: ``sync-queue-sidecar-<target-triple>`` for Tauri's externalBin.

    .venv/bin/python packaging/build.py [--onedir] [--out DIR] [--app-dir PATH/TO/src-tauri]
                                        [--name NAME]

Installs nothing: PyInstaller comes from the ``package`` extra (``pip install -e '.[package]'``).
Runs PyInstaller on ``packaging/sync-queue-sidecar.spec`` with this Python and writes:

* onefile (default): ``DIR/NAME-<triple>[.exe]``, one self-extracting file; ``--app-dir``
  copies it to ``<app>/binaries/`` for ``bundle.externalBin``.
* ``--onedir``: ``DIR/NAME-onedir-<triple>/`` holding ``NAME[.exe]`` and ``_internal/`` (no
  extraction at start-up); ``--app-dir`` copies the folder to ``<app>/binaries/NAME-onedir/``
  for ``bundle.resources``.

``NAME`` is ``sync-queue-sidecar`` unless ``--name`` says otherwise. An app should give its
onefile a name of its own (``--name my-app-sync-queue``): a ``.deb`` installs every
``externalBin`` as ``/usr/bin/<name>``, where two apps' ``sync-queue-sidecar`` would clash.

``DIR`` defaults to ``dist/`` at the repository root. The target triple is the ``host:`` line
of ``rustc -vV``, or ``$SYNC_QUEUE_TARGET_TRIPLE``, or derived from the platform when Rust is
absent. The last line printed is the path of the result.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import re
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
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
    parser.add_argument(
        "--name",
        default=NAME,
        help=f"base name of the executable (default {NAME}); give each app its own, "
        "e.g. my-app-sync-queue, because a .deb installs an externalBin as /usr/bin/NAME",
    )
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", args.name):
        parser.error(f"--name {args.name!r}: use letters, digits, '.', '_' and '-' only")
    return args


def build(*, onedir: bool, name: str, triple: str, out: Path) -> tuple[Path, Path]:
    """Runs PyInstaller; returns (the result in ``out``, its executable)."""
    mode = "onedir" if onedir else "onefile"
    work = ROOT / "build" / "pyinstaller" / mode
    staging = ROOT / "build" / "pyinstaller" / f"dist-{mode}"
    if staging.exists():
        shutil.rmtree(staging)
    suffix = exe_suffix(triple)
    if onedir:
        run_pyinstaller(onedir=True, name=name, distpath=staging, workpath=work)
        result = out / f"{name}-onedir-{triple}"
        if result.exists():
            shutil.rmtree(result)
        shutil.move(str(staging / name), str(result))
        exe = result / f"{name}{suffix}"
    else:
        run_pyinstaller(onedir=False, name=f"{name}-{triple}", distpath=staging, workpath=work)
        result = out / f"{name}-{triple}{suffix}"
        if result.exists():
            result.unlink()
        shutil.move(str(staging / result.name), str(result))
        exe = result
    shutil.rmtree(staging, ignore_errors=True)
    if not exe.is_file():
        raise SystemExit(f"build.py: PyInstaller did not produce {exe}")
    return result, exe


def copy_into_app(result: Path, *, app_dir: Path, name: str, onedir: bool) -> Path:
    """Copies the build into ``<app_dir>/binaries/``: the onefile under its own name
    (``externalBin``), the onedir folder as ``NAME-onedir/`` (``resources``)."""
    binaries = app_dir.resolve() / "binaries"
    binaries.mkdir(parents=True, exist_ok=True)
    if onedir:
        target = binaries / f"{name}-onedir"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(result, target, symlinks=True)
    else:
        target = binaries / result.name
        shutil.copy2(result, target)
    return target


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    triple, source = target_triple()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    mode = "onedir" if args.onedir else "onefile"
    print(f"target triple: {triple} (from {source}); mode: {mode}", flush=True)

    started = time.monotonic()
    result, exe = build(onedir=args.onedir, name=args.name, triple=triple, out=out)
    print(f"built in {time.monotonic() - started:.0f} s: {exe}")
    print(f"size: {human(tree_size(result))}" + (" (whole folder)" if args.onedir else ""))

    if args.app_dir is not None:
        target = copy_into_app(result, app_dir=args.app_dir, name=args.name, onedir=args.onedir)
        print(f"copied to {target}")
        if args.name == NAME and not args.onedir:
            print(
                f"note: a .deb installs this as /usr/bin/{NAME}, which another app may own too;"
                " pass --name <app>-sync-queue"
            )
    print(exe)
    return 0


if __name__ == "__main__":
    sys.exit(main())
