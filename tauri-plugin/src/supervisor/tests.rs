//! The supervisor against the fake sidecar (tests/fixtures/fake_sidecar.py).

use super::process::process_exists;
use super::*;
use crate::config::Timing;
use serde_json::json;

fn fake(env: &[(&str, &str)]) -> LaunchSpec {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/fake_sidecar.py"
    );
    let mut spec = LaunchSpec::command("python3", [script, "--memory"]);
    spec.env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    spec.timing = Timing {
        call_timeout: Duration::from_secs(10),
        ready_timeout: Duration::from_secs(10),
        stop_timeout: Duration::from_millis(500),
        restart_delay: Duration::from_millis(50),
        max_restart_delay: Duration::from_millis(200),
    };
    spec
}

type Events = Arc<Mutex<Vec<SupervisorEvent>>>;

fn start(spec: LaunchSpec) -> (Supervisor, Events) {
    let events: Events = Arc::default();
    let seen = events.clone();
    let sink: EventSink = Arc::new(move |e| seen.lock().unwrap().push(e));
    (
        Supervisor::start(&tokio::runtime::Handle::current(), spec, sink),
        events,
    )
}

fn exits(events: &Events) -> Vec<SidecarExited> {
    let events = events.lock().unwrap();
    events
        .iter()
        .filter_map(|e| match e {
            SupervisorEvent::Exited(x) => Some(x.clone()),
            _ => None,
        })
        .collect()
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_wait_for_ready_and_notifications_reach_the_sink() {
    let (sup, events) = start(fake(&[("FAKE_NOISE", "1")]));
    let pong = sup.call("ping", &json!({}), Duration::ZERO).await.unwrap();
    assert_eq!(pong, json!({"pong": true}));
    assert!(sup.is_ready());
    sup.call("push", &json!({"payload": 1}), Duration::ZERO)
        .await
        .unwrap();
    eventually("itemsAvailable", || {
        events.lock().unwrap().iter().any(|e| {
            matches!(e, SupervisorEvent::Notification(n) if n.method == "itemsAvailable" && n.params == json!({"pending": 1}))
        })
    })
    .await;
    assert!(
        matches!(events.lock().unwrap()[0], SupervisorEvent::Ready(ref p) if p["protocol"] == 1)
    );
    sup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn death_fails_calls_in_flight_with_the_stderr_tail_then_restarts() {
    let (sup, events) = start(fake(&[]));
    sup.call("ping", &json!({}), Duration::ZERO).await.unwrap();
    let first_pid = sup.pid().unwrap();
    let sup = Arc::new(sup);
    let in_flight: Vec<_> = (0..3)
        .map(|_| {
            let sup = sup.clone();
            tokio::spawn(async move {
                sup.call("sleep", &json!({"ms": 5000}), Duration::ZERO)
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let crash = sup
        .call("crash", &json!({}), Duration::ZERO)
        .await
        .unwrap_err();
    for result in std::iter::once(Ok(Err(crash))).chain(futures_join(in_flight).await) {
        let err = result.unwrap().unwrap_err();
        let Error::SidecarExited(info) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(info.code, Some(1));
        assert!(
            info.stderr_tail.contains("RuntimeError: boom"),
            "{}",
            info.stderr_tail
        );
        assert!(err.to_string().contains("RuntimeError: boom"));
    }
    // It comes back by itself, as a new process.
    let pong = sup.call("ping", &json!({}), Duration::ZERO).await.unwrap();
    assert_eq!(pong, json!({"pong": true}));
    assert_ne!(sup.pid(), Some(first_pid));
    assert!(!process_exists(first_pid));
    let exited = exits(&events);
    assert_eq!(exited.len(), 1);
    assert!(exited[0].restarting);
    assert_eq!(exited[0].code, Some(1));
    sup.stop().await;
}

async fn futures_join<T>(
    handles: Vec<JoinHandle<T>>,
) -> Vec<std::result::Result<T, tokio::task::JoinError>> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_closes_stdin_and_leaves_no_process() {
    let (sup, events) = start(fake(&[]));
    sup.call("ping", &json!({}), Duration::ZERO).await.unwrap();
    let pid = sup.pid().unwrap();
    let grandchild = sup
        .call("spawnChild", &json!({}), Duration::ZERO)
        .await
        .unwrap()["pid"]
        .as_u64()
        .unwrap();
    sup.stop().await;
    assert!(!process_exists(pid));
    assert!(
        !process_exists(grandchild as u32),
        "the process group is cleaned up"
    );
    let exited = exits(&events);
    assert_eq!(exited.len(), 1);
    assert!(!exited[0].restarting);
    // Exit status 0: it left on stdin EOF, no signal was needed.
    assert_eq!(exited[0].code, Some(0));
    assert!(exited[0].stderr_tail.contains("stdin closed"));
    let err = sup
        .call("ping", &json!({}), Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "ShuttingDown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stubborn_sidecar_is_killed_after_sigterm() {
    let (sup, events) = start(fake(&[("FAKE_STUBBORN", "1")]));
    sup.call("ping", &json!({}), Duration::ZERO).await.unwrap();
    let pid = sup.pid().unwrap();
    sup.stop().await;
    assert!(!process_exists(pid));
    assert_eq!(exits(&events)[0].signal, Some(libc::SIGKILL));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_fails_the_waiting_call_with_why() {
    let (sup, events) = start(fake(&[("FAKE_EXIT_EARLY", "1")]));
    let err = sup
        .call("ping", &json!({}), Duration::ZERO)
        .await
        .unwrap_err();
    let Error::SidecarExited(info) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(info.code, Some(1));
    assert!(
        info.stderr_tail.contains("owned by another process"),
        "{}",
        info.stderr_tail
    );
    eventually("sidecar-exited", || !exits(&events).is_empty()).await;
    assert!(exits(&events)[0].restarting);
    sup.stop().await;

    let mut spec = fake(&[]);
    spec.program = "/nonexistent/sync-queue-sidecar".into();
    let (sup, _) = start(spec);
    let err = sup
        .call("ping", &json!({}), Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "Spawn", "{err:?}");
    assert!(err.to_string().contains("/nonexistent/sync-queue-sidecar"));
    sup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_statuses_a_restart_cannot_fix_stop_the_restarts() {
    for (status, kind) in [
        ("2", "Config"),
        ("3", "Locked"),
        ("4", "DataUnreadable"),
        ("5", "DataDirUnusable"),
    ] {
        let (sup, events) = start(fake(&[("FAKE_EXIT_EARLY", status)]));
        let err = sup
            .call("ping", &json!({}), Duration::ZERO)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), kind, "exit status {status}: {err:?}");
        assert!(err.to_string().contains("not restarted"), "{err}");
        assert!(
            err.to_string().contains("owned by another process"),
            "{err}"
        );
        // Ten restart delays later: still the one exit, no new process.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let exited = exits(&events);
        assert_eq!(exited.len(), 1, "exit status {status}: {exited:?}");
        assert!(!exited[0].restarting);
        assert_eq!(exited[0].restart_in_ms, None);
        assert_eq!(exited[0].code, Some(status.parse().unwrap()));
        assert_eq!(sup.pid(), None);
        assert_eq!(
            sup.failure().map(|e| e.kind().to_owned()),
            Some(kind.into())
        );
        // Every later call fails at once with the same reason.
        let started = Instant::now();
        let again = sup
            .call("ping", &json!({}), Duration::ZERO)
            .await
            .unwrap_err();
        assert_eq!(again.kind(), kind);
        assert!(started.elapsed() < Duration::from_secs(1));
        sup.stop().await;
        let err = sup
            .call("ping", &json!({}), Duration::ZERO)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "ShuttingDown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_fail_when_the_launcher_dies_though_its_child_holds_the_pipes() {
    // A launcher (like a onefile PyInstaller binary) runs the sidecar as
    // its child, sharing the pipes. SIGKILL to the launcher alone leaves
    // the child serving, stdout open: the long poll must fail at once,
    // not get the child's empty answer once its stdin closes.
    let launcher = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/launcher.py");
    let mut spec = fake(&[]);
    spec.args.insert(0, spec.program.clone().into_os_string());
    spec.args.insert(0, launcher.into());
    let (sup, events) = start(spec);
    sup.call("ping", &json!({}), Duration::ZERO).await.unwrap();
    let launcher_pid = sup.pid().unwrap();
    let started = Instant::now();
    let params = json!({"timeoutMs": 20000});
    let pop = sup.call("pop", &params, Duration::from_secs(20));
    tokio::pin!(pop);
    // One poll queues the request; the ping queued after it is written
    // after it, so its answer means the sidecar has read the pop.
    assert!(tokio::time::timeout(Duration::ZERO, &mut pop)
        .await
        .is_err());
    sup.call("ping", &json!({}), Duration::ZERO).await.unwrap();
    // SAFETY: signals the launcher this test started, not its group.
    assert_eq!(
        unsafe { libc::kill(launcher_pid as libc::pid_t, libc::SIGKILL) },
        0
    );
    let err = pop.await.expect_err("the long poll must fail, not resolve");
    let Error::SidecarExited(info) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(info.signal, Some(libc::SIGKILL));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // It comes back, as a new process group.
    assert_eq!(
        sup.call("ping", &json!({}), Duration::ZERO).await.unwrap(),
        json!({"pong": true})
    );
    assert_ne!(sup.pid(), Some(launcher_pid));
    assert!(!process_exists(launcher_pid));
    assert!(exits(&events)[0].restarting);
    sup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_reaches_a_launchers_child_once() {
    // A launcher that forwards SIGTERM to its child (as a onefile
    // PyInstaller bootloader does): the stop signals the launcher only,
    // so the child gets one SIGTERM, not a second copy from the group.
    let launcher = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/launcher.py");
    let mut spec = fake(&[("FAKE_COUNT_SIGTERM", "1")]);
    spec.args.insert(0, spec.program.clone().into_os_string());
    spec.args.insert(0, launcher.into());
    let (sup, events) = start(spec);
    sup.call("ping", &json!({}), Duration::ZERO).await.unwrap();
    sup.stop().await;
    let exited = exits(&events);
    assert_eq!(exited[0].code, Some(0), "{exited:?}");
    assert_eq!(
        exited[0].stderr_tail.matches("got SIGTERM").count(),
        1,
        "{}",
        exited[0].stderr_tail
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_request_is_not_followed_by_a_restart() {
    let (sup, events) = start(fake(&[]));
    sup.shutdown_sidecar().await.unwrap();
    eventually("the stop", || !exits(&events).is_empty()).await;
    let exited = exits(&events);
    assert!(!exited[0].restarting, "{exited:?}");
    let err = sup
        .call("ping", &json!({}), Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "ShuttingDown");
}

#[test]
fn drop_outside_a_runtime_stops_the_sidecar() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let events: Events = Arc::default();
    let seen = events.clone();
    let sink: EventSink = Arc::new(move |e| seen.lock().unwrap().push(e));
    let sup = Supervisor::start(rt.handle(), fake(&[]), sink);
    rt.block_on(sup.call("ping", &json!({}), Duration::ZERO))
        .unwrap();
    let pid = sup.pid().unwrap();
    drop(sup);
    assert!(!process_exists(pid));
    assert_eq!(exits(&events).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_config_is_passed_as_a_file_and_removed_once_ready() {
    let mut spec = fake(&[]);
    spec.queue_config = Some(json!({"max_capacity": 7}).as_object().unwrap().clone());
    let (sup, _) = start(spec);
    sup.call("ping", &json!({}), Duration::ZERO).await.unwrap();
    let tail = sup.stderr_tail();
    let path = tail
        .split_whitespace()
        .skip_while(|w| *w != "--config")
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(path.ends_with(".config.json"), "{tail}");
    assert!(
        !std::path::Path::new(&path).exists(),
        "the config file is removed after ready"
    );
    sup.stop().await;
}
