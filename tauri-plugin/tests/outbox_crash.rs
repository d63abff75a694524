//! The outbox through crashes, on disk, with the real sidecar and a real
//! server: the sidecar killed with SIGKILL mid-dispatch (the supervisor
//! restarts it), then the whole app stopped mid-dispatch and started again.
//! Nothing is lost and, thanks to the Idempotency-Key, nothing is applied
//! twice on the server.

#![cfg(unix)]

mod common;
mod outbox_server;

use std::{
    collections::HashSet,
    path::Path,
    time::{Duration, Instant},
};

use common::{app_with, invoke, real_sidecar, repo_root};
use outbox_server::{Behaviour, TestServer};
use serde_json::{json, Value};
use tauri_plugin_sync_queue::{Builder, OutboxConfig, SyncQueueExt};

const ITEMS: usize = 60;

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn on_disk(command: &[String], dir: &Path) -> Builder {
    Builder::new()
        .command(command.iter().cloned())
        .cwd(repo_root())
        .data_dir(dir.join("queue"))
        .call_timeout(Duration::from_secs(20))
        .stop_timeout(Duration::from_secs(3))
        .restart_delay(Duration::from_millis(100), Duration::from_secs(1))
        .outbox(OutboxConfig {
            concurrency: 4,
            timeout_ms: 2_000,
            probe_initial_ms: 100,
            probe_max_ms: 1_000,
            ..OutboxConfig::default()
        })
}

#[test]
fn killing_the_sidecar_or_the_app_mid_dispatch_loses_nothing_and_applies_nothing_twice() {
    let command = real_sidecar("killing_the_sidecar_mid_dispatch");
    let dir = std::env::temp_dir().join(format!("sync-queue-outbox-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let server = TestServer::start();
    // Each request takes a while, so a crash finds some in flight.
    server.on(
        "/work",
        Behaviour::Work {
            work: Duration::from_millis(30),
        },
    );
    let mut ids = Vec::new();
    {
        let (app, w) = app_with(on_disk(&command, &dir));
        for n in 0..ITEMS {
            let request = json!({"url": server.url("/work"), "body": {"n": n},
                                 "partitionKey": format!("k{}", n % 5)});
            let answer = invoke(&w, "enqueue_request", json!({ "request": request })).unwrap();
            ids.push(answer["id"].as_str().unwrap().to_owned());
        }
        wait_for("a first third applied", || {
            server.record().effects.len() >= ITEMS / 3
        });
        let pid = app.sync_queue().sidecar_pid().expect("a sidecar");
        // SAFETY: a plain kill(2) of the sidecar we started.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
        wait_for("a restarted sidecar", || {
            app.sync_queue().sidecar_pid().is_some_and(|p| p != pid)
        });
        wait_for("two thirds applied", || {
            server.record().effects.len() >= 2 * ITEMS / 3
        });
        // The app exits mid-dispatch (drop runs cleanup_before_exit).
    }
    let (_app, w) = app_with(on_disk(&command, &dir));
    wait_for("every effect", || server.record().effects.len() >= ITEMS);
    for id in &ids {
        wait_for(&format!("{id} completed"), || {
            invoke(&w, "get", json!({"id": id})).unwrap()["status"] == "completed"
        });
    }
    let record = server.record();
    let applied: Vec<&str> = record.effects.iter().map(|e| e.key.as_str()).collect();
    let unique: HashSet<&str> = applied.iter().copied().collect();
    assert_eq!(applied.len(), unique.len(), "an effect was applied twice");
    assert_eq!(
        unique,
        ids.iter().map(String::as_str).collect::<HashSet<_>>()
    );
    // Per key, the effects are in push order across both crashes.
    for k in 0..5 {
        let ns: Vec<i64> = record
            .effects
            .iter()
            .map(|e| {
                serde_json::from_str::<Value>(&e.body).unwrap()["n"]
                    .as_i64()
                    .unwrap()
            })
            .filter(|n| n % 5 == k)
            .collect();
        assert!(ns.windows(2).all(|w| w[0] < w[1]), "key k{k}: {ns:?}");
    }
    eprintln!(
        "{} requests for {} effects ({} replays)",
        record.attempts.len(),
        ITEMS,
        record.attempts.len() - ITEMS
    );
    drop(record);
    drop(_app);
    let _ = std::fs::remove_dir_all(&dir);
}
