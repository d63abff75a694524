//! The queue monitor: a Tauri 2 app that uses tauri-plugin-sync-queue exactly as its
//! README tells an app developer, plus the example's own "sync" endpoint (endpoint.rs),
//! the server a real app would upload to.

mod endpoint;

use endpoint::{Endpoint, EndpointInfo, Mode};
use tauri::{Manager, State};

/// Where the window's worker sends items, how the endpoint answers now, and how many
/// items it has accepted.
#[tauri::command]
fn endpoint(endpoint: State<'_, Endpoint>) -> EndpointInfo {
    endpoint.info()
}

/// Flip the endpoint's switch: `ok`, `fail` (HTTP 503), `timeout` (never answers) or
/// `down` (the port is closed).
#[tauri::command]
async fn set_endpoint_mode(
    endpoint: State<'_, Endpoint>,
    mode: Mode,
) -> Result<EndpointInfo, String> {
    endpoint.set_mode(mode).await.map_err(|e| e.to_string())
}

#[cfg_attr(mobile, tauri::mobile_entry_point)]
pub fn run() {
    tauri::Builder::default()
        // Configured from tauri.conf.json > plugins > sync-queue.
        .plugin(tauri_plugin_sync_queue::init())
        .setup(|app| {
            let endpoint = tauri::async_runtime::block_on(Endpoint::start())?;
            app.manage(endpoint);
            Ok(())
        })
        .invoke_handler(tauri::generate_handler![endpoint, set_endpoint_mode])
        .run(tauri::generate_context!())
        .expect("error while running the queue monitor");
}
