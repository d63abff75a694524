"""Fixtures for the frozen-binary tests: which builds exist, and a private TMPDIR per test.

The onefile binary is ``$SYNC_QUEUE_SIDECAR`` (its first word, as ``tests/sidecar`` splits
it), else ``$SYNC_QUEUE_FROZEN``, else ``dist/sync-queue-sidecar-<target-triple>`` from
``packaging/build.py``. The onedir executable is ``$SYNC_QUEUE_SIDECAR_ONEDIR``, else
``dist/sync-queue-sidecar-onedir-<target-triple>/sync-queue-sidecar``. A test on a build that
is not there is skipped, with the command that builds it in the reason.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_build_script() -> object:
    """``packaging/build.py`` under a name no installed package uses (not ``build``)."""
    spec = importlib.util.spec_from_file_location(
        "_sync_queue_packaging_build", ROOT / "packaging" / "build.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_build: object = _load_build_script()
NAME: str = _build.NAME  # type: ignore[attr-defined]
exe_suffix = _build.exe_suffix  # type: ignore[attr-defined]
target_triple = _build.target_triple  # type: ignore[attr-defined]

ONEFILE_ENV = "SYNC_QUEUE_SIDECAR"
ONEFILE_ALIAS_ENV = "SYNC_QUEUE_FROZEN"  # what scripts/test-all sets for this suite
ONEDIR_ENV = "SYNC_QUEUE_SIDECAR_ONEDIR"


def _from_env(var: str) -> Path | None:
    value = os.environ.get(var)
    if not value and var == ONEFILE_ENV:
        value = os.environ.get(ONEFILE_ALIAS_ENV)
    if not value:
        return None
    return Path(shlex.split(value)[0])


def _defaults() -> dict[str, Path]:
    triple, _ = target_triple()
    suffix = exe_suffix(triple)
    return {
        "onefile": ROOT / "dist" / f"{NAME}-{triple}{suffix}",
        "onedir": ROOT / "dist" / f"{NAME}-onedir-{triple}" / f"{NAME}{suffix}",
    }


def find_build(kind: str) -> Path:
    """The executable of the ``kind`` ("onefile"/"onedir") build, or skip the test."""
    var = ONEFILE_ENV if kind == "onefile" else ONEDIR_ENV
    path = _from_env(var) or _defaults()[kind]
    if not path.is_file():
        how = "packaging/build.py" + (" --onedir" if kind == "onedir" else "")
        pytest.skip(
            f"no frozen {kind} sidecar at {path}: build it with `.venv/bin/python {how}` "
            f"or point ${var} at one"
        )
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is not executable")
    return path


@pytest.fixture(scope="session")
def onefile() -> Path:
    return find_build("onefile")


@pytest.fixture(params=["onefile", "onedir"])
def build(request: pytest.FixtureRequest) -> tuple[str, Path]:
    """Each build that exists: (kind, executable)."""
    return request.param, find_build(request.param)


@pytest.fixture
def private_tmp(tmp_path: Path) -> Path:
    """An empty directory the binary gets as its TMPDIR (where onefile unpacks ``_MEI*``)."""
    path = tmp_path / "tmpdir"
    path.mkdir()
    return path
