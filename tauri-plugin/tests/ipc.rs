//! The plugin's commands through Tauri's IPC on the mock runtime, each test
//! run twice: `fake::<test>` against tests/fixtures/fake_sidecar.py (always),
//! and `real::<test>` against the real sidecar (`python -m sync_queue`, see
//! tests/common/mod.rs), which fails if that sidecar does not start.

mod common;

use std::time::{Duration, Instant};

use common::{app, app_with, collect, invoke, plugin_for, process_exists};
use serde_json::{json, Value};
use tauri_plugin_sync_queue::{models::Ready, SyncQueueExt};

const WAIT: Duration = Duration::from_secs(20);

macro_rules! against_both {
    ($($name:ident),* $(,)?) => {
        mod fake {
            $(#[test] fn $name() { super::$name(&super::common::fake_sidecar()) })*
        }
        mod real {
            $(#[test] fn $name() {
                super::$name(&super::common::real_sidecar(concat!("real::", stringify!($name))))
            })*
        }
    };
}

against_both!(
    push_pop_complete_round_trip,
    errors_arrive_as_typed_objects,
    capacity_exceeded_is_told_apart,
    notifications_arrive_as_events,
    kill_9_mid_call_fails_the_call_and_the_sidecar_comes_back,
    app_exit_leaves_no_sidecar_process,
    every_command_answers,
    held_items_are_released_or_rejected,
);

fn push_pop_complete_round_trip(command: &[String]) {
    let (_app, w) = app(command);
    assert_eq!(invoke(&w, "ping", json!({})), Ok(json!(true)));

    let pushed = invoke(
        &w,
        "push",
        json!({"item": {"payload": {"n": 1}, "priority": "high", "metadata": {"k": "v"}}}),
    )
    .expect("push");
    let id = pushed["id"].as_str().expect("an id").to_owned();

    let item = invoke(&w, "pop", json!({"options": {"leaseMs": 60000}})).expect("pop");
    assert_eq!(item["id"], id.as_str());
    assert_eq!(item["payload"], json!({"n": 1}));
    assert_eq!(item["priority"], "high");
    assert_eq!(item["status"], "processing");
    assert_eq!(item["attempts"], 1);
    assert_eq!(item["metadata"], json!({"k": "v"}));
    let lease_id = item["leaseId"].as_str().expect("a lease id");

    assert_eq!(
        invoke(&w, "complete", json!({"id": id, "leaseId": lease_id})),
        Ok(Value::Null)
    );
    let done = invoke(&w, "get", json!({"id": id})).expect("get");
    assert_eq!(done["status"], "completed");
    assert_eq!(
        invoke(&w, "pop", json!({})),
        Ok(Value::Null),
        "nothing left to pop"
    );
}

fn errors_arrive_as_typed_objects(command: &[String]) {
    let (_app, w) = app(command);
    let err = invoke(&w, "get", json!({"id": "no-such-item"})).unwrap_err();
    assert_eq!(err["kind"], "ItemNotFound", "{err}");
    assert_eq!(err["code"], -32002);
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("no-such-item")),
        "{err}"
    );
    assert!(err.get("data").is_some());

    // complete needs a processing item under its current lease.
    let id = invoke(&w, "push", json!({"item": {"payload": null}})).unwrap()["id"].clone();
    let err = invoke(&w, "complete", json!({"id": id})).unwrap_err();
    assert_eq!(err["kind"], "InvalidState", "{err}");
    assert_eq!(err["code"], -32009);

    let err = invoke(&w, "purge", json!({"status": "pending"})).unwrap_err();
    assert_eq!(err["code"], -32602, "{err}");
    assert_eq!(err["kind"], "InvalidParams", "{err}");
}

fn capacity_exceeded_is_told_apart(command: &[String]) {
    let queue = json!({"max_capacity": 1}).as_object().unwrap().clone();
    let (_app, w) = app_with(plugin_for(command).queue_config(queue));
    invoke(&w, "push", json!({"item": {"payload": 1}})).expect("first push fits");
    let err = invoke(&w, "push", json!({"item": {"payload": 2}})).unwrap_err();
    assert_eq!(err["kind"], "CapacityExceeded", "{err}");
    assert_eq!(err["code"], -32001);
}

fn notifications_arrive_as_events(command: &[String]) {
    let (app, w) = app(command);
    let available = collect(&app, "sync-queue://items-available");
    let failed = collect(&app, "sync-queue://item-failed");
    invoke(&w, "ping", json!({})).unwrap();

    let id = invoke(
        &w,
        "push",
        json!({"item": {"payload": "x", "maxRetries": 0}}),
    )
    .unwrap()["id"]
        .clone();
    let payload = available
        .recv_timeout(WAIT)
        .expect("sync-queue://items-available");
    assert_eq!(payload["pending"], 1, "{payload}");

    let item = invoke(&w, "pop", json!({})).unwrap();
    let result = invoke(
        &w,
        "fail",
        json!({"id": id, "error": "downstream said no", "leaseId": item["leaseId"]}),
    )
    .unwrap();
    assert_eq!(result["retry"], false);
    let payload = failed.recv_timeout(WAIT).expect("sync-queue://item-failed");
    assert_eq!(payload["id"], id);
    assert_eq!(payload["attempts"], 1);
    assert_eq!(payload["error"], "downstream said no");
}

fn kill_9_mid_call_fails_the_call_and_the_sidecar_comes_back(command: &[String]) {
    let (app, w) = app(command);
    let exited = collect(&app, "sync-queue://sidecar-exited");
    let ready = collect(&app, "sync-queue://ready");
    invoke(&w, "ping", json!({})).unwrap();
    let pid = app.sync_queue().sidecar_pid().expect("a running sidecar");

    // A long poll is in flight when the sidecar is killed.
    let window = w.clone();
    let long_poll = std::thread::spawn(move || {
        invoke(&window, "pop", json!({"options": {"timeoutMs": 15000}}))
    });
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    // SAFETY: sends SIGKILL to the sidecar this test started.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }, 0);

    let err = long_poll.join().unwrap().unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the call fails at once, not at its timeout"
    );
    assert_eq!(err["kind"], "SidecarExited", "{err}");
    assert_eq!(err["code"], Value::Null);
    assert_eq!(err["data"]["signal"], 9, "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("signal 9"),
        "{err}"
    );

    let event = exited
        .recv_timeout(WAIT)
        .expect("sync-queue://sidecar-exited");
    assert_eq!(event["signal"], 9);
    assert_eq!(event["restarting"], true);

    // It comes back: a new process, announced by `ready`, answering calls.
    let ready = ready
        .recv_timeout(WAIT)
        .expect("sync-queue://ready after the restart");
    // As documented: in memory mode, no data dir and durability "memory".
    let ready: Ready = serde_json::from_value(ready).expect("the documented `ready` shape");
    assert_eq!(ready.durability, "memory");
    assert_eq!(ready.data_dir, None);
    assert_eq!(invoke(&w, "ping", json!({})), Ok(json!(true)));
    let new_pid = app.sync_queue().sidecar_pid().expect("a new sidecar");
    assert_ne!(new_pid, pid);
    assert!(!process_exists(pid));
}

fn app_exit_leaves_no_sidecar_process(command: &[String]) {
    let (app, w) = app(command);
    invoke(&w, "ping", json!({})).unwrap();
    let pid = app.sync_queue().sidecar_pid().expect("a running sidecar");
    assert!(process_exists(pid));
    let window = w.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        window.destroy().expect("destroy the last window");
    });
    // Closing the last window ends the run loop with RunEvent::Exit.
    app.into_inner().run_return(|_, _| {});
    assert!(!process_exists(pid), "the sidecar {pid} outlived the app");
}

fn every_command_answers(command: &[String]) {
    let (_app, w) = app(command);
    let ids = invoke(
        &w,
        "push_batch",
        json!({"items": [{"payload": 1}, {"payload": 2, "id": "b"}]}),
    )
    .unwrap();
    assert_eq!(ids["ids"].as_array().map(Vec::len), Some(2), "{ids}");
    assert_eq!(ids["ids"][1], "b");

    let batch = invoke(&w, "pop_batch", json!({"options": {"max": 5}})).unwrap();
    assert_eq!(batch.as_array().map(Vec::len), Some(2), "{batch}");
    let first = &batch[0];
    let extended = invoke(
        &w,
        "extend_lease",
        json!({"id": first["id"], "leaseMs": 60000, "leaseId": first["leaseId"]}),
    )
    .unwrap();
    assert!(extended["leaseExpiresAt"].as_i64().unwrap() > 0);
    assert_eq!(invoke(&w, "cancel", json!({"id": "b"})), Ok(Value::Null));
    assert_eq!(invoke(&w, "requeue", json!({"id": "b"})), Ok(Value::Null));

    let page = invoke(&w, "list", json!({"options": {"limit": 10}})).unwrap();
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2), "{page}");
    assert!(page.get("next").is_some());
    let page = invoke(&w, "list", json!({})).unwrap();
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));

    let stats = invoke(&w, "stats", json!({})).unwrap();
    assert_eq!(stats["totalEnqueued"], 2, "{stats}");
    let health = invoke(&w, "health", json!({})).unwrap();
    assert_eq!(health["healthy"], true, "{health}");
    assert_eq!(invoke(&w, "pause", json!({})), Ok(Value::Null));
    assert_eq!(invoke(&w, "health", json!({})).unwrap()["paused"], true);
    assert_eq!(invoke(&w, "resume", json!({})), Ok(Value::Null));
    assert_eq!(invoke(&w, "flush", json!({})), Ok(Value::Null));
    assert_eq!(
        invoke(&w, "purge", json!({"status": "completed"})).unwrap()["removed"],
        0
    );

    assert_eq!(invoke(&w, "shutdown", json!({})), Ok(Value::Null));
    let err = invoke(&w, "ping", json!({})).unwrap_err();
    assert_eq!(err["kind"], "ShuttingDown", "{err}");
}

/// Also `complete_batch`: the held item, once popped, completed in a batch beside an
/// unknown id.
fn held_items_are_released_or_rejected(command: &[String]) {
    let (_app, w) = app(command);
    let push = |id: &str| {
        invoke(
            &w,
            "push",
            json!({"item": {"payload": 1, "id": id, "hold": true}}),
        )
        .unwrap()
    };
    assert_eq!(push("h")["id"], "h");
    assert_eq!(
        invoke(&w, "get", json!({"id": "h"})).unwrap()["status"],
        "held"
    );
    assert_eq!(invoke(&w, "release", json!({"id": "h"})), Ok(Value::Null));
    assert_eq!(
        invoke(&w, "get", json!({"id": "h"})).unwrap()["status"],
        "pending"
    );
    push("r");
    assert_eq!(
        invoke(&w, "reject", json!({"id": "r", "reason": "no"})),
        Ok(Value::Null)
    );
    let rejected = invoke(&w, "get", json!({"id": "r"})).unwrap();
    assert_eq!(rejected["status"], "cancelled", "{rejected}");
    assert_eq!(rejected["lastError"], "no");
    let err = invoke(&w, "release", json!({"id": "nope"})).unwrap_err();
    assert_eq!(err["kind"], "ItemNotFound", "{err}");

    let item = invoke(&w, "pop", json!({"options": {"leaseMs": 60000}})).unwrap();
    assert_eq!(item["id"], "h", "{item}");
    let failed = invoke(
        &w,
        "fail",
        json!({"id": "h", "leaseId": item["leaseId"], "error": "offline",
               "retryAfterMs": 0, "charge": false}),
    )
    .unwrap();
    assert_eq!(failed["retry"], true, "{failed}");

    let item = invoke(&w, "pop", json!({"options": {"leaseMs": 60000}})).unwrap();
    assert_eq!(item["id"], "h", "{item}");
    let done = invoke(
        &w,
        "complete_batch",
        json!({"items": [{"id": "h", "leaseId": item["leaseId"]}, {"id": "nope"}]}),
    )
    .unwrap();
    assert_eq!(done["completed"], json!(["h"]), "{done}");
    assert_eq!(done["errors"][0]["index"], 1, "{done}");
    assert_eq!(done["errors"][0]["error"]["data"]["kind"], "ItemNotFound");
}
