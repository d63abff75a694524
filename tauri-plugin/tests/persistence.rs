//! Real sidecar only (see tests/common/mod.rs; they fail if `python -m
//! sync_queue` does not start): the data directory, its lock and the
//! encryption key, as the plugin passes them.

mod common;

use std::{path::PathBuf, time::Duration};

use common::{app_with, collect, invoke, process_exists, real_sidecar, repo_root};
use serde_json::{json, Value};
use tauri_plugin_sync_queue::{Builder, KeySource, SyncQueueExt};

/// A fresh directory under the target dir's temp area, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("sync-queue-plugin-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn on_disk(command: &[String], dir: &TempDir) -> Builder {
    Builder::new()
        .command(command.iter().cloned())
        .cwd(repo_root())
        .data_dir(dir.0.join("queue"))
        .call_timeout(Duration::from_secs(20))
        .stop_timeout(Duration::from_secs(3))
        .restart_delay(Duration::from_millis(100), Duration::from_secs(1))
}

#[test]
fn items_survive_an_app_restart() {
    let command = real_sidecar("items_survive_an_app_restart");
    let dir = TempDir::new("restart");
    let pid = {
        let (app, w) = app_with(on_disk(&command, &dir));
        invoke(&w, "push", json!({"item": {"payload": "kept", "id": "k1"}})).unwrap();
        let ready = invoke(&w, "ping", json!({}));
        assert_eq!(ready, Ok(json!(true)));
        let pid = app.sync_queue().sidecar_pid().unwrap();
        // What an app that exits on its own (std::process::exit) calls first.
        app.cleanup_before_exit();
        pid
    };
    assert!(
        !process_exists(pid),
        "cleanup_before_exit stops the sidecar"
    );

    let (_app, w) = app_with(on_disk(&command, &dir));
    let item = invoke(&w, "get", json!({"id": "k1"})).unwrap();
    assert_eq!(item["payload"], "kept");
    assert_eq!(item["status"], "pending");
}

#[test]
fn a_second_sidecar_on_the_same_data_dir_is_locked_out() {
    let command = real_sidecar("a_second_sidecar_on_the_same_data_dir_is_locked_out");
    let dir = TempDir::new("locked");
    let (_first, w1) = app_with(on_disk(&command, &dir));
    assert_eq!(invoke(&w1, "ping", json!({})), Ok(json!(true)));

    let (second, w2) = app_with(on_disk(&command, &dir));
    let exited = collect(&second, "sync-queue://sidecar-exited");
    let err = invoke(&w2, "ping", json!({})).unwrap_err();
    assert_eq!(err["kind"], "Locked", "{err}");
    assert_eq!(err["data"]["code"], 3, "exit code 3 is Locked: {err}");
    assert!(
        err["data"]["stderrTail"]
            .as_str()
            .unwrap()
            .contains("Locked"),
        "{err}"
    );
    assert!(
        err["message"].as_str().unwrap().contains("not restarted"),
        "{err}"
    );
    // Not restarted: one exit, said to be final, and no process after it.
    let event = exited.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(event["restarting"], false, "{event}");
    assert_eq!(event["code"], 3, "{event}");
    assert!(
        exited.recv_timeout(Duration::from_secs(1)).is_err(),
        "restarted after exit status 3"
    );
    assert_eq!(second.sync_queue().sidecar_pid(), None);
    assert_eq!(second.sync_queue().failure().unwrap().kind(), "Locked");
    let again = invoke(&w2, "ping", json!({})).unwrap_err();
    assert_eq!(again["kind"], "Locked", "{again}");
    // The first one is unharmed.
    assert_eq!(invoke(&w1, "ping", json!({})), Ok(json!(true)));
}

#[test]
fn the_key_reaches_the_sidecar_but_not_its_command_line() {
    let command = real_sidecar("the_key_reaches_the_sidecar_but_not_its_command_line");
    let dir = TempDir::new("key");
    let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // base64 of 32 bytes
    {
        let (app, w) = app_with(on_disk(&command, &dir).key(KeySource::Value(key.into())));
        invoke(
            &w,
            "push",
            json!({"item": {"payload": {"secret": 1}, "id": "s1"}}),
        )
        .unwrap();
        let pid = app.sync_queue().sidecar_pid().unwrap();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(key),
            "the key is on the command line"
        );
        invoke(&w, "flush", json!({})).unwrap();
    }

    // Without the key, the encrypted data cannot be opened: the sidecar
    // refuses to start (exit status 4), says so, and is not restarted.
    let (_app, w) = app_with(on_disk(&command, &dir));
    let err = invoke(&w, "get", json!({"id": "s1"})).unwrap_err();
    assert_eq!(err["kind"], "DataUnreadable", "{err}");
    assert_eq!(err["data"]["code"], 4, "{err}");
    assert!(err["data"]["stderrTail"]
        .as_str()
        .unwrap()
        .contains("EncryptionError"));
    assert!(!err.to_string().contains(key));
    drop(_app); // stops its sidecar

    let key_file = dir.0.join("key");
    std::fs::write(&key_file, key).unwrap();
    let (_app, w) = app_with(on_disk(&command, &dir).key(KeySource::File(key_file)));
    let item: Value = invoke(&w, "get", json!({"id": "s1"})).unwrap();
    assert_eq!(item["payload"], json!({"secret": 1}));
}
