// The one list of commands. It must match, name for name, `generate_handler!` in
// src/lib.rs, permissions/default.toml and the `invoke('plugin:sync-queue|…')`
// wrappers in guest-js/src/index.ts.
const COMMANDS: &[&str] = &[
    "ping",
    "push",
    "push_batch",
    "pop",
    "pop_batch",
    "complete",
    "fail",
    "cancel",
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
];

fn main() {
    // The frozen sidecar is named after the target triple (tests/frozen.rs).
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    println!("cargo:rustc-env=SYNC_QUEUE_TARGET_TRIPLE={target}");
    tauri_plugin::Builder::new(COMMANDS).build();
}
