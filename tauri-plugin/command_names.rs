// The one list of the plugin's commands, included by build.rs (which generates a permission
// per command) and by the tests (which allow them in the mock runtime): the sidecar's
// methods (`sync_queue.methods`) in snake_case, plus the plugin's own. It must match, name
// for name, `generate_handler!` in src/lib.rs, src/commands.rs, src/desktop.rs,
// permissions/default.toml and the `invoke('plugin:sync-queue|…')` wrappers in
// guest-js/index.ts: tests/command_list.rs (cargo) and tests/test_method_list.py at the
// repository's root (pytest, against the sidecar's method table) check them.
const COMMANDS: &[&str] = &[
    "ping",
    "push",
    "push_batch",
    "pop",
    "pop_batch",
    "complete",
    "complete_batch",
    "fail",
    "cancel",
    "release",
    "reject",
    "requeue",
    "extend_lease",
    "get",
    "list",
    "purge",
    "stats",
    "health",
    "pause",
    "resume",
    "flush",
    "shutdown",
    // The plugin's own (no protocol method): the supervisor's state.
    "status",
    // The plugin's own: the HTTP outbox.
    "enqueue_request",
    "set_online",
    "set_headers",
    "outbox_status",
];
