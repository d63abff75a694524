"""The engine imports no storage: read from the source, so a refactor cannot break it quietly.

``persistence.open_engine`` is the one place a store and a core are put together; the
threaded ``SyncQueue`` reaches it only from its constructor (opening), never on a call.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sync_queue

PACKAGE = Path(sync_queue.__file__).parent
ENGINE = (
    "breaker",
    "clock",
    "cooperative",
    "destinations",
    "config",
    "core",
    "durations",
    "engine",
    "entry",
    "queue_time",
    "results",
    "errors",
    "item",
    "legality",
    "long_polls",
    "methods",
    "metrics",
    "ops",
    "retry",
    "state",
    "unique",
    "wire",
)
STORAGE = ("storage", "persistence")


def imported(tree: ast.AST) -> list[tuple[str, ast.AST]]:
    """Every module an import statement under ``tree`` names, relative ones as ``.name``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            found.append((base, node))
            if not node.module:  # from . import storage
                found += [(base + alias.name, node) for alias in node.names]
    return found


def names_storage(module: str) -> bool:
    parts = module.lstrip(".").split(".")
    if module.startswith("."):
        return parts[0] in STORAGE
    return parts[:1] == ["sync_queue"] and len(parts) > 1 and parts[1] in STORAGE


@pytest.mark.parametrize("name", ENGINE)
def test_engine_module_imports_no_storage(name: str) -> None:
    tree = ast.parse((PACKAGE / f"{name}.py").read_text(encoding="utf-8"))
    bad = [module for module, _ in imported(tree) if names_storage(module)]
    assert bad == [], f"{name}.py imports {bad}"


def test_the_threaded_queue_reaches_storage_only_to_open_it() -> None:
    tree = ast.parse((PACKAGE / "queue.py").read_text(encoding="utf-8"))
    allowed: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            allowed |= {id(n) for n in ast.walk(node)}  # types only, never imported
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            allowed |= {
                id(n)
                for n in ast.walk(node)
                if isinstance(n, ast.ImportFrom)
                and n.module == "persistence"
                and [a.name for a in n.names] == ["open_engine"]
            }
    bad = [m for m, node in imported(tree) if names_storage(m) and id(node) not in allowed]
    assert bad == [], f"queue.py imports {bad} outside opening"


def test_the_check_sees_a_storage_import() -> None:
    for source in (
        "from .storage import Store",
        "from . import persistence",
        "import sync_queue.storage.store",
    ):
        assert any(names_storage(m) for m, _ in imported(ast.parse(source))), source


def test_methods_is_the_one_method_table() -> None:
    from sync_queue.methods import METHODS, READ_ONLY, QueueDispatcher
    from sync_queue.wire import PARAMS

    assert set(METHODS) == set(PARAMS)
    assert {name for name, m in METHODS.items() if m.read_only} == READ_ONLY
    assert QueueDispatcher.read_only_methods == READ_ONLY
    assert {"ping", "get", "list", "stats", "health"} == READ_ONLY
    assert all(m.name == name and m.params is PARAMS[name] for name, m in METHODS.items())
