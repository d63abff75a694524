"""Fixtures for the end-to-end tests: sidecars that are always cleaned up and checked."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .harness import Sidecar, descendants, process_gone, wait_gone

LONG = os.environ.get("SYNC_QUEUE_LONG_TESTS") == "1"

Spawn = Callable[..., Sidecar]


def _cleanup(started: list[Sidecar]) -> None:
    pids = [pid for process in started for pid in (process.pid, *descendants(process.pid))]
    for process in started:
        process.kill()
    for pid in pids:
        assert wait_gone(pid, 10), f"sidecar process {pid} left behind"
    for process in started:
        process.assert_clean_output()


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """``spawn(*args, ready=True)``: start a sidecar (and wait for ``ready``)."""
    started: list[Sidecar] = []

    def start(*args: str | os.PathLike[str], ready: bool = True, **kw: object) -> Sidecar:
        process = Sidecar(*args, **kw)  # type: ignore[arg-type]
        started.append(process)
        if ready:
            process.wait_ready()
        return process

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
def shared() -> Iterator[Sidecar]:
    """One long-lived ``--memory`` sidecar for a whole module (stateless checks, fuzzing)."""
    process = Sidecar("--memory")
    process.wait_ready()
    yield process
    alive = process.proc.poll() is None
    process.kill()
    assert alive, f"the shared sidecar died; stderr:\n{process.stderr}"
    assert process_gone(process.pid)
    process.assert_clean_output()
