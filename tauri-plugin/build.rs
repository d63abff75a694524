include!("command_names.rs");

fn main() {
    // The frozen sidecar is named after the target triple (tests/frozen.rs).
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    println!("cargo:rustc-env=SYNC_QUEUE_TARGET_TRIPLE={target}");
    tauri_plugin::Builder::new(COMMANDS).build();
}
