//! Tauri 2 plugin for sync-queue: runs the Python sidecar (`sync-queue-sidecar`,
//! or `python -m sync_queue` in development), speaks newline-delimited
//! JSON-RPC 2.0 with it over stdio (docs/protocol.md), and exposes its methods as
//! the commands `plugin:sync-queue|<command>` and, from Rust, through
//! [`SyncQueueExt::sync_queue`].
//!
//! ```ignore
//! # fn main() {
//! tauri::Builder::default()
//!     .plugin(tauri_plugin_sync_queue::init())
//! #   ;
//! # }
//! ```
//!
//! The sidecar's notifications become the events `sync-queue://items-available`,
//! `sync-queue://item-failed`, `sync-queue://breaker-changed` and
//! `sync-queue://ready`; `sync-queue://sidecar-exited` reports the process
//! ending. The plugin's own command `status` (no protocol method) tells where
//! the sidecar is, for a frontend that starts listening late. This file is
//! wiring only.

use std::{path::PathBuf, sync::Arc, time::Duration};

use tauri::{
    plugin::{self, TauriPlugin},
    AppHandle, Emitter, Manager, Runtime,
};

mod client;
mod commands;
mod config;
mod desktop;
mod error;
pub mod models;
pub mod outbox;
mod pipe;
mod status;
mod supervisor;

pub use client::Notification;
pub use config::{
    Config, KeySource, LaunchSpec, Sidecar, Timing, DEFAULT_EXTERNAL_BIN, KEY_ENV_VAR,
};
pub use desktop::SyncQueue;
pub use error::{Error, Result, RpcError, SidecarExited, LOCAL_KINDS, SIDECAR_KINDS};
pub use outbox::{
    auth::AuthProvider,
    classify::{Class, ClassifyHook},
    config::OutboxConfig,
    events::OutboxEventSink,
    request::HttpRequest,
    status::{OutboxHealth, OutboxStatus},
    OutboxHooks,
};
pub use status::{SidecarState, SidecarStatus};
pub use supervisor::{EventSink, SupervisorEvent};

/// The plugin's name: the `plugin:sync-queue|…` prefix, the permission prefix
/// and the key under `tauri.conf.json > plugins`.
pub const PLUGIN_NAME: &str = "sync-queue";

/// Extensions to [`tauri::App`], [`tauri::AppHandle`] and the windows to reach
/// the queue from Rust.
pub trait SyncQueueExt<R: Runtime> {
    fn sync_queue(&self) -> &SyncQueue;
}

impl<R: Runtime, T: Manager<R>> SyncQueueExt<R> for T {
    fn sync_queue(&self) -> &SyncQueue {
        self.state::<SyncQueue>().inner()
    }
}

/// The plugin with its configuration taken from `tauri.conf.json > plugins > sync-queue`.
pub fn init<R: Runtime>() -> TauriPlugin<R, Option<Config>> {
    Builder::new().build()
}

/// Sets what the config file sets, from Rust; a value set here wins.
#[derive(Debug, Default)]
pub struct Builder {
    over: config::Overrides,
    outbox: Option<OutboxConfig>,
    hooks: OutboxHooks,
}

impl Builder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Which sidecar to run (default: the `externalBin` `sync-queue-sidecar`).
    pub fn sidecar(mut self, sidecar: Sidecar) -> Self {
        self.over.sidecar = Some(sidecar);
        self
    }

    /// Run `program` with `args`, e.g. `["python", "-m", "sync_queue"]`.
    pub fn command<I, S>(self, command: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.sidecar(Sidecar::Command(
            command.into_iter().map(Into::into).collect(),
        ))
    }

    /// Working directory of the sidecar process.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.over.cwd = Some(dir.into());
        self
    }

    /// An environment variable for the sidecar process.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.over.env.insert(name.into(), value.into());
        self
    }

    /// The queue's data directory (relative: inside the app's data directory).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.over.data_dir = Some(dir.into());
        self
    }

    /// Keep the queue in memory only (tests, benchmarks).
    pub fn in_memory(mut self) -> Self {
        self.over.memory = Some(true);
        self
    }

    /// `QueueConfig` fields (snake_case, durations in seconds).
    pub fn queue_config(mut self, queue: serde_json::Map<String, serde_json::Value>) -> Self {
        self.over.queue = Some(queue);
        self
    }

    /// Where the encryption key comes from.
    pub fn key(mut self, key: KeySource) -> Self {
        self.over.key = Some(key);
        self
    }

    /// Time limit of one call (long polls add their own wait).
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.over.call_timeout = Some(timeout);
        self
    }

    /// How long the sidecar may take to announce `ready`.
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.over.ready_timeout = Some(timeout);
        self
    }

    /// Grace given at each step of a stop (stdin EOF, then SIGTERM).
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.over.stop_timeout = Some(timeout);
        self
    }

    /// First and longest delay before a crashed sidecar is restarted.
    pub fn restart_delay(mut self, first: Duration, max: Duration) -> Self {
        self.over.restart_delay = Some(first);
        self.over.max_restart_delay = Some(max);
        self
    }

    /// The HTTP outbox's settings (instead of `plugins.sync-queue.outbox`).
    pub fn outbox(mut self, config: OutboxConfig) -> Self {
        self.outbox = Some(config);
        self
    }

    /// Overrides how the outbox classes a response: `(status, headers,
    /// body) -> Some(Class)`, or `None` for the default. A request's own
    /// `retryStatuses`/`deadStatuses` still win.
    pub fn classify<F>(mut self, hook: F) -> Self
    where
        F: Fn(u16, &reqwest::header::HeaderMap, &[u8]) -> Option<Class> + Send + Sync + 'static,
    {
        self.hooks.classify = Some(Arc::new(hook));
        self
    }

    /// Headers for the outbox's requests to an origin (`"https://api.example.com"`),
    /// asked at each dispatch and never stored: e.g. the current access
    /// token. Headers set with `set_headers` win over these.
    pub fn auth_headers<F>(mut self, provider: F) -> Self
    where
        F: Fn(&str) -> Option<std::collections::BTreeMap<String, String>> + Send + Sync + 'static,
    {
        self.hooks.auth = Some(Arc::new(provider));
        self
    }

    pub fn build<R: Runtime>(self) -> TauriPlugin<R, Option<Config>> {
        let over = self.over;
        let (outbox_over, hooks) = (self.outbox, self.hooks);
        plugin::Builder::<R, Option<Config>>::new(PLUGIN_NAME)
            .invoke_handler(tauri::generate_handler![
                commands::ping,
                commands::push,
                commands::push_batch,
                commands::pop,
                commands::pop_batch,
                commands::complete,
                commands::complete_batch,
                commands::fail,
                commands::cancel,
                commands::release,
                commands::reject,
                commands::requeue,
                commands::extend_lease,
                commands::get,
                commands::list,
                commands::purge,
                commands::stats,
                commands::health,
                commands::pause,
                commands::resume,
                commands::flush,
                commands::shutdown,
                commands::status,
                commands::enqueue_request,
                commands::set_online,
                commands::set_headers,
                commands::outbox_status,
            ])
            .setup(move |app, api| {
                let app_data_dir = || {
                    app.path()
                        .app_data_dir()
                        .map_err(|e| Error::Config(format!("the app has no data directory: {e}")))
                };
                let exe_dir = || {
                    let exe = tauri::utils::platform::current_exe()?;
                    exe.parent().map(PathBuf::from).ok_or_else(|| {
                        Error::Config(format!("{} has no parent directory", exe.display()))
                    })
                };
                let resource_dir = || {
                    app.path().resource_dir().map_err(|e| {
                        Error::Config(format!("the app has no resource directory: {e}"))
                    })
                };
                let paths = config::AppPaths {
                    app_data_dir: &app_data_dir,
                    exe_dir: &exe_dir,
                    resource_dir: &resource_dir,
                };
                let spec = config::resolve(api.config().as_ref(), &over, &paths)?;
                let runtime = tauri::async_runtime::handle();
                let queue = SyncQueue::start(runtime.inner(), spec, event_sink(app.clone()));
                let outbox_config = outbox_over
                    .clone()
                    .or_else(|| api.config().as_ref().and_then(|c| c.outbox.clone()))
                    .unwrap_or_default();
                queue.start_outbox(
                    runtime.inner(),
                    outbox_config,
                    hooks.clone(),
                    outbox_event_sink(app.clone()),
                )?;
                // The one exit hook: Tauri clears the resource table in
                // `cleanup_before_exit` (after `RunEvent::Exit`, and on the exit
                // paths that skip it) and when the app is dropped.
                app.resources_table().add(queue.exit_guard());
                app.manage(queue);
                Ok(())
            })
            .build()
    }
}

/// Sidecar notifications become `sync-queue://<method in kebab-case>` events.
fn event_sink<R: Runtime>(app: AppHandle<R>) -> EventSink {
    Arc::new(move |event| {
        let result = match event {
            SupervisorEvent::Ready(params) => app.emit("sync-queue://ready", params),
            SupervisorEvent::Exited(exited) => app.emit("sync-queue://sidecar-exited", exited),
            SupervisorEvent::Notification(n) => app.emit(&event_name(&n.method), n.params),
        };
        if let Err(e) = result {
            log::warn!("could not emit a sync-queue event: {e}");
        }
    })
}

/// The outbox's events, emitted as they are named.
fn outbox_event_sink<R: Runtime>(app: AppHandle<R>) -> OutboxEventSink {
    Arc::new(move |name, payload| {
        if let Err(e) = app.emit(name, payload) {
            log::warn!("could not emit {name}: {e}");
        }
    })
}

/// `itemsAvailable` → `sync-queue://items-available`. Tauri event names allow
/// only alphanumerics and `-/:_`; anything else becomes `-`.
fn event_name(method: &str) -> String {
    let mut name = String::from("sync-queue://");
    for (i, c) in method.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                name.push('-');
            }
            name.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() || c == '_' {
            name.push(c);
        } else {
            name.push('-');
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::event_name;

    #[test]
    fn notification_methods_map_to_event_names() {
        assert_eq!(event_name("itemsAvailable"), "sync-queue://items-available");
        assert_eq!(event_name("itemFailed"), "sync-queue://item-failed");
        assert_eq!(event_name("breakerChanged"), "sync-queue://breaker-changed");
        assert_eq!(event_name("ready"), "sync-queue://ready");
        assert_eq!(event_name("job.done"), "sync-queue://job-done");
    }
}
