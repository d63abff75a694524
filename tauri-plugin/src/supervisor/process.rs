//! The sidecar as an operating-system process: spawning it in a process group
//! of its own, signalling it, and ending what is left of that group.
//!
//! Every stop goes through one escalation, [`escalate`]: give the process
//! `grace` to go by itself (its stdin was closed, or its leader has exited),
//! then SIGTERM to the group's *leader* only and `grace` again, then SIGKILL
//! to the whole *group*. The SIGTERM goes to the leader because a onefile
//! PyInstaller launcher forwards it to its Python child: a SIGTERM to the
//! group would reach that child twice, and a second stop signal means "exit
//! at once". The SIGKILL goes to the group because a SIGKILL to the launcher
//! alone would orphan the child and leak its temporary directory.
//!
//! The async stop path and the blocking one (app exit, drop) both run
//! [`escalate`]; the blocking one on a private runtime ([`end_group_blocking`]).

use std::{
    io::Write as _,
    path::PathBuf,
    process::{ExitStatus, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::process::{Child, Command};

use crate::{
    config::LaunchSpec,
    error::{Error, Result},
};

/// How often a wait checks whether the process (or group) is gone.
const POLL: Duration = Duration::from_millis(10);

/// A file removed when dropped.
pub(super) struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Starts `spec` in a process group of its own (its pid is the group id),
/// with piped stdio. The queue config, if any, goes in a private temporary
/// file passed as `--config`; keep the returned file until the sidecar has
/// read it (it is removed when dropped).
pub(super) fn spawn(spec: &LaunchSpec, attempt: u64) -> Result<(Child, Option<TempFile>)> {
    let config_file = match &spec.queue_config {
        Some(queue) => Some(TempFile(write_config_file(queue, attempt).map_err(
            |e| Error::Config(format!("cannot write the queue config file: {e}")),
        )?)),
        None => None,
    };
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Last resort only: the stop is the real cleanup.
        .kill_on_drop(true);
    if let Some(file) = &config_file {
        cmd.arg("--config").arg(&file.0);
    }
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    #[cfg(unix)]
    cmd.process_group(0);
    let child = cmd.spawn().map_err(|e| Error::Spawn {
        program: spec.program.display().to_string(),
        source: Arc::new(e),
    })?;
    Ok((child, config_file))
}

/// Writes the queue config to a new private file in the temp directory.
fn write_config_file(
    queue: &serde_json::Map<String, Value>,
    attempt: u64,
) -> std::io::Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let path = std::env::temp_dir().join(format!(
        "sync-queue-{}-{attempt}-{nanos}.config.json",
        std::process::id()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path)?;
    let written = serde_json::to_writer(&mut file, queue)
        .map_err(std::io::Error::from)
        .and_then(|()| file.flush());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(path)
}

/// Stops a running child whose stdin was just closed: [`escalate`] until it
/// has exited, then its status.
pub(super) async fn stop_child(child: &mut Child, grace: Duration) -> std::io::Result<ExitStatus> {
    let pid = child.id().unwrap_or(0);
    escalate(pid, grace, || !matches!(child.try_wait(), Ok(None))).await;
    // Where signals are not available, this is the only kill.
    let _ = child.start_kill();
    child.wait().await
}

/// Ends whatever is left of the group once its leader has exited (a onefile
/// launcher's child, or anything else the sidecar started).
pub(super) async fn end_group(pgid: u32, grace: Duration) {
    if group_alive(pgid) {
        escalate(pgid, grace, || !group_alive(pgid)).await;
    }
}

/// [`end_group`] for synchronous code (app exit, drop), when the task that
/// owns the process could not stop it. Runs on a thread of its own with a
/// private runtime, so it may be called from anywhere.
pub(super) fn end_group_blocking(pgid: u32, grace: Duration) {
    let end = move || match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime.block_on(end_group(pgid, grace)),
        Err(_) => signal_group(pgid, Signal::Kill),
    };
    if std::thread::spawn(end).join().is_err() {
        signal_group(pgid, Signal::Kill);
    }
}

/// The one escalation (see the module doc): `grace` for `gone()` to become
/// true by itself; SIGTERM to the leader `pgid`, `grace` again; SIGKILL to
/// the group, and until it is gone (at most `grace` more).
pub(super) async fn escalate(pgid: u32, grace: Duration, mut gone: impl FnMut() -> bool) {
    if wait_until(&mut gone, grace).await {
        return;
    }
    // The leader may be gone already (only the rest of its group is left):
    // then there is no one to send SIGTERM to, and no second wait.
    if signal_leader(pgid, Signal::Term) {
        log::warn!(
            "the sync-queue sidecar (pid {pgid}) did not exit within {} ms; sent SIGTERM",
            grace.as_millis()
        );
        if wait_until(&mut gone, grace).await {
            return;
        }
    }
    log::warn!("the sync-queue sidecar (process group {pgid}) is still running; killing it");
    signal_group(pgid, Signal::Kill);
    // Dying takes the kernel a moment: return once it is done.
    wait_until(&mut gone, grace).await;
}

/// Whether `gone()` became true within `limit`.
async fn wait_until(gone: &mut impl FnMut() -> bool, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if gone() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

#[derive(Clone, Copy)]
enum Signal {
    Term,
    Kill,
}

#[cfg(unix)]
impl Signal {
    fn number(self) -> libc::c_int {
        match self {
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
        }
    }
}

/// A pid or pgid we may signal: never ours, init's, or "every process".
#[cfg(unix)]
fn signallable(id: u32) -> Option<libc::pid_t> {
    libc::pid_t::try_from(id).ok().filter(|&id| id > 1)
}

/// Signals the group's leader only; whether the signal was delivered.
#[cfg(unix)]
fn signal_leader(pid: u32, signal: Signal) -> bool {
    let Some(pid) = signallable(pid) else {
        return false;
    };
    // SAFETY: kill only sends a signal. The pid is the leader of a group we
    // spawned; a pid is not reused while its process group exists.
    unsafe { libc::kill(pid, signal.number()) == 0 }
}

#[cfg(unix)]
fn signal_group(pgid: u32, signal: Signal) {
    let Some(pgid) = signallable(pgid) else {
        return;
    };
    // SAFETY: killpg only sends a signal; the group is the sidecar's own
    // (spawned with process_group(0)), never ours or init's.
    unsafe {
        libc::killpg(pgid, signal.number());
    }
}

/// Whether any process of the group is still running. Zombies awaiting their
/// parent's wait count as gone (on Linux; elsewhere a zombie counts as
/// running until it is reaped, which only makes a wait last longer).
#[cfg(unix)]
fn group_alive(pgid: u32) -> bool {
    let Some(pgid) = signallable(pgid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the group exists and may be signalled.
    let exists = unsafe { libc::killpg(pgid, 0) } == 0;
    exists && !group_is_only_zombies(pgid)
}

#[cfg(target_os = "linux")]
fn group_is_only_zombies(pgid: libc::pid_t) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    let pgid = pgid.to_string();
    !entries.flatten().any(|entry| {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            return false;
        };
        proc_stat(pid).is_some_and(|(state, group)| group == pgid && state != "Z")
    })
}

#[cfg(all(unix, not(target_os = "linux")))]
fn group_is_only_zombies(_: libc::pid_t) -> bool {
    false
}

/// State and process group of `pid` from /proc/<pid>/stat: "pid (comm) state
/// ppid pgrp ...". The comm may hold spaces or parentheses, so fields are
/// counted after the last ')'.
#[cfg(target_os = "linux")]
fn proc_stat(pid: u32) -> Option<(String, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(((*fields.first()?).to_owned(), (*fields.get(2)?).to_owned()))
}

/// Whether process `pid` exists: `kill(pid, 0)` succeeds or is refused for
/// permission (ESRCH: no such process). On Linux a zombie (exited, not yet
/// reaped) counts as gone; elsewhere it counts as existing until reaped.
#[cfg(all(test, unix))]
pub(crate) fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(pid, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    #[cfg(target_os = "linux")]
    let exists = exists && proc_stat(pid as u32).is_some_and(|(state, _)| state != "Z");
    exists
}

#[cfg(unix)]
pub(super) fn exit_signal(status: &ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(status)
}

// Off unix the sidecar runs without a process group: there is nothing to
// signal (stop_child kills the one process with `start_kill`) and no group to
// wait for. `process_exists` is unix-only; so are the tests that use it.

#[cfg(not(unix))]
pub(super) fn exit_signal(_: &ExitStatus) -> Option<i32> {
    None
}

#[cfg(not(unix))]
fn signal_leader(_: u32, _: Signal) -> bool {
    false
}

#[cfg(not(unix))]
fn signal_group(_: u32, _: Signal) {}

#[cfg(not(unix))]
fn group_alive(_: u32) -> bool {
    false
}
