//! The `status` command through Tauri's IPC on the mock runtime: what a
//! frontend that starts listening late learns about the sidecar. Like
//! tests/ipc.rs, the lifecycle test runs against the fake and the real sidecar.

mod common;

use std::time::{Duration, Instant};

use common::{app, app_with, collect, fake_sidecar, invoke, plugin_for, real_sidecar};
use serde_json::{json, Value};
use tauri::{test::MockRuntime, WebviewWindow};
use tauri_plugin_sync_queue::SyncQueueExt;

const WAIT: Duration = Duration::from_secs(20);

fn status(w: &WebviewWindow<MockRuntime>) -> Value {
    invoke(w, "status", json!({})).expect("status never fails")
}

/// Polls `status` until `done` holds (the state moves in the background).
fn status_until(w: &WebviewWindow<MockRuntime>, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = status(w);
        if done(&s) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn fake_status_follows_the_lifecycle() {
    status_follows_the_lifecycle(&fake_sidecar());
}

#[test]
fn real_status_follows_the_lifecycle() {
    status_follows_the_lifecycle(&real_sidecar("real_status_follows_the_lifecycle"));
}

fn status_follows_the_lifecycle(command: &[String]) {
    let (app, w) = app(command);
    let first = status(&w);
    assert!(
        ["starting", "ready"].contains(&first["state"].as_str().unwrap()),
        "{first}"
    );
    // A listener registered now has missed `ready`; `status` has not.
    invoke(&w, "ping", json!({})).unwrap();
    let ready = status(&w);
    assert_eq!(ready["state"], "ready", "{ready}");
    assert_eq!(ready["ready"]["protocol"], 1, "the `ready` params: {ready}");
    assert_eq!(ready["lastExit"], Value::Null);
    assert_eq!(ready["failure"], Value::Null);

    let exited = collect(&app, "sync-queue://sidecar-exited");
    let pid = app.sync_queue().sidecar_pid().expect("a running sidecar");
    // SAFETY: sends SIGKILL to the sidecar this test started.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }, 0);
    exited
        .recv_timeout(WAIT)
        .expect("sync-queue://sidecar-exited");
    // Recorded before it was emitted: whoever hears the event finds it here.
    let after = status(&w);
    assert_eq!(after["lastExit"]["signal"], 9, "{after}");
    assert_eq!(after["lastExit"]["restarting"], true, "{after}");
    let back = status_until(&w, |s| s["state"] == "ready");
    assert_eq!(back["state"], "ready", "restarted: {back}");
    assert_eq!(back["lastExit"]["signal"], 9, "{back}");

    invoke(&w, "shutdown", json!({})).unwrap();
    let stopped = status_until(&w, |s| s["state"] == "stopped");
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    assert_eq!(stopped["lastExit"]["restarting"], false, "{stopped}");
}

#[test]
fn fake_a_sidecar_that_cannot_be_restarted_is_failed_with_why() {
    let (_app, w) = app_with(plugin_for(&fake_sidecar()).env("FAKE_EXIT_EARLY", "3"));
    // The supervisor publishes the failure, then emits the exit.
    let failed = status_until(&w, |s| s["state"] == "failed" && !s["lastExit"].is_null());
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(failed["failure"]["kind"], "Locked", "{failed}");
    assert_eq!(failed["lastExit"]["code"], 3, "{failed}");
    assert_eq!(failed["lastExit"]["restarting"], false, "{failed}");
    assert_eq!(failed["ready"], Value::Null, "it never got there: {failed}");
}
