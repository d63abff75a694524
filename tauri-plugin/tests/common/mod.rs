//! Shared by the integration tests: which sidecar to run, a mock Tauri app
//! with the plugin, and IPC calls through `tauri::test` (no webview).
//!
//! The sidecar command, as a JSON array or whitespace-separated words:
//! - `SYNC_QUEUE_SIDECAR_CMD`: the real sidecar's command. Default:
//!   `$SYNC_QUEUE_PYTHON -m sync_queue`, with `SYNC_QUEUE_PYTHON` defaulting
//!   to the checkout's `.venv/bin/python`, run from the checkout's root.
//!   `--memory` is added by the plugin.
//! - If that command does not start (no `ready` within 30 s), the tests that
//!   need it fail, saying why and how to point them at a sidecar. None of
//!   them passes without having run.
//! - The `fake::` tests always run, against tests/fixtures/fake_sidecar.py.
//! - tests/frozen.rs finds the frozen binary on its own (`SYNC_QUEUE_FROZEN_SIDECAR`).

#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{mpsc, OnceLock},
    time::{Duration, Instant},
};

use serde_json::Value;
use tauri::{
    ipc::{CallbackFn, InvokeBody},
    test::{get_ipc_response, mock_builder, mock_context, noop_assets, MockRuntime, INVOKE_KEY},
    utils::acl::ExecutionContext,
    webview::InvokeRequest,
    App, Listener, WebviewWindow, WebviewWindowBuilder,
};

include!("../../command_names.rs");

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate sits in the checkout")
        .to_path_buf()
}

fn words(text: &str) -> Vec<String> {
    if text.trim_start().starts_with('[') {
        serde_json::from_str(text).expect("SYNC_QUEUE_SIDECAR_CMD is not a JSON array of strings")
    } else {
        text.split_whitespace().map(str::to_owned).collect()
    }
}

/// The fake sidecar shipped with the tests.
pub fn fake_sidecar() -> Vec<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake_sidecar.py");
    vec!["python3".into(), script.display().to_string()]
}

/// The real sidecar's command. Panics (fails the test) if it does not start.
pub fn real_sidecar(test: &str) -> Vec<String> {
    static PROBE: OnceLock<Result<Vec<String>, String>> = OnceLock::new();
    let probe = PROBE.get_or_init(|| {
        let command = match std::env::var("SYNC_QUEUE_SIDECAR_CMD") {
            Ok(text) if !text.trim().is_empty() => words(&text),
            _ => {
                let python = std::env::var("SYNC_QUEUE_PYTHON")
                    .unwrap_or_else(|_| repo_root().join(".venv/bin/python").display().to_string());
                vec![python, "-m".into(), "sync_queue".into()]
            }
        };
        starts(&command).map(|()| command)
    });
    match probe {
        Ok(command) => command.clone(),
        Err(why) => panic!(
            "{test} needs the real sidecar, but {why}. Create the checkout's venv \
             (scripts/bootstrap dev), or point SYNC_QUEUE_PYTHON at a Python that has \
             sync_queue installed, or SYNC_QUEUE_SIDECAR_CMD at a sidecar command \
             (e.g. a frozen binary)."
        ),
    }
}

/// Whether `command --memory` announces `ready` within 30 s.
fn starts(command: &[String]) -> Result<(), String> {
    let shown = command.join(" ");
    let mut child = Command::new(&command[0])
        .args(&command[1..])
        .arg("--memory")
        .current_dir(repo_root())
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("`{shown}` cannot be started: {e}"))?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("\"ready\"") {
                let _ = tx.send(true);
                return;
            }
        }
        let _ = tx.send(false); // stdout closed without `ready`
    });
    let outcome = rx.recv_timeout(Duration::from_secs(30));
    let ready = outcome == Ok(true);
    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    if ready {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: Vec<&str> = stderr
        .lines()
        .rev()
        .take(5)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let what = if outcome.is_err() {
        "did not announce `ready` within 30 s"
    } else {
        "ended without announcing `ready`"
    };
    Err(format!(
        "`{shown} --memory` {what} ({}); stderr ends with: {}",
        output.status,
        tail.join(" | ")
    ))
}

/// A mock app that stops its sidecar when the test is done with it, as a
/// real app does on exit (Tauri never drops an `App`'s plugins and state).
pub struct TestApp(Option<App<MockRuntime>>);

impl TestApp {
    /// The app itself, e.g. to run it; then nothing is cleaned up on drop.
    pub fn into_inner(mut self) -> App<MockRuntime> {
        self.0.take().expect("the app")
    }
}

impl std::ops::Deref for TestApp {
    type Target = App<MockRuntime>;
    fn deref(&self) -> &App<MockRuntime> {
        self.0.as_ref().expect("the app")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(app) = &self.0 {
            app.cleanup_before_exit();
        }
    }
}

/// A mock app with the plugin, every plugin command allowed (the mock ACL
/// has no plugin manifests), and a window.
pub fn app_with(
    builder: tauri_plugin_sync_queue::Builder,
) -> (TestApp, WebviewWindow<MockRuntime>) {
    let mut context = mock_context(noop_assets());
    for command in COMMANDS {
        context.runtime_authority_mut().__allow_command(
            format!("plugin:sync-queue|{command}"),
            ExecutionContext::Local,
        );
    }
    let app = mock_builder()
        .plugin(builder.build())
        .build(context)
        .expect("mock app");
    let window = WebviewWindowBuilder::new(&app, "main", Default::default())
        .build()
        .expect("window");
    (TestApp(Some(app)), window)
}

pub fn plugin_for(command: &[String]) -> tauri_plugin_sync_queue::Builder {
    tauri_plugin_sync_queue::Builder::new()
        .command(command.iter().cloned())
        .cwd(repo_root())
        .in_memory()
        .call_timeout(Duration::from_secs(20))
        .stop_timeout(Duration::from_secs(2))
        .restart_delay(Duration::from_millis(100), Duration::from_secs(1))
}

pub fn app(command: &[String]) -> (TestApp, WebviewWindow<MockRuntime>) {
    app_with(plugin_for(command))
}

/// `invoke('plugin:sync-queue|<command>', args)` as the webview would.
pub fn invoke(
    window: &WebviewWindow<MockRuntime>,
    command: &str,
    args: Value,
) -> Result<Value, Value> {
    let url = if cfg!(any(windows, target_os = "android")) {
        "http://tauri.localhost"
    } else {
        "tauri://localhost"
    };
    get_ipc_response(
        window,
        InvokeRequest {
            cmd: format!("plugin:sync-queue|{command}"),
            callback: CallbackFn(0),
            error: CallbackFn(1),
            url: url.parse().expect("url"),
            body: InvokeBody::Json(args),
            headers: Default::default(),
            invoke_key: INVOKE_KEY.to_string(),
        },
    )
    .map(|body| body.deserialize::<Value>().expect("JSON response"))
}

/// Collects the payloads of one event.
pub fn collect(app: &App<MockRuntime>, event: &str) -> mpsc::Receiver<Value> {
    let (tx, rx) = mpsc::channel();
    app.listen(event, move |e| {
        let _ = tx.send(serde_json::from_str(e.payload()).expect("JSON payload"));
    });
    rx
}

#[cfg(unix)]
pub fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(pid, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    // On Linux a zombie counts as gone; elsewhere it exists until reaped.
    #[cfg(target_os = "linux")]
    let exists = exists
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
        });
    exists
}

/// The processes of a process group (Linux).
pub fn group_members(pgid: u32) -> Vec<u32> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z" {
            members.push(pid);
        }
    }
    members
}
