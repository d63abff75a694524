include!("command_names.rs");

fn main() {
    // The frozen sidecar is named after the target triple (tests/frozen.rs).
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    println!("cargo:rustc-env=SYNC_QUEUE_TARGET_TRIPLE={target}");
    // api-iife.js (built by rollup.config.js from guest-js/) is what apps with
    // `app.withGlobalTauri` get as `window.__TAURI__.syncQueue`.
    tauri_plugin::Builder::new(COMMANDS)
        .global_api_script_path("./api-iife.js")
        .build();
}
