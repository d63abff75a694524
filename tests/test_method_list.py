"""One list of methods, and one list of error kinds, across Python, Rust and TypeScript.

The source is the sidecar's method table, ``sync_queue.methods.METHODS`` (wire name ->
spec), and its exception hierarchy (``sync_queue.errors``). Everything that repeats them by
hand is read here as text and compared with it:

- the plugin's commands (``tauri-plugin/command_names.rs``, which ``build.rs`` turns into
  permissions): the wire methods in snake_case, plus the plugin's own commands;
- ``generate_handler!`` in ``src/lib.rs``, the ``#[command]`` functions of
  ``src/commands.rs``, the typed methods of ``src/desktop.rs`` and the wire names they send;
- ``permissions/default.toml`` and the generated per-command permission files;
- the ``call('<command>')`` wrappers of ``guest-js/index.ts``;
- the plugin's fake sidecar (``tauri-plugin/tests/fixtures/fake_sidecar.py``) and the
  sidecar fuzz test's method list;
- every error kind the sidecar can send, in TypeScript's ``ErrorKind`` and Rust's
  ``SIDECAR_KINDS``.

``tauri-plugin/tests/command_list.rs`` and ``error_kinds.rs`` check the Rust side's own
lists (order, README) with cargo; this test ties them to the Python source.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import sync_queue
from sync_queue.errors import QueueError
from sync_queue.protocol._errors import error_object

PLUGIN = Path(__file__).resolve().parent.parent / "tauri-plugin"

# The plugin's own commands, answered without a wire method (the sidecar's status, the
# HTTP outbox: enqueue_request pushes, the others are the dispatcher's).
PLUGIN_ONLY = {"status", "enqueue_request", "set_online", "set_headers", "outbox_status"}
# Left out of `sync-queue:default`: they delete data or stop the queue for the app's run.
DESTRUCTIVE = {"purge", "shutdown"}
# The fake sidecar's test hooks (see its docstring), not protocol methods.
FAKE_HOOKS = {"crash", "sleep", "spawnChild"}


def wire_methods() -> set[str]:
    """The sidecar's methods: its method table, plus ``shutdown`` (the session's own)."""
    try:
        table = importlib.import_module("sync_queue.methods").METHODS
        names = set(table)
    except AttributeError:
        # Before the one table: the dispatcher's dict of handlers, read from its source.
        names = _dict_keys_assigned_to("_methods", Path(sync_queue.__file__).parent / "methods.py")
    return names | {"shutdown"}


def _dict_keys_assigned_to(attribute: str, path: Path) -> set[str]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.AnnAssign | ast.Assign) and isinstance(node.value, ast.Dict):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(isinstance(t, ast.Attribute) and t.attr == attribute for t in targets):
                keys = node.value.keys
                return {
                    k.value
                    for k in keys
                    if isinstance(k, ast.Constant) and isinstance(k.value, str)
                }
    raise AssertionError(f"no dict assigned to {attribute} in {path}")


def snake(method: str) -> str:
    """``pushBatch`` -> ``push_batch``: a wire method's command name."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", method).lower()


def read(relative: str) -> str:
    return (PLUGIN / relative).read_text()


def quoted_in_block(text: str, start: str, end: str) -> list[str]:
    """The double-quoted strings from ``start`` to the next ``end``."""
    block = text[text.index(start) + len(start) :]
    return re.findall(r'"([^"]*)"', block[: block.index(end)])


def commands() -> list[str]:
    return quoted_in_block(read("command_names.rs"), "const COMMANDS: &[&str] = &[", "];")


def expected_commands() -> set[str]:
    return {snake(m) for m in wire_methods()} | PLUGIN_ONLY


def test_the_method_table_is_read() -> None:
    # Without this the comparisons below could pass on two empty sets.
    assert {"ping", "pushBatch", "extendLease", "shutdown"} <= wire_methods()
    assert len(commands()) == len(set(commands())), "a command listed twice"


def test_command_names_are_the_wire_methods_plus_the_plugins_own() -> None:
    assert set(commands()) == expected_commands()


def test_the_rust_handlers_serve_every_command() -> None:
    lib = read("src/lib.rs")
    handler = lib[lib.index("generate_handler![") :]
    handled = re.findall(r"commands::(\w+)", handler[: handler.index("])")])
    assert set(handled) == expected_commands()
    defined = re.findall(
        r"#\[command\]\s*pub\(crate\) (?:async )?fn (\w+)", read("src/commands.rs")
    )
    assert set(defined) == expected_commands()


def test_the_rust_api_sends_every_wire_method() -> None:
    desktop = read("src/desktop.rs")
    methods = set(re.findall(r"pub (?:async )?fn (\w+)\(", desktop))
    assert expected_commands() <= methods
    # `shutdown` goes through the supervisor, which must know the exit is wanted.
    sent = set(re.findall(r'typed\(\s*"(\w+)"', desktop)) | {"shutdown"}
    assert sent == wire_methods()


def test_the_default_permission_grants_all_but_the_destructive_commands() -> None:
    granted = quoted_in_block(read("permissions/default.toml"), "permissions = [", "]")
    expected = {f"allow-{c.replace('_', '-')}" for c in expected_commands() - DESTRUCTIVE}
    assert set(granted) == expected
    for command in expected_commands():
        generated = read(f"permissions/autogenerated/commands/{command}.toml")
        assert f'commands.allow = ["{command}"]' in generated, command


def test_typescript_wraps_every_command() -> None:
    called = re.findall(r"await call<.*?>\('(\w+)'", read("guest-js/index.ts"))
    assert set(called) == expected_commands()


def compared_with_method(source: str) -> set[str]:
    """The strings compared with ``method`` or ``req["method"]`` (``==`` or ``in (…)``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare) or "method" not in ast.unparse(node.left):
            continue
        for right in node.comparators:
            values = right.elts if isinstance(right, ast.Tuple) else [right]
            names |= {
                v.value for v in values if isinstance(v, ast.Constant) and isinstance(v.value, str)
            }
    return names


def test_the_fake_sidecar_answers_the_wire_methods() -> None:
    answered = compared_with_method(read("tests/fixtures/fake_sidecar.py"))
    assert answered - FAKE_HOOKS == wire_methods()


def test_the_fuzz_test_sends_every_method_but_shutdown() -> None:
    fuzz = importlib.import_module("tests.sidecar.test_fuzz")
    assert set(fuzz.METHODS) == wire_methods() - {"shutdown"}


def python_kinds() -> set[str]:
    """Every ``data.kind`` the sidecar can send: its exception classes and the bug kind."""
    for module in pkgutil.walk_packages(sync_queue.__path__, "sync_queue."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    kinds: set[str] = set()
    pending = list(QueueError.__subclasses__())
    while pending:
        cls = pending.pop()
        if cls.__module__.startswith("sync_queue."):  # not the tests' own subclasses
            kinds.add(cls.__name__)
        pending.extend(cls.__subclasses__())
    kinds.add(error_object(RuntimeError("a bug"))["data"]["kind"])
    return kinds


def typescript_kinds() -> set[str]:
    source = read("guest-js/index.ts")
    block = source[source.index("export type ErrorKind =") :]
    return set(re.findall(r"^\s*\| '(\w+)'", block[: block.index("(string & {})")], re.M))


def test_every_python_error_kind_is_known_to_typescript_and_rust() -> None:
    kinds = python_kinds()
    assert {"ShuttingDown", "MessageTooLarge", "InternalError"} <= kinds
    rust = set(quoted_in_block(read("src/error.rs"), "pub const SIDECAR_KINDS: &[&str] = &[", "];"))
    assert kinds - typescript_kinds() == set(), "missing from ErrorKind in guest-js/index.ts"
    assert kinds - rust == set(), "missing from SIDECAR_KINDS in src/error.rs"
