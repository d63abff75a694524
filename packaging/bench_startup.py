"""Start-up benchmark of the frozen sidecar (issue 5): onefile vs onedir vs ``python -m``.

    .venv/bin/python packaging/bench_startup.py [--quick] [--runs N]

For each way of running the sidecar, start it N times with ``--memory`` and time from
``Popen`` to the ``ready`` notification on stdout (a fresh process every run; the OS file
cache is warm, as it is for an app started a second time), then close stdin and time the
exit. The three are interleaved run by run, so machine load hits them alike. One untimed
warm-up run each comes first. Reported: median (min-max) of the N runs, and the binary size,
each with its target and the measured/target ratio.

The binaries are ``$SYNC_QUEUE_SIDECAR`` (onefile) and ``$SYNC_QUEUE_SIDECAR_ONEDIR`` (the
executable inside the onedir folder), else the ``dist/`` results of ``packaging/build.py``.
``startup_section(quick)`` returns the markdown lines, for ``bench/bench.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _load_build_script() -> Any:
    """``packaging/build.py`` under a name no installed package uses (not ``build``)."""
    spec = importlib.util.spec_from_file_location(
        "_sync_queue_packaging_build", ROOT / "packaging" / "build.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_build = _load_build_script()
NAME: str = _build.NAME
exe_suffix = _build.exe_suffix
target_triple = _build.target_triple

TARGET_ONEFILE_MS = 300.0
TARGET_ONEDIR_MS = 100.0
TARGET_SIZE_BYTES = 25_000_000


@dataclass
class Candidate:
    label: str
    argv: list[str] | None  # None: not built
    env: dict[str, str]
    target_ms: float | None
    missing: str = ""


def _default_paths() -> tuple[Path, Path]:
    triple, _ = target_triple()
    suffix = exe_suffix(triple)
    onefile = ROOT / "dist" / f"{NAME}-{triple}{suffix}"
    onedir = ROOT / "dist" / f"{NAME}-onedir-{triple}" / f"{NAME}{suffix}"
    return onefile, onedir


def candidates(tmpdir: str) -> list[Candidate]:
    onefile_default, onedir_default = _default_paths()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("SYNC_QUEUE_")}
    base_env["TMPDIR"] = tmpdir  # a private temp dir: the _MEI check below is exact

    def frozen(var: str, default: Path, label: str, target: float, hint: str) -> Candidate:
        given = os.environ.get(var)
        argv = shlex.split(given) if given else [str(default)]
        if not Path(argv[0]).is_file():
            return Candidate(label, None, base_env, target, f"not built ({hint})")
        return Candidate(label, argv, base_env, target)

    source_env = dict(base_env)
    source_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "sidecar"), os.environ.get("PYTHONPATH")) if p
    )
    return [
        frozen(
            "SYNC_QUEUE_SIDECAR",
            onefile_default,
            "onefile",
            TARGET_ONEFILE_MS,
            "packaging/build.py",
        ),
        frozen(
            "SYNC_QUEUE_SIDECAR_ONEDIR",
            onedir_default,
            "onedir",
            TARGET_ONEDIR_MS,
            "packaging/build.py --onedir",
        ),
        Candidate("`python -m sync_queue`", [sys.executable, "-m", "sync_queue"], source_env, None),
    ]


def one_run(c: Candidate) -> tuple[float, float]:
    """(seconds to ``ready``, seconds from stdin close to exit)."""
    assert c.argv is not None
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*c.argv, "--memory", "--log-level", "warning"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=c.env,
    )
    assert proc.stdout is not None and proc.stdin is not None
    first = proc.stdout.readline()
    ready = time.perf_counter() - started
    if b'"method":"ready"' not in first:
        proc.kill()
        raise RuntimeError(f"{c.label}: expected the ready notification, got {first[:200]!r}")
    closing = time.perf_counter()
    proc.stdin.close()
    status = proc.wait(30)
    stop = time.perf_counter() - closing
    if status != 0:
        raise RuntimeError(f"{c.label}: exit status {status}")
    return ready, stop


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f}"


def startup_section(quick: bool, runs: int | None = None) -> list[str]:
    n = runs or (5 if quick else 20)
    with tempfile.TemporaryDirectory(prefix="sq-bench-tmp-") as tmpdir:
        cands = candidates(tmpdir)
        live = [c for c in cands if c.argv is not None]
        for c in live:  # warm-up: page cache, pyc files
            one_run(c)
        times: dict[str, list[tuple[float, float]]] = {c.label: [] for c in live}
        for _ in range(n):
            for c in live:
                times[c.label].append(one_run(c))
        leftovers = sorted(p.name for p in Path(tmpdir).iterdir() if p.name.startswith("_MEI"))

    lines = [
        f"### Sidecar start-up, `--memory` (median of {n} runs, min-max)",
        "",
        "| how it runs | start to `ready`, ms | target, ms | measured / target "
        "| stdin EOF to exit, ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for c in cands:
        if c.argv is None:
            lines.append(f"| {c.label} | {c.missing} | {c.target_ms:.0f} | — | — |")
            continue
        ready = [r for r, _ in times[c.label]]
        stop = [s for _, s in times[c.label]]
        med = statistics.median(ready)
        target = f"{c.target_ms:.0f}" if c.target_ms else "—"
        ratio = f"{med * 1000 / c.target_ms:.2f}" if c.target_ms else "—"
        lines.append(
            f"| {c.label} | **{_ms(med)}** ({_ms(min(ready))}-{_ms(max(ready))}) | {target} "
            f"| {ratio} | {_ms(statistics.median(stop))} |"
        )

    lines += ["", "| binary | size, MB | target, MB | measured / target |", "|---|---:|---:|---:|"]
    for c in cands[:2]:
        if c.argv is None:
            continue
        exe = Path(c.argv[0])
        if c.label == "onefile":
            size = size_of(exe)
            lines.append(
                f"| onefile `{exe.name}` | **{size / 1e6:.1f}** | {TARGET_SIZE_BYTES / 1e6:.0f} "
                f"| {size / TARGET_SIZE_BYTES:.2f} |"
            )
        else:
            size = size_of(exe.parent)
            lines.append(f"| onedir folder `{exe.parent.name}/` | {size / 1e6:.1f} | — | — |")
    lines += [
        "",
        f"`_MEI*` directories left in the private TMPDIR after {n + 1} onefile runs: "
        f"{len(leftovers)}" + (f" ({', '.join(leftovers)})" if leftovers else "") + ".",
    ]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 runs instead of 20")
    parser.add_argument("--runs", type=int, help="runs per candidate")
    args = parser.parse_args()
    for line in startup_section(args.quick, args.runs):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
