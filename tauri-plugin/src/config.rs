//! Configuration: `tauri.conf.json > plugins > sync-queue`, overridden field by
//! field by the Rust [`crate::Builder`], then resolved into the exact command
//! line the supervisor runs.
//!
//! ```json
//! "plugins": {
//!   "sync-queue": {
//!     "sidecar": { "externalBin": "sync-queue-sidecar" },
//!     "dataDir": "queue",
//!     "queue": { "max_capacity": 10000, "durability": "always" },
//!     "keyEnv": "MY_APP_QUEUE_KEY",
//!     "callTimeoutMs": 30000
//!   }
//! }
//! ```

use std::{
    collections::BTreeMap,
    ffi::OsString,
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Name of the sidecar binary bundled through `bundle > externalBin`.
pub const DEFAULT_EXTERNAL_BIN: &str = "sync-queue-sidecar";
/// The environment variable the sidecar reads its base64 key from.
pub const KEY_ENV_VAR: &str = "SYNC_QUEUE_KEY";

/// Which program runs the sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Sidecar {
    /// `{"externalBin": "sync-queue-sidecar"}`: a binary listed in
    /// `bundle > externalBin`, found next to the app's executable as Tauri
    /// places it (`.exe` added on Windows). The default.
    ExternalBin(String),
    /// `{"path": "/opt/sync-queue/sync-queue-sidecar"}`: a binary anywhere.
    Path(PathBuf),
    /// `{"resource": "sync-queue-sidecar-onedir/sync-queue-sidecar"}`: an
    /// executable shipped with `bundle > resources` (the onedir build), as a
    /// path relative to where the resources go. Looked up next to the app's
    /// executable first, where every Cargo build (`tauri dev`,
    /// `tauri build --no-bundle`) copies them, then in the resource directory
    /// of an installed bundle (`.exe` added on Windows).
    Resource(PathBuf),
    /// `{"command": ["python", "-m", "sync_queue"]}`: program and arguments,
    /// for development (set `cwd` and `env` as needed).
    Command(Vec<String>),
}

impl Default for Sidecar {
    fn default() -> Self {
        Sidecar::ExternalBin(DEFAULT_EXTERNAL_BIN.to_owned())
    }
}

/// Where the sidecar gets its encryption key. The key itself never goes on
/// the command line (docs/protocol.md §2).
#[derive(Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A file holding the 32-byte key (base64 or raw), passed as `--key-file`.
    File(PathBuf),
    /// The name of a variable in the app's environment holding the base64
    /// key; it reaches the sidecar as `SYNC_QUEUE_KEY`.
    Env(String),
    /// The base64 key itself (from the OS keychain, say); it reaches the
    /// sidecar as `SYNC_QUEUE_KEY`. Only settable from Rust.
    Value(String),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::File(p) => f.debug_tuple("File").field(p).finish(),
            KeySource::Env(name) => f.debug_tuple("Env").field(name).finish(),
            KeySource::Value(_) => f.write_str("Value(<redacted>)"),
        }
    }
}

/// `tauri.conf.json > plugins > sync-queue`. Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Default: `{"externalBin": "sync-queue-sidecar"}`.
    pub sidecar: Option<Sidecar>,
    /// Working directory of the sidecar process.
    pub cwd: Option<PathBuf>,
    /// Extra environment variables for the sidecar process.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Passed as `--data-dir`. Relative paths are taken from the app's data
    /// directory. Default: `<app data dir>/sync-queue`.
    pub data_dir: Option<PathBuf>,
    /// Keep the queue in memory only (`--memory`): tests and benchmarks.
    #[serde(default)]
    pub memory: bool,
    /// `QueueConfig` fields (snake_case, durations in seconds), written to a
    /// JSON file passed as `--config`. Must not hold the key.
    pub queue: Option<Map<String, Value>>,
    /// A key file, passed as `--key-file`.
    pub key_file: Option<PathBuf>,
    /// The name of an app environment variable holding the base64 key.
    pub key_env: Option<String>,
    /// Time limit of one call (default 30 000 ms); long polls add their own
    /// `timeoutMs` to it.
    pub call_timeout_ms: Option<u64>,
    /// How long a started sidecar may take to announce `ready` (default 60 000 ms).
    pub ready_timeout_ms: Option<u64>,
    /// On stop, how long the sidecar gets to exit after its stdin closes,
    /// before SIGTERM; and again after SIGTERM before SIGKILL (default 3 000 ms).
    pub stop_timeout_ms: Option<u64>,
    /// First restart delay after a crash (default 250 ms), doubled after each
    /// crash in a row up to `maxRestartDelayMs` (default 30 000 ms).
    pub restart_delay_ms: Option<u64>,
    pub max_restart_delay_ms: Option<u64>,
    /// The HTTP outbox (`enabled`, `concurrency`, `timeoutMs`, …).
    pub outbox: Option<crate::outbox::config::OutboxConfig>,
}

/// Everything the Rust builder can set; `None` means "take it from the config file".
#[derive(Debug, Clone, Default)]
pub(crate) struct Overrides {
    pub sidecar: Option<Sidecar>,
    pub cwd: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
    pub data_dir: Option<PathBuf>,
    pub memory: Option<bool>,
    pub queue: Option<Map<String, Value>>,
    pub key: Option<KeySource>,
    pub call_timeout: Option<Duration>,
    pub ready_timeout: Option<Duration>,
    pub stop_timeout: Option<Duration>,
    pub restart_delay: Option<Duration>,
    pub max_restart_delay: Option<Duration>,
}

/// Time limits and restart policy, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub call_timeout: Duration,
    pub ready_timeout: Duration,
    pub stop_timeout: Duration,
    pub restart_delay: Duration,
    pub max_restart_delay: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            call_timeout: Duration::from_secs(30),
            ready_timeout: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(3),
            restart_delay: Duration::from_millis(250),
            max_restart_delay: Duration::from_secs(30),
        }
    }
}

/// The sidecar's command line, resolved: what [`crate::SyncQueue::start`] runs.
#[derive(Clone, Default)]
pub struct LaunchSpec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub cwd: Option<PathBuf>,
    /// Variables set for the child on top of the app's environment.
    pub env: Vec<(String, String)>,
    /// The queue config to write to a private temporary file before each
    /// start; the file is passed as `--config` and removed once the sidecar
    /// is up.
    pub queue_config: Option<Map<String, Value>>,
    pub timing: Timing,
}

impl LaunchSpec {
    /// A sidecar run as `program args…` with default timing.
    pub fn command<I, S>(program: impl Into<PathBuf>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        LaunchSpec {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }
}

impl fmt::Debug for LaunchSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env: Vec<_> = self
            .env
            .iter()
            .map(|(k, v)| {
                if k == KEY_ENV_VAR {
                    (k.as_str(), "<redacted>")
                } else {
                    (k.as_str(), v.as_str())
                }
            })
            .collect();
        f.debug_struct("LaunchSpec")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("cwd", &self.cwd)
            .field("env", &env)
            .field("queue_config", &self.queue_config)
            .field("timing", &self.timing)
            .finish()
    }
}

/// What resolution needs from the app, so that it can be tested without one.
pub(crate) struct AppPaths<'a> {
    pub app_data_dir: &'a dyn Fn() -> Result<PathBuf>,
    pub exe_dir: &'a dyn Fn() -> Result<PathBuf>,
    pub resource_dir: &'a dyn Fn() -> Result<PathBuf>,
}

/// Merges the config file and the builder, and resolves paths, arguments,
/// key and timing. Creates the data directory.
pub(crate) fn resolve(
    config: Option<&Config>,
    over: &Overrides,
    paths: &AppPaths<'_>,
) -> Result<LaunchSpec> {
    let default_config = Config::default();
    let config = config.unwrap_or(&default_config);
    let (program, mut args) = program_and_args(config, over, paths)?;
    args.extend(storage_args(config, over, paths)?);
    let mut env: BTreeMap<String, String> = config.env.clone();
    env.extend(over.env.clone());
    // A sidecar run from source must not block-buffer its stdout.
    env.entry("PYTHONUNBUFFERED".into())
        .or_insert_with(|| "1".into());
    apply_key(config, over, &mut args, &mut env)?;
    let queue_config = over.queue.as_ref().or(config.queue.as_ref());
    if queue_config.is_some_and(|q| q.keys().any(|k| k == "key" || k == "encryption_key")) {
        return Err(Error::Config(
            "the queue config may not hold the encryption key; use `keyFile` or `keyEnv`".into(),
        ));
    }
    Ok(LaunchSpec {
        program,
        args,
        cwd: over.cwd.clone().or_else(|| config.cwd.clone()),
        env: env.into_iter().collect(),
        queue_config: queue_config.filter(|q| !q.is_empty()).cloned(),
        timing: timing(config, over),
    })
}

/// The program to run and its first arguments, from `sidecar`.
fn program_and_args(
    config: &Config,
    over: &Overrides,
    paths: &AppPaths<'_>,
) -> Result<(PathBuf, Vec<OsString>)> {
    let sidecar = over
        .sidecar
        .clone()
        .or_else(|| config.sidecar.clone())
        .unwrap_or_default();
    Ok(match sidecar {
        Sidecar::ExternalBin(name) => (external_bin_path(&(paths.exe_dir)()?, &name), Vec::new()),
        Sidecar::Path(path) => (path, Vec::new()),
        Sidecar::Resource(relative) => (resource_path(paths, &relative)?, Vec::new()),
        Sidecar::Command(mut words) => {
            if words.is_empty() {
                return Err(Error::Config(
                    "`sidecar.command` needs at least a program".into(),
                ));
            }
            let program = words.remove(0);
            (program.into(), words.into_iter().map(Into::into).collect())
        }
    })
}

/// `--memory`, or `--data-dir <dir>` (created here; relative to the app's
/// data directory).
fn storage_args(config: &Config, over: &Overrides, paths: &AppPaths<'_>) -> Result<Vec<OsString>> {
    if over.memory.unwrap_or(config.memory) {
        return Ok(vec!["--memory".into()]);
    }
    let dir = match over.data_dir.clone().or_else(|| config.data_dir.clone()) {
        Some(dir) if dir.is_absolute() => dir,
        Some(dir) => (paths.app_data_dir)()?.join(dir),
        None => (paths.app_data_dir)()?.join("sync-queue"),
    };
    std::fs::create_dir_all(&dir).map_err(|e| {
        Error::Config(format!(
            "cannot create the data directory {}: {e}",
            dir.display()
        ))
    })?;
    Ok(vec!["--data-dir".into(), dir.into()])
}

/// Passes the encryption key: `--key-file`, or the key itself in
/// [`KEY_ENV_VAR`] (never on the command line).
fn apply_key(
    config: &Config,
    over: &Overrides,
    args: &mut Vec<OsString>,
    env: &mut BTreeMap<String, String>,
) -> Result<()> {
    if over.key.is_none() && config.key_file.is_some() && config.key_env.is_some() {
        return Err(Error::Config("set `keyFile` or `keyEnv`, not both".into()));
    }
    let key = over
        .key
        .clone()
        .or_else(|| match (&config.key_file, &config.key_env) {
            (Some(file), _) => Some(KeySource::File(file.clone())),
            (None, Some(var)) => Some(KeySource::Env(var.clone())),
            (None, None) => None,
        });
    match key {
        Some(KeySource::File(file)) => {
            args.push("--key-file".into());
            args.push(file.into());
        }
        Some(KeySource::Env(var)) => {
            let value = std::env::var(&var).map_err(|_| {
                Error::Config(format!(
                    "`keyEnv` names the environment variable {var}, which is not set"
                ))
            })?;
            env.insert(KEY_ENV_VAR.into(), value);
        }
        Some(KeySource::Value(value)) => {
            env.insert(KEY_ENV_VAR.into(), value);
        }
        None => {}
    }
    Ok(())
}

/// Each limit from the builder, else the config file, else its default.
fn timing(config: &Config, over: &Overrides) -> Timing {
    let ms = |v: Option<u64>| v.map(Duration::from_millis);
    let defaults = Timing::default();
    Timing {
        call_timeout: over
            .call_timeout
            .or(ms(config.call_timeout_ms))
            .unwrap_or(defaults.call_timeout),
        ready_timeout: over
            .ready_timeout
            .or(ms(config.ready_timeout_ms))
            .unwrap_or(defaults.ready_timeout),
        stop_timeout: over
            .stop_timeout
            .or(ms(config.stop_timeout_ms))
            .unwrap_or(defaults.stop_timeout),
        restart_delay: over
            .restart_delay
            .or(ms(config.restart_delay_ms))
            .unwrap_or(defaults.restart_delay),
        max_restart_delay: over
            .max_restart_delay
            .or(ms(config.max_restart_delay_ms))
            .unwrap_or(defaults.max_restart_delay),
    }
}

/// Where Tauri puts an `externalBin` at run time: next to the app's
/// executable, without the target-triple suffix.
pub(crate) fn external_bin_path(exe_dir: &Path, name: &str) -> PathBuf {
    let mut path = exe_dir.join(name);
    if cfg!(windows) {
        path.set_extension("exe");
    }
    path
}

/// Where a `Sidecar::Resource` is. Tauri's own `resource_dir()` is not enough:
/// it takes a Cargo build for an installed one (`/usr/lib/<app>` on Linux)
/// unless the executable sits in a directory named `target`, so it fails with
/// any other `CARGO_TARGET_DIR`.
fn resource_path(paths: &AppPaths<'_>, relative: &Path) -> Result<PathBuf> {
    if relative.is_absolute() {
        return Err(Error::Config(format!(
            "`sidecar.resource` is relative to the resource directory, not {}; \
             use `sidecar.path` for an absolute path",
            relative.display()
        )));
    }
    let mut relative = relative.to_path_buf();
    if cfg!(windows) && relative.extension().is_none() {
        relative.set_extension("exe");
    }
    let beside_exe = (paths.exe_dir)()?.join(&relative);
    if beside_exe.exists() {
        return Ok(beside_exe);
    }
    Ok((paths.resource_dir)()
        .map(|dir| dir.join(&relative))
        .unwrap_or(beside_exe))
}

#[cfg(test)]
mod tests;
