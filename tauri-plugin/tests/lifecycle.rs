//! The sidecar behind a launcher, through the Rust API: tests/fixtures/launcher.py
//! runs the sidecar as its child, sharing its pipes, as a onefile PyInstaller
//! binary does. Run against the fake and the real sidecar (which fails if it
//! does not start; see tests/common/mod.rs).

mod common;

use std::time::{Duration, Instant};

use common::{app, collect, fake_sidecar, group_members, process_exists, real_sidecar};
use tauri_plugin_sync_queue::{models::PopOptions, Error, SyncQueueExt};

fn behind_launcher(command: &[String]) -> Vec<String> {
    let launcher = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/launcher.py");
    ["python3".to_owned(), launcher.to_owned()]
        .into_iter()
        .chain(command.iter().cloned())
        .collect()
}

#[test]
fn fake_long_poll_fails_when_the_launcher_dies() {
    long_poll_fails_when_the_launcher_dies(&fake_sidecar());
}

#[test]
fn real_long_poll_fails_when_the_launcher_dies() {
    long_poll_fails_when_the_launcher_dies(&real_sidecar(
        "real_long_poll_fails_when_the_launcher_dies",
    ));
}

/// SIGKILL to the launcher alone leaves its child serving and holding stdout.
/// The long poll in flight must fail with `SidecarExited` at once, not get the
/// empty answer the child gives when its stdin closes.
fn long_poll_fails_when_the_launcher_dies(command: &[String]) {
    let (app, _w) = app(&behind_launcher(command));
    let exited = collect(&app, "sync-queue://sidecar-exited");
    let queue = app.sync_queue();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (err, took, launcher) = rt.block_on(async {
        assert!(queue.ping().await.unwrap());
        let launcher = queue.sidecar_pid().expect("a running sidecar");
        assert_eq!(group_members(launcher).len(), 2, "launcher + sidecar");
        let options = PopOptions {
            timeout_ms: Some(20_000),
            ..Default::default()
        };
        let started = Instant::now();
        let pop = queue.pop(&options);
        tokio::pin!(pop);
        // One poll queues the request; the ping queued after it is written
        // after it, so its answer means the sidecar has read the pop.
        assert!(tokio::time::timeout(Duration::ZERO, &mut pop)
            .await
            .is_err());
        assert!(queue.ping().await.unwrap());
        // SAFETY: signals the launcher this test started, not its group.
        assert_eq!(
            unsafe { libc::kill(launcher as libc::pid_t, libc::SIGKILL) },
            0
        );
        let err = pop.await.expect_err("the long poll must fail, not resolve");
        (err, started.elapsed(), launcher)
    });
    let Error::SidecarExited(info) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(info.signal, Some(libc::SIGKILL), "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");

    let event = exited
        .recv_timeout(Duration::from_secs(20))
        .expect("sync-queue://sidecar-exited");
    assert_eq!(event["signal"], 9, "{event}");
    assert_eq!(event["restarting"], true, "{event}");
    // The orphaned child went with its group; a new sidecar answers.
    assert!(!process_exists(launcher));
    assert_eq!(group_members(launcher), Vec::<u32>::new());
    assert!(rt.block_on(queue.ping()).unwrap());
    assert_ne!(queue.sidecar_pid(), Some(launcher));
}
