//! The HTTP outbox against a real server (tests/outbox_server: axum on
//! 127.0.0.1, idempotent per `Idempotency-Key`) and the real sidecar
//! (tests/common/mod.rs: these fail if it does not start). Every wait is
//! for a condition, with a deadline; assertions are on the server's record
//! and the items' attempts.

mod common;
mod outbox_server;

use std::{
    sync::{mpsc::Receiver, Arc, Mutex},
    time::{Duration, Instant},
};

use common::{app_with, collect, invoke, plugin_for, real_sidecar, TestApp};
use outbox_server::{Behaviour, TestServer};
use serde_json::{json, Map, Value};
use tauri::{test::MockRuntime, Listener, WebviewWindow};
use tauri_plugin_sync_queue::{HttpRequest, OutboxConfig, SyncQueueExt};

const DEADLINE: Duration = Duration::from_secs(20);

fn outbox_config() -> OutboxConfig {
    OutboxConfig {
        timeout_ms: 2_000,
        probe_initial_ms: 100,
        probe_max_ms: 1_000,
        ..OutboxConfig::default()
    }
}

/// Fast retries (50-200 ms), so a retried item comes back within the test.
fn fast_retries() -> Map<String, Value> {
    let Value::Object(map) = json!({"base_retry_delay": 0.05, "max_retry_delay": 0.2}) else {
        unreachable!()
    };
    map
}

fn app(test: &str, config: OutboxConfig) -> (TestApp, WebviewWindow<MockRuntime>) {
    let command = real_sidecar(test);
    app_with(
        plugin_for(&command)
            .queue_config(fast_retries())
            .outbox(config),
    )
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn enqueue(w: &WebviewWindow<MockRuntime>, request: Value) -> String {
    let answer = invoke(w, "enqueue_request", json!({ "request": request }))
        .unwrap_or_else(|e| panic!("enqueue_request {request}: {e}"));
    answer["id"].as_str().expect("an id").to_owned()
}

fn item(w: &WebviewWindow<MockRuntime>, id: &str) -> Value {
    invoke(w, "get", json!({ "id": id })).unwrap()
}

fn wait_status(w: &WebviewWindow<MockRuntime>, id: &str, status: &str) -> Value {
    let mut last = Value::Null;
    wait_for(&format!("{id} to be {status}"), || {
        last = item(w, id);
        last["status"] == status
    });
    last
}

fn events(rx: &Receiver<Value>) -> Vec<Value> {
    rx.try_iter().collect()
}

#[test]
fn each_request_is_applied_once_with_its_key_in_per_key_order() {
    let server = TestServer::start();
    let (app, w) = app("each_request_is_applied_once", outbox_config());
    let progress = collect(&app, "sync-queue://outbox-progress");
    let mut ids = Vec::new();
    for n in 0..30 {
        let key = format!("k{}", n % 3);
        ids.push(enqueue(
            &w,
            json!({"url": server.url("/notes"), "body": {"key": key, "n": n}, "partitionKey": key}),
        ));
    }
    // From Rust too.
    let mut request = HttpRequest::new("PUT", server.url("/rust"));
    request.body = Some(json!("plain text"));
    let rust_id = tauri::async_runtime::block_on(app.sync_queue().enqueue_request(&request))
        .unwrap()
        .id;
    ids.push(rust_id.clone());
    wait_for("every effect", || {
        server.record().effects.len() == ids.len()
    });
    for id in &ids {
        wait_status(&w, id, "completed");
    }
    let record = server.record();
    for id in &ids {
        assert_eq!(record.effects_of(id), 1, "{id} applied once");
    }
    for key in ["k0", "k1", "k2"] {
        let seen: Vec<i64> = record
            .effects
            .iter()
            .filter_map(|e| serde_json::from_str::<Value>(&e.body).ok())
            .filter(|b| b["key"] == key)
            .map(|b| b["n"].as_i64().unwrap())
            .collect();
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted, "{key} applied in push order");
        assert_eq!(seen.len(), 10);
    }
    let plain = record.effects.iter().find(|e| e.key == rust_id).unwrap();
    assert_eq!(
        (plain.path.as_str(), plain.body.as_str()),
        ("/rust", "plain text")
    );
    drop(record);
    let outcomes: Vec<Value> = events(&progress);
    let succeeded = outcomes
        .iter()
        .filter(|e| e["outcome"] == "succeeded")
        .count();
    assert_eq!(succeeded, ids.len(), "one `succeeded` per item");
    let health: Value = invoke(&w, "health", json!({})).unwrap();
    assert_eq!(health["healthy"], true, "{health}");
    assert_eq!(health["outbox"], json!({"running": true, "stalled": null}));
    let status = app.sync_queue().outbox_status();
    assert!(status.running);
    let d = &status.destinations[0];
    assert_eq!(d.destination, server.origin());
    assert_eq!((d.counters.dispatched, d.counters.succeeded), (31, 31));
}

#[test]
fn a_concurrency_whose_rounds_exceed_the_largest_pop_still_sends() {
    // Two rounds of 600 are 1200 items: more than a popBatch may ask for.
    let server = TestServer::start();
    let config = OutboxConfig {
        concurrency: 600,
        ..outbox_config()
    };
    let (_app, w) = app("a_concurrency_whose_rounds_exceed", config);
    let id = enqueue(&w, json!({"url": server.url("/wide"), "body": "one"}));
    wait_status(&w, &id, "completed");
    assert_eq!(server.record().effects_of(&id), 1);
}

#[test]
fn server_errors_are_retried_and_retry_after_is_honoured() {
    let server = TestServer::start();
    server.on(
        "/flaky",
        Behaviour::FailFirst {
            times: 2,
            status: 503,
            retry_after: None,
        },
    );
    server.on(
        "/busy",
        Behaviour::FailFirst {
            times: 1,
            status: 429,
            retry_after: Some("1".into()),
        },
    );
    let (_app, w) = app("server_errors_are_retried", outbox_config());
    let flaky = enqueue(&w, json!({"url": server.url("/flaky"), "body": 1}));
    let busy = enqueue(&w, json!({"url": server.url("/busy"), "body": 2}));
    let done = wait_status(&w, &flaky, "completed");
    assert_eq!(done["attempts"], 3, "{done}");
    let done = wait_status(&w, &busy, "completed");
    assert_eq!(done["attempts"], 2, "{done}");
    let record = server.record();
    assert_eq!(record.effects_of(&flaky), 1);
    assert_eq!(record.attempts_of(&flaky).len(), 3);
    let tries = record.attempts_of(&busy);
    assert_eq!(tries.len(), 2);
    let gap = tries[1].at - tries[0].at;
    // The engine's backoff alone would be ≤ 200 ms here.
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After: 1 ignored: {gap:?}"
    );
}

#[test]
fn client_errors_are_dead_at_once_with_their_status_and_block_no_other_key() {
    let server = TestServer::start();
    server.on(
        "/bad",
        Behaviour::Refuse {
            status: 400,
            body: "field `x` is\n required".into(),
        },
    );
    server.on(
        "/gone",
        Behaviour::Refuse {
            status: 404,
            body: "x".repeat(5000),
        },
    );
    let (app, w) = app("client_errors_are_dead", outbox_config());
    let bad = enqueue(
        &w,
        json!({"url": server.url("/bad"), "partitionKey": "a", "maxRetries": 5}),
    );
    let gone = enqueue(&w, json!({"url": server.url("/gone"), "partitionKey": "b"}));
    let after = enqueue(&w, json!({"url": server.url("/ok"), "partitionKey": "a"}));
    let dead = wait_status(&w, &bad, "failed");
    assert_eq!(dead["attempts"], 1, "{dead}");
    assert_eq!(dead["lastError"], "HTTP 400: field `x` is required");
    let dead = wait_status(&w, &gone, "failed");
    let error = dead["lastError"].as_str().unwrap();
    assert!(error.starts_with("HTTP 404: xxx"), "{error}");
    assert!(
        error.len() < 1100,
        "the excerpt is bounded: {} bytes",
        error.len()
    );
    wait_status(&w, &after, "completed");
    assert_eq!(server.record().attempts_of(&bad).len(), 1);
    let status = app.sync_queue().outbox_status();
    assert_eq!(status.destinations[0].counters.dead, 2);
}

#[test]
fn a_response_past_the_timeout_is_retried_and_the_effect_applied_once() {
    let server = TestServer::start();
    server.on(
        "/slow",
        Behaviour::SlowFirst {
            times: 1,
            delay: Duration::from_secs(3),
        },
    );
    let (_app, w) = app("a_response_past_the_timeout", outbox_config());
    let id = enqueue(
        &w,
        json!({"url": server.url("/slow"), "body": "once", "timeoutMs": 300}),
    );
    let done = wait_status(&w, &id, "completed");
    assert_eq!(done["attempts"], 2, "{done}");
    let record = server.record();
    assert_eq!(record.effects_of(&id), 1, "applied once");
    assert_eq!(record.attempts_of(&id).len(), 2, "the second was a replay");
}

/// A server whose `/long` answers its first request after 7 s, and an outbox
/// whose pop lease is shorter than that (2 x its 200 ms timeout + 5 s).
fn slower_than_the_lease(
    test: &str,
    concurrency: u32,
) -> (TestServer, TestApp, WebviewWindow<MockRuntime>) {
    let server = TestServer::start();
    server.on(
        "/long",
        Behaviour::SlowFirst {
            times: 1,
            delay: Duration::from_secs(7),
        },
    );
    let config = OutboxConfig {
        timeout_ms: 200,
        concurrency,
        ..outbox_config()
    };
    let (app, w) = app(test, config);
    (server, app, w)
}

#[test]
fn a_request_longer_than_the_lease_is_sent_once() {
    // This request may take 10 s (its own timeoutMs).
    let (server, _app, w) = slower_than_the_lease("a_request_longer_than_the_lease", 8);
    let id = enqueue(
        &w,
        json!({"url": server.url("/long"), "body": "once", "timeoutMs": 10_000}),
    );
    let done = wait_status(&w, &id, "completed");
    assert_eq!(done["attempts"], 1, "{done}");
    let record = server.record();
    assert_eq!(record.attempts_of(&id).len(), 1, "sent once");
    assert_eq!(record.effects_of(&id), 1);
}

#[test]
fn a_request_that_waited_past_its_lease_is_not_sent_twice() {
    // One slot, taken for 7 s by a long request; the next item waits in the
    // dispatcher's buffer past its lease (5.4 s) and is handed out again.
    let (server, _app, w) = slower_than_the_lease("a_request_that_waited_past_its_lease", 1);
    let long = enqueue(
        &w,
        json!({"url": server.url("/long"), "body": "long", "timeoutMs": 10_000}),
    );
    let next = enqueue(&w, json!({"url": server.url("/next"), "body": "next"}));
    wait_status(&w, &long, "completed");
    wait_status(&w, &next, "completed");
    std::thread::sleep(Duration::from_millis(300)); // a second copy would land by now
    let record = server.record();
    assert_eq!(record.attempts_of(&next).len(), 1, "sent once");
    assert_eq!(record.effects_of(&next), 1);
}

#[test]
fn an_outage_charges_no_attempts_and_ends_by_itself() {
    let mut server = TestServer::start();
    let (app, w) = app("an_outage_charges_no_attempts", outbox_config());
    let offline = collect(&app, "sync-queue://destination-offline");
    let online = collect(&app, "sync-queue://destination-online");
    let first = enqueue(&w, json!({"url": server.url("/x"), "body": 0}));
    wait_status(&w, &first, "completed");

    server.stop();
    let ids: Vec<String> = (1..=5)
        .map(|n| {
            enqueue(
                &w,
                json!({"url": server.url("/x"), "body": n, "maxRetries": 1}),
            )
        })
        .collect();
    let event = offline.recv_timeout(DEADLINE).expect("destination-offline");
    assert_eq!(event["destination"], server.origin());
    assert!(event["nextProbeAt"].as_i64().is_some(), "{event}");
    // Let the outage last through several probes (probe gaps ≤ 1 s here).
    let status = || app.sync_queue().outbox_status().destinations[0].clone();
    let first_probe = status().next_probe_at.unwrap();
    wait_for("two more probes", || {
        status()
            .next_probe_at
            .is_some_and(|at| at > first_probe + 150)
    });
    assert_eq!(
        status().state,
        tauri_plugin_sync_queue::outbox::connectivity::Reach::Offline
    );
    for id in &ids {
        let it = item(&w, id);
        assert_eq!(
            (it["status"].as_str(), it["attempts"].as_i64()),
            (Some("pending"), Some(0)),
            "{it}"
        );
    }

    server.resume();
    for id in &ids {
        let done = wait_status(&w, id, "completed");
        // One attempt: the offline time cost none (maxRetries 1 would have
        // failed them otherwise).
        assert_eq!(done["attempts"], 1, "{done}");
    }
    let event = online.recv_timeout(DEADLINE).expect("destination-online");
    assert_eq!(event["destination"], server.origin());
    for id in &ids {
        assert_eq!(server.record().effects_of(id), 1);
    }
}

#[test]
fn the_app_can_switch_dispatch_off_and_on() {
    let server = TestServer::start();
    let (app, w) = app("the_app_can_switch_dispatch_off", outbox_config());
    invoke(&w, "set_online", json!({"online": false})).unwrap();
    let id = enqueue(&w, json!({"url": server.url("/x")}));
    let status: Value = invoke(&w, "outbox_status", json!({})).unwrap();
    assert_eq!(status["online"], false, "{status}");
    // Nothing is sent while offline. A pop that was already waiting may hand
    // the item out once; the dispatcher gives it straight back, uncharged.
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        assert!(server.record().attempts.is_empty(), "sent while offline");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(wait_status(&w, &id, "pending")["attempts"], 0);
    assert!(server.record().attempts.is_empty());
    invoke(
        &w,
        "set_online",
        json!({"online": true, "destination": server.url("/any")}),
    )
    .unwrap();
    invoke(&w, "set_online", json!({"online": true})).unwrap();
    let done = wait_status(&w, &id, "completed");
    assert_eq!(done["attempts"], 1);
    assert!(app.sync_queue().outbox_status().online);
}

#[test]
fn a_401_holds_the_destination_until_new_headers() {
    let server = TestServer::start();
    server.on(
        "/me",
        Behaviour::Auth {
            token: "fresh".into(),
        },
    );
    let (app, w) = app("a_401_holds_the_destination", outbox_config());
    let auth = collect(&app, "sync-queue://auth-required");
    let online = collect(&app, "sync-queue://destination-online");
    invoke(
        &w,
        "set_headers",
        json!({"destination": server.origin(), "headers": {"Authorization": "Bearer stale"}}),
    )
    .unwrap();
    let id = enqueue(&w, json!({"url": server.url("/me"), "maxRetries": 0}));
    let event = auth.recv_timeout(DEADLINE).expect("auth-required");
    assert_eq!(event["destination"], server.origin());
    assert_eq!(event["status"], 401);
    assert_eq!(event["itemId"], id.as_str());
    wait_for("the hold", || {
        let s: Value = invoke(&w, "outbox_status", json!({})).unwrap();
        s["destinations"][0]["state"] == "authRequired"
    });
    // A pop already waiting when the hold began may hand it out once more;
    // the dispatcher then gives it straight back, uncharged.
    let held = wait_status(&w, &id, "pending");
    // maxRetries 0: a charged 401 would have made it dead.
    assert_eq!(
        (held["status"].as_str(), held["attempts"].as_i64()),
        (Some("pending"), Some(0)),
        "{held}"
    );
    let tries = server.record().attempts_of(&id).len();

    invoke(
        &w,
        "set_headers",
        json!({"destination": server.url("/me?x=1"), "headers": {"Authorization": "Bearer fresh"}}),
    )
    .unwrap();
    assert_eq!(
        online.recv_timeout(DEADLINE).unwrap()["destination"],
        server.origin()
    );
    let done = wait_status(&w, &id, "completed");
    assert_eq!(done["attempts"], 1);
    assert_eq!(server.record().attempts_of(&id).len(), tries + 1);
    assert_eq!(server.record().effects_of(&id), 1);
}

#[test]
fn bad_headers_are_refused_by_set_headers() {
    let server = TestServer::start();
    let (_app, w) = app("bad_headers_are_refused", outbox_config());
    for headers in [
        json!({"Authorization": "Bearer abc\n"}),
        json!({"bad name": "v"}),
    ] {
        let answer = invoke(
            &w,
            "set_headers",
            json!({"destination": server.origin(), "headers": headers}),
        );
        let error = answer.expect_err("refused");
        assert_eq!(error["kind"], "InvalidParams", "{headers}: {error}");
    }
}

#[test]
fn an_item_whose_id_cannot_be_the_idempotency_key_is_never_sent() {
    // Pushed with `push`, not enqueue_request (which refuses such an id).
    let server = TestServer::start();
    let (_app, w) = app("an_item_whose_id_cannot_be", outbox_config());
    let url = server.url("/x");
    let item = json!({"item": {
        "id": "a\nb",
        "payload": {"http": {"method": "POST", "url": url, "headers": {}}},
        "destination": server.origin(),
    }});
    let id = invoke(&w, "push", item).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let dead = wait_status(&w, &id, "failed");
    let error = dead["lastError"].as_str().unwrap();
    assert!(
        error.contains("cannot be sent as the Idempotency-Key"),
        "{dead}"
    );
    assert_eq!(dead["attempts"], 1, "{dead}");
    assert!(server.record().attempts.is_empty(), "nothing sent");
    assert_eq!(dead["attempts"], 1, "{dead}");
}

#[test]
fn a_bad_request_is_refused_before_it_is_stored() {
    let (_app, w) = app("a_bad_request_is_refused", outbox_config());
    for request in [
        json!({"url": "ftp://h/x"}),
        json!({"url": "http://h/", "method": "NO PE"}),
        json!({"url": "http://h/", "body": "a", "bodyBase64": "AA=="}),
    ] {
        let err = invoke(&w, "enqueue_request", json!({ "request": request })).unwrap_err();
        assert_eq!(err["kind"], "InvalidParams", "{request}: {err}");
    }
    let stats: Value = invoke(&w, "stats", json!({})).unwrap();
    assert_eq!(stats["totalEnqueued"], 0);
}

/// One slot, a 300 ms stall watchdog, and an app classification hook that
/// hangs on the first response until the returned sender is used (or 20 s).
fn first_classification_hangs(
    test: &str,
    timeout_ms: u64,
) -> (
    TestServer,
    TestApp,
    WebviewWindow<MockRuntime>,
    std::sync::mpsc::Sender<()>,
) {
    let server = TestServer::start();
    let (release, hang) = std::sync::mpsc::channel::<()>();
    let hang = Mutex::new(Some(hang));
    let command = real_sidecar(test);
    let builder = plugin_for(&command)
        .queue_config(fast_retries())
        .outbox(OutboxConfig {
            concurrency: 1,
            stall_after_ms: 300,
            timeout_ms,
            ..outbox_config()
        })
        .classify(move |_, _, _| {
            let first = hang.lock().unwrap().take();
            if let Some(hang) = first {
                let _ = hang.recv_timeout(Duration::from_secs(20));
            }
            None
        });
    let (app, w) = app_with(builder);
    (server, app, w, release)
}

#[test]
fn a_restarted_dispatcher_leaves_no_request_counted_in_flight() {
    // One slot, taken by a request whose classification hangs (an app hook
    // stuck on a lock) past the request's time: the watchdog (300 ms)
    // replaces the dispatcher while that request still counts as on the
    // wire, aborting its task. (A request still within its timeout is not a
    // stall: a_slot_busy_with_a_request_in_its_time_is_not_a_stall.)
    let (server, app, w, release) =
        first_classification_hangs("a_restarted_dispatcher_leaves_no", 500);
    let stalled = collect(&app, "sync-queue://outbox-stalled");
    let stuck = enqueue(&w, json!({"url": server.url("/a"), "partitionKey": "a"}));
    wait_for("the stuck request on the wire", || {
        server.record().effects_of(&stuck) == 1
    });
    let next = enqueue(&w, json!({"url": server.url("/next"), "partitionKey": "b"}));
    stalled.recv_timeout(DEADLINE).expect("outbox-stalled");
    wait_status(&w, &next, "completed");
    let _ = release.send(());
    wait_for("nothing counted in flight", || {
        let status = app.sync_queue().outbox_status();
        status.in_flight == 0 && status.destinations.iter().all(|d| d.in_flight == 0)
    });
}

#[test]
fn a_stalled_dispatcher_is_reported_and_restarted() {
    // The first response's classification hangs (an app hook stuck on a
    // lock, say): with one slot, the dispatcher makes no more progress.
    let timeout_ms = outbox_config().timeout_ms;
    let (server, app, w, release) =
        first_classification_hangs("a_stalled_dispatcher_is_reported", timeout_ms);
    // Each event with what outbox_status says while it is emitted.
    let (tx, stalled) = std::sync::mpsc::channel();
    let handle = app.handle().clone();
    app.listen("sync-queue://outbox-stalled", move |e| {
        let event: Value = serde_json::from_str(e.payload()).unwrap();
        let _ = tx.send((event, handle.sync_queue().outbox_status()));
    });
    let stuck = enqueue(&w, json!({"url": server.url("/a"), "partitionKey": "a"}));
    wait_for("the first request applied", || {
        server.record().effects_of(&stuck) == 1
    });
    let next = enqueue(&w, json!({"url": server.url("/b"), "partitionKey": "b"}));

    let (event, status) = stalled.recv_timeout(DEADLINE).expect("outbox-stalled");
    assert_eq!(event["restarted"], true, "{event}");
    let reason = event["reason"].as_str().unwrap();
    assert!(reason.contains("none was sent or finished"), "{reason}");
    assert_eq!(status.stalled.map(|s| s.reason).as_deref(), Some(reason));
    // The fresh dispatcher serves the other key while the old one hangs.
    wait_status(&w, &next, "completed");
    let status = app.sync_queue().outbox_status();
    assert!(status.running && status.stalled.is_none(), "{status:?}");
    let _ = release.send(());
}

#[test]
fn a_slot_busy_with_a_request_in_its_time_is_not_a_stall() {
    // The request may take 5 s (its own timeoutMs), far past stallAfterMs,
    // and the only slot waits for it while another item is due: waiting,
    // not stuck. A restart would cut it off and charge the attempt.
    let server = TestServer::start();
    server.on(
        "/slow",
        Behaviour::SlowFirst {
            times: 1,
            delay: Duration::from_millis(1_500),
        },
    );
    let (app, w) = app(
        "a_slot_busy_with_a_request_in_its_time",
        OutboxConfig {
            concurrency: 1,
            stall_after_ms: 300,
            ..outbox_config()
        },
    );
    let (tx, stalled) = std::sync::mpsc::channel();
    app.listen("sync-queue://outbox-stalled", move |e| {
        let _ = tx.send(e.payload().to_string());
    });
    let slow = enqueue(
        &w,
        json!({"url": server.url("/slow"), "timeoutMs": 5_000, "partitionKey": "a"}),
    );
    let next = enqueue(&w, json!({"url": server.url("/b"), "partitionKey": "b"}));
    let done = wait_status(&w, &slow, "completed");
    assert_eq!(done["attempts"], 1, "{done}");
    wait_status(&w, &next, "completed");
    let record = server.record();
    assert_eq!(record.attempts_of(&slow).len(), 1, "sent once");
    assert_eq!(record.effects_of(&slow), 1);
    assert!(stalled.try_recv().is_err(), "no outbox-stalled event");
    assert!(app.sync_queue().outbox_status().stalled.is_none());
}

#[test]
fn held_requests_wait_for_release_and_unique_work_is_kept_once() {
    let server = TestServer::start();
    let (_app, w) = app("held_requests_wait_for_release", outbox_config());
    let held = enqueue(
        &w,
        json!({"url": server.url("/a"), "hold": true, "partitionKey": "p"}),
    );
    let behind = enqueue(&w, json!({"url": server.url("/b"), "partitionKey": "p"}));
    let other = enqueue(&w, json!({"url": server.url("/c"), "partitionKey": "q"}));
    wait_status(&w, &other, "completed");
    assert_eq!(item(&w, &held)["status"], "held");
    assert_eq!(item(&w, &behind)["status"], "pending");
    assert_eq!(server.record().effects.len(), 1, "only the other key's");

    invoke(&w, "release", json!({"id": held})).unwrap();
    wait_status(&w, &behind, "completed");
    let order: Vec<String> = server
        .record()
        .effects
        .iter()
        .map(|e| e.key.clone())
        .collect();
    assert_eq!(order, [other.clone(), held.clone(), behind.clone()]);

    let unique = json!({"key": "sync-profile", "policy": "keep"});
    let first = invoke(
        &w,
        "enqueue_request",
        json!({"request": {"url": server.url("/p"), "hold": true, "unique": unique}}),
    )
    .unwrap();
    let again = invoke(
        &w,
        "enqueue_request",
        json!({"request": {"url": server.url("/p"), "unique": unique}}),
    )
    .unwrap();
    assert_eq!(first["unique"], "added");
    assert_eq!(
        (&again["id"], &again["unique"]),
        (&first["id"], &json!("kept"))
    );
    invoke(&w, "reject", json!({"id": first["id"]})).unwrap();
    assert_eq!(
        item(&w, first["id"].as_str().unwrap())["status"],
        "cancelled"
    );
}

#[test]
fn a_connection_broken_by_a_dying_host_costs_no_attempt() {
    use std::{
        net::TcpListener,
        sync::atomic::{AtomicBool, Ordering},
    };
    // A host that accepts connections and drops them unanswered: the request
    // fails after connecting (not a refused connection), and the probe that
    // follows fails the same way, so the outbox takes it for an outage.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let dropping = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => drop(conn),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        })
    };
    let (app, w) = app("a_connection_broken_by_a_dying_host", outbox_config());
    let offline = collect(&app, "sync-queue://destination-offline");
    let url = format!("http://{addr}/x");
    let id = enqueue(&w, json!({"url": url, "body": "once", "maxRetries": 0}));
    let event = offline.recv_timeout(DEADLINE).expect("destination-offline");
    assert_eq!(event["destination"], format!("http://{addr}"));
    let error = event["error"].as_str().unwrap();
    assert!(!error.to_lowercase().contains("refused"), "{error}");
    let waiting = wait_status(&w, &id, "pending");
    // maxRetries 0: a charged attempt would have made it dead.
    assert_eq!(waiting["attempts"], 0, "{waiting}");

    stop.store(true, Ordering::SeqCst);
    dropping.join().unwrap();
    let server = TestServer::start_on(addr);
    let done = wait_status(&w, &id, "completed");
    assert_eq!(done["attempts"], 1, "{done}");
    assert_eq!(server.record().effects_of(&id), 1);
}

#[test]
fn a_slowdown_after_a_fast_drain_charges_no_attempt_for_the_wait_in_the_buffer() {
    // One slot, 3 s timeout. A fast drain sizes the pops by its rate (up to 8
    // rounds ahead); the slow requests (2 s each) popped at the end of it then
    // wait in the buffer behind one another, the last ~14 s: past a lease of
    // two timeouts and the margin (11 s), which ended there and cost the item
    // an attempt ("lease expired"). On a machine too slow to reach the rate,
    // the buffer is shorter and this passes either way.
    let server = TestServer::start();
    server.on(
        "/slow",
        Behaviour::Work {
            work: Duration::from_secs(2),
        },
    );
    let config = OutboxConfig {
        concurrency: 1,
        timeout_ms: 3_000,
        ..outbox_config()
    };
    let (app, w) = app("a_slowdown_after_a_fast_drain", config);
    invoke(&w, "set_online", json!({"online": false})).unwrap();
    let queue = app.sync_queue();
    let enqueue_to = |path: &str| {
        let request = HttpRequest::new("POST", server.url(path));
        tauri::async_runtime::block_on(queue.enqueue_request(&request))
            .unwrap()
            .id
    };
    for _ in 0..3000 {
        enqueue_to("/fast");
    }
    let slow: Vec<String> = (0..8).map(|_| enqueue_to("/slow")).collect();
    invoke(&w, "set_online", json!({"online": true})).unwrap();
    for id in &slow {
        let done = wait_status(&w, id, "completed");
        assert_eq!(done["attempts"], 1, "charged for its wait: {done}");
        assert_eq!(server.record().attempts_of(id).len(), 1);
    }
}
