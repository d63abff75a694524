"""Fixtures for the end-to-end tests: sidecars that are always cleaned up and checked.

Where a test's sidecar runs (``sidecar_kind``) follows its markers:

- no marker: in process (``inprocess.InProcessSidecar``), the method semantics;
- ``process``: a sidecar process only (signals, exit codes, kill -9, stdio, locks between
  processes, what a restart finds on disk);
- ``blackbox``: both, in process and as a process: the subset that also runs against the
  frozen binary (``$SYNC_QUEUE_SIDECAR``; scripts/test-all selects ``-m "process or
  blackbox"`` there). With ``$SYNC_QUEUE_SIDECAR`` set, a ``blackbox`` test runs only
  against the process: the in-process run tests nothing of the binary.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .client import Sidecar
from .harness import ENV_EXECUTABLE, SidecarProcess, descendants, process_gone, wait_gone
from .inprocess import InProcessSidecar

LONG = os.environ.get("SYNC_QUEUE_LONG_TESTS") == "1"
INPROCESS = "inprocess"
SUBPROCESS = "subprocess"

Spawn = Callable[..., Sidecar]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "process: runs against a sidecar process only (what needs a process)"
    )
    config.addinivalue_line(
        "markers",
        "blackbox: the black-box subset: runs in process and against a sidecar process "
        "(and against the frozen binary in scripts/test-all)",
    )


def kinds_for(node: pytest.Item | pytest.Function | object) -> list[str]:
    marks = {mark.name for mark in getattr(node, "iter_markers", lambda: [])()}
    if "process" in marks and "blackbox" in marks:
        raise pytest.UsageError(f"{node}: process and blackbox exclude each other")
    if "process" in marks:
        return [SUBPROCESS]
    if "blackbox" in marks:
        return [SUBPROCESS] if os.environ.get(ENV_EXECUTABLE) else [INPROCESS, SUBPROCESS]
    return [INPROCESS]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "sidecar_kind" in metafunc.fixturenames:
        kinds = kinds_for(metafunc.definition)
        metafunc.parametrize("sidecar_kind", kinds, indirect=True, scope="module")


@pytest.fixture(scope="module")
def sidecar_kind(request: pytest.FixtureRequest) -> str:
    """``inprocess`` or ``subprocess``: set per test by its markers (see the docstring)."""
    return str(request.param)


def _start(kind: str, args: tuple[str | os.PathLike[str], ...], **kw: object) -> Sidecar:
    if kind == INPROCESS:
        return InProcessSidecar(*args, **kw)  # type: ignore[arg-type]
    return SidecarProcess(*args, **kw)  # type: ignore[arg-type]


def _cleanup(started: list[Sidecar]) -> None:
    processes = [s for s in started if isinstance(s, SidecarProcess)]
    pids = [pid for process in processes for pid in (process.pid, *descendants(process.pid))]
    for sidecar in started:
        sidecar.kill()
    for pid in pids:
        assert wait_gone(pid, 10), f"sidecar process {pid} left behind"
    for sidecar in started:
        sidecar.assert_clean_output()


@pytest.fixture
def spawn(sidecar_kind: str) -> Iterator[Spawn]:
    """``spawn(*args, ready=True)``: start a sidecar (and wait for ``ready``)."""
    started: list[Sidecar] = []

    def start(*args: str | os.PathLike[str], ready: bool = True, **kw: object) -> Sidecar:
        sidecar = _start(sidecar_kind, args, **kw)
        started.append(sidecar)
        if ready:
            sidecar.wait_ready()
        return sidecar

    yield start
    _cleanup(started)


@pytest.fixture
def mem(spawn: Spawn) -> Sidecar:
    """A fresh ``--memory`` sidecar, ready."""
    return spawn("--memory")


@pytest.fixture
def disk(spawn: Spawn, tmp_path: Path) -> Sidecar:
    """A fresh sidecar on ``tmp_path / "data"``, ready."""
    return spawn("--data-dir", tmp_path / "data")


@pytest.fixture(scope="module")
def shared(sidecar_kind: str) -> Iterator[Sidecar]:
    """One long-lived ``--memory`` sidecar for a whole module (stateless checks, fuzzing)."""
    sidecar = _start(sidecar_kind, ("--memory",))
    sidecar.wait_ready()
    yield sidecar
    alive = sidecar.running
    sidecar.kill()
    assert alive, f"the shared sidecar died; stderr:\n{sidecar.stderr}"
    if isinstance(sidecar, SidecarProcess):
        assert process_gone(sidecar.pid)
    sidecar.assert_clean_output()
