//! The frozen sidecar (PyInstaller onefile, from packaging/build.py) through
//! the plugin, as an app ships it. The binary is `SYNC_QUEUE_FROZEN_SIDECAR`,
//! else `<checkout>/dist/sync-queue-sidecar-<target triple>`.
//!
//! Building that binary takes minutes, so these tests are `#[ignore]`d: plain
//! `cargo test` lists them as ignored, and `cargo test --lib --tests --
//! --include-ignored` (what scripts/check.sh and CI run) runs them, failing if
//! there is no binary.
//!
//! A onefile sidecar is two processes (the launcher and Python) and unpacks
//! itself into `$TMPDIR/_MEI…`: the tests give it a private TMPDIR to check
//! that a stop leaves neither a process nor that directory behind.

mod common;

use std::{path::PathBuf, time::Duration};

use common::{app_with, collect, group_members, invoke, process_exists, repo_root};
use serde_json::{json, Value};
use tauri_plugin_sync_queue::{models::PopOptions, Builder, Sidecar, SyncQueueExt};

fn frozen_sidecar(test: &str) -> PathBuf {
    let path = std::env::var_os("SYNC_QUEUE_FROZEN_SIDECAR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let name = format!(
                "sync-queue-sidecar-{}{}",
                env!("SYNC_QUEUE_TARGET_TRIPLE"),
                std::env::consts::EXE_SUFFIX
            );
            repo_root().join("dist").join(name)
        });
    assert!(
        path.is_file(),
        "{test} needs the frozen sidecar, but there is none at {}. Build it with \
         `.venv/bin/python packaging/build.py --out dist` from the checkout, or set \
         SYNC_QUEUE_FROZEN_SIDECAR to one.",
        path.display()
    );
    path
}

fn private_tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sync-queue-frozen-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn plugin(binary: PathBuf, tmp: &std::path::Path) -> Builder {
    Builder::new()
        .sidecar(Sidecar::Path(binary))
        .env("TMPDIR", tmp.display().to_string())
        .in_memory()
        .ready_timeout(Duration::from_secs(60))
        .call_timeout(Duration::from_secs(30))
        .stop_timeout(Duration::from_secs(5))
        .restart_delay(Duration::from_millis(100), Duration::from_secs(1))
}

fn mei_dirs(tmp: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(tmp)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
#[ignore = "needs the frozen sidecar (packaging/build.py): cargo test --test frozen -- --include-ignored"]
fn frozen_sidecar_round_trip_and_clean_exit() {
    let binary = frozen_sidecar("frozen_sidecar_round_trip_and_clean_exit");
    let tmp = private_tmp("exit");
    let (app, w) = app_with(plugin(binary, &tmp));
    let id =
        invoke(&w, "push", json!({"item": {"payload": {"frozen": true}}})).unwrap()["id"].clone();
    let item = invoke(&w, "pop", json!({})).unwrap();
    assert_eq!(item["id"], id);
    assert_eq!(
        invoke(
            &w,
            "complete",
            json!({"id": id, "leaseId": item["leaseId"]})
        ),
        Ok(Value::Null)
    );

    let pgid = app.sync_queue().sidecar_pid().unwrap();
    let members = group_members(pgid);
    assert!(
        !mei_dirs(&tmp).is_empty(),
        "a onefile build unpacks into TMPDIR"
    );
    assert_eq!(members.len(), 2, "launcher + Python: {members:?}");

    app.cleanup_before_exit(); // what app exit runs
    for pid in &members {
        assert!(
            !process_exists(*pid),
            "process {pid} of the sidecar outlived the app"
        );
    }
    assert_eq!(
        mei_dirs(&tmp),
        Vec::<String>::new(),
        "the onefile temp dir leaked"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
#[ignore = "needs the frozen sidecar (packaging/build.py): cargo test --test frozen -- --include-ignored"]
fn frozen_sidecar_killed_leaves_no_orphan_and_comes_back() {
    let binary = frozen_sidecar("frozen_sidecar_killed_leaves_no_orphan_and_comes_back");
    let tmp = private_tmp("kill");
    let (app, w) = app_with(plugin(binary, &tmp));
    let exited = collect(&app, "sync-queue://sidecar-exited");
    invoke(&w, "ping", json!({})).unwrap();
    let pgid = app.sync_queue().sidecar_pid().unwrap();
    let members = group_members(pgid);
    assert_eq!(members.len(), 2, "launcher + Python: {members:?}");

    // SIGKILL to the launcher only: its Python child would be orphaned, but
    // the plugin ends the rest of the group. A long poll in flight fails with
    // `SidecarExited`, not with the empty answer the child would give once
    // its stdin closes.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt.block_on(async {
        let queue = app.sync_queue();
        let options = PopOptions {
            timeout_ms: Some(20_000),
            ..Default::default()
        };
        let pop = queue.pop(&options);
        tokio::pin!(pop);
        // One poll queues the pop; the ping queued after it is written after
        // it, so its answer means the sidecar has read the pop.
        assert!(tokio::time::timeout(Duration::ZERO, &mut pop)
            .await
            .is_err());
        assert!(queue.ping().await.unwrap());
        // SAFETY: signals the sidecar this test started.
        assert_eq!(unsafe { libc::kill(pgid as libc::pid_t, libc::SIGKILL) }, 0);
        pop.await.expect_err("the long poll must fail, not resolve")
    });
    assert_eq!(err.kind(), "SidecarExited", "{err}");
    // Until the plugin has seen the launcher die, the orphaned Python child
    // may still answer on the pipes; the event says the cleanup is done.
    let event = exited
        .recv_timeout(Duration::from_secs(30))
        .expect("sync-queue://sidecar-exited");
    assert_eq!(event["signal"], 9);
    assert_eq!(
        invoke(&w, "ping", json!({})),
        Ok(json!(true)),
        "it comes back"
    );
    for pid in &members {
        assert!(
            !process_exists(*pid),
            "process {pid} of the killed sidecar is still running"
        );
    }
    drop(app);
    let _ = std::fs::remove_dir_all(&tmp);
}
