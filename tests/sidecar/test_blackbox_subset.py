"""The black-box subset (marker ``blackbox``, see conftest.py) calls every wire method.

It is all that runs against the frozen binary besides the process tests, so a method missing
from it would go untested there. Read from the test functions' source: a method is called
when its name appears as a string literal in a ``blackbox`` test.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path
from typing import Any

import sync_queue.methods
from sync_queue.clock import SystemClock

from .inprocess import SkippableClock, open_dispatcher

HERE = Path(__file__).resolve().parent


def wire_methods() -> set[str]:
    """The method table's names (``METHODS`` where it exists), plus the session's own
    ``shutdown``."""
    table: Any = getattr(sync_queue.methods, "METHODS", None)
    if table is None:  # before the method table is one mapping: the dispatcher's own
        dispatcher = open_dispatcher(["--memory"], SkippableClock(SystemClock()))
        table = dispatcher._methods
        dispatcher.close()
    return {*table, "shutdown"}


def blackbox_sources() -> list[str]:
    sources = []
    for module_info in pkgutil.iter_modules([str(HERE)]):
        if not module_info.name.startswith("test_"):
            continue
        module = importlib.import_module(f"{__package__}.{module_info.name}")
        for name, function in inspect.getmembers(module, inspect.isfunction):
            marks = getattr(function, "pytestmark", [])
            if name.startswith("test_") and any(m.name == "blackbox" for m in marks):
                sources.append(inspect.getsource(function))
    return sources


def test_the_blackbox_subset_calls_every_wire_method() -> None:
    sources = blackbox_sources()
    assert len(sources) > 20, "the blackbox marker is read from the test functions"
    missing = {m for m in wire_methods() if not any(f'"{m}"' in s for s in sources)}
    assert not missing, f"no blackbox test calls {sorted(missing)}"
