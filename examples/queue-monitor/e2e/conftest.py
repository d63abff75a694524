"""The end-to-end tests' fixtures: the app, built once for every test of the run, and a
fresh run (private directories and a process marker) for each test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from app_harness import Run, build_app


@pytest.fixture(scope="session")
def app() -> Path:
    prebuilt = os.environ.get("SYNC_QUEUE_MONITOR_APP")
    return Path(prebuilt) if prebuilt else build_app()


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    yield Run(tmp_path)
