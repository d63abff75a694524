//! Runs the sidecar process and keeps it running.
//!
//! One task per supervisor loops: spawn (own process group) → wait for the
//! `ready` notification → serve → the process ends → fail every call in flight
//! with the exit status and the tail of stderr → wait (backoff) → spawn again.
//! A requested stop (app exit, `shutdown`, drop) ends the loop instead.
//!
//! Calls in flight fail as soon as the process we spawned has exited and what
//! it wrote before has been read, not at EOF on its stdout: a process it
//! started (a onefile launcher's Python child) may hold the pipe open and,
//! once its stdin closes, answer waiting long polls with an empty result.
//!
//! An exit status that a restart cannot fix (2 bad command line, config or
//! key; 3 `Locked`; 4 data unreadable; 5 data directory unusable) ends the
//! loop in the `Failed` state: no restart, and every call fails with why.
//!
//! Stopping is gentle first: close stdin (the sidecar answers what it has read,
//! persists and exits), wait; SIGTERM the process we spawned (the group's
//! leader), wait; only then SIGKILL the whole group. A onefile PyInstaller
//! sidecar is two processes: its launcher forwards the SIGTERM to its Python
//! child, so the child gets it once (a SIGTERM to the group would reach it
//! twice, and a second stop signal means "exit at once"). A SIGKILL to only
//! the launcher would orphan the child and leak its temporary directory,
//! hence the group for the SIGKILL.
//!
//! Like the client, this module knows nothing of Tauri: events go to a sink.

use std::{
    collections::VecDeque,
    io::Write as _,
    path::PathBuf,
    process::{ExitStatus, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use serde::Serialize;
use serde_json::Value;
use tokio::{
    io::{AsyncRead, BufReader},
    process::{Child, Command},
    sync::{oneshot, watch},
    task::JoinHandle,
};

use crate::{
    client::{read_line_bounded, Client, ClientTasks, LineRead, Notification, NotificationSink},
    config::LaunchSpec,
    error::{Error, ExitInfo, Result},
    models::SidecarExited,
    pipe::{self, PipeProbe},
};

/// Lines of stderr kept for error messages.
const TAIL_LINES: usize = 40;
/// Longest stderr line kept (a longer one is cut); the log gets it whole.
const TAIL_LINE_CHARS: usize = 2000;
const MAX_STDERR_LINE: usize = 1024 * 1024;
/// A sidecar that ran this long before it died restarts with the first delay again.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// Longest wait, once the process has exited, for the replies and stderr
/// lines it wrote before to be read (normally a few milliseconds).
const SETTLE_LIMIT: Duration = Duration::from_secs(1);

/// What the supervisor reports to the app.
#[derive(Debug, Clone)]
pub enum SupervisorEvent {
    /// The sidecar announced `ready` (its params).
    Ready(Value),
    /// Any other notification from the sidecar.
    Notification(Notification),
    /// The sidecar process ended.
    Exited(SidecarExited),
}

pub type EventSink = Arc<dyn Fn(SupervisorEvent) + Send + Sync>;

#[derive(Clone)]
enum State {
    Starting {
        attempt: u64,
    },
    Ready {
        client: Arc<Client>,
    },
    /// The attempt failed; the next one starts after a delay.
    Backoff {
        attempt: u64,
        error: Error,
    },
    /// The sidecar exited with a status a restart cannot fix: no restart,
    /// every call fails with this error until the supervisor is stopped.
    Failed {
        error: Error,
    },
    Stopped,
}

/// The last lines of the sidecar's stderr.
#[derive(Default)]
struct Tail {
    lines: VecDeque<String>,
}

impl Tail {
    fn push(&mut self, line: &str) {
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        let mut line = line.to_owned();
        if line.len() > TAIL_LINE_CHARS {
            let mut cut = TAIL_LINE_CHARS;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        self.lines.push_back(line);
    }

    fn text(&self) -> String {
        self.lines
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

struct Inner {
    state: watch::Sender<State>,
    stop: watch::Sender<bool>,
    /// Set just before the `shutdown` request: the exit that follows is wanted.
    exit_expected: AtomicBool,
    tail: Mutex<Tail>,
    /// Process group of the running sidecar (= its pid), 0 when none.
    pgid: AtomicU32,
    spec: LaunchSpec,
}

impl Inner {
    fn tail_text(&self) -> String {
        self.tail.lock().unwrap_or_else(|e| e.into_inner()).text()
    }

    /// Says at once that attempt `attempt` failed, before the process group
    /// is cleaned up: new calls then wait for the restart (or fail with a
    /// fatal error) instead of reaching the dead process's client.
    fn publish_failure(&self, attempt: u64, error: &Error) {
        let state = match error {
            Error::SidecarFailed(_) => State::Failed {
                error: error.clone(),
            },
            _ => State::Backoff {
                attempt,
                error: error.clone(),
            },
        };
        self.state.send_replace(state);
    }
}

/// Handle to a running supervisor. Dropping it stops the sidecar.
pub struct Supervisor {
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

impl Supervisor {
    /// Starts supervising `spec` on `runtime`. Returns at once; the first
    /// start happens in the background (calls wait for it).
    pub fn start(
        runtime: &tokio::runtime::Handle,
        spec: LaunchSpec,
        sink: EventSink,
    ) -> Supervisor {
        let (state, _) = watch::channel(State::Starting { attempt: 1 });
        let (stop, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            state,
            stop,
            exit_expected: AtomicBool::new(false),
            tail: Mutex::default(),
            pgid: AtomicU32::new(0),
            spec,
        });
        let task = runtime.spawn(run(inner.clone(), sink));
        Supervisor { inner, task }
    }

    /// Calls `method` once the sidecar is ready. The time limit is the call
    /// timeout plus `extra` (a long poll's own wait), waiting for a start
    /// included. If the start in progress fails, the call fails with why.
    pub async fn call<P>(&self, method: &str, params: &P, extra: Duration) -> Result<Value>
    where
        P: Serialize + ?Sized,
    {
        let timeout = self.inner.spec.timing.call_timeout + extra;
        let deadline = Instant::now() + timeout;
        let client = match tokio::time::timeout(timeout, self.ready_client()).await {
            Ok(client) => client?,
            Err(_) => {
                return Err(Error::Timeout {
                    method: method.to_owned(),
                    timeout,
                })
            }
        };
        let left = deadline.saturating_duration_since(Instant::now());
        match client.call(method, params, left).await {
            // Report the whole limit, not what was left of it.
            Err(Error::Timeout { .. }) => Err(Error::Timeout {
                method: method.to_owned(),
                timeout,
            }),
            other => other,
        }
    }

    async fn ready_client(&self) -> Result<Arc<Client>> {
        let mut rx = self.inner.state.subscribe();
        // An attempt that fails from now on fails this call too.
        let first_counting = match &*rx.borrow_and_update() {
            State::Ready { client, .. } => return Ok(client.clone()),
            State::Stopped => return Err(Error::Stopped),
            State::Failed { error } => return Err(error.clone()),
            State::Starting { attempt } => *attempt,
            State::Backoff { attempt, .. } => attempt + 1,
        };
        loop {
            if rx.changed().await.is_err() {
                return Err(Error::Stopped);
            }
            match &*rx.borrow_and_update() {
                State::Ready { client, .. } => return Ok(client.clone()),
                State::Stopped => return Err(Error::Stopped),
                State::Failed { error } => return Err(error.clone()),
                State::Backoff { attempt, error } if *attempt >= first_counting => {
                    return Err(error.clone())
                }
                _ => {}
            }
        }
    }

    /// Sends the protocol's `shutdown` request: the sidecar stops taking work,
    /// persists, answers and exits, and it is not restarted.
    pub async fn shutdown_sidecar(&self) -> Result<Value> {
        self.inner.exit_expected.store(true, Ordering::SeqCst);
        let result = self
            .call("shutdown", &serde_json::json!({}), Duration::ZERO)
            .await;
        match result {
            Ok(_) => {
                // It is exiting; wait until it is gone, so later calls get `Stopped`.
                self.stop().await;
            }
            Err(_) => self.inner.exit_expected.store(false, Ordering::SeqCst),
        }
        result
    }

    /// Stops the sidecar (stdin EOF, then SIGTERM, then SIGKILL to its group)
    /// and waits until it is gone. Calls in flight fail with `Stopped`.
    pub async fn stop(&self) {
        self.inner.stop.send_replace(true);
        let mut rx = self.inner.state.subscribe();
        let stopped = rx.wait_for(|s| matches!(s, State::Stopped));
        // Bounded, in case the task died without saying so (a panic).
        let _ = tokio::time::timeout(self.stop_limit() + Duration::from_secs(5), stopped).await;
    }

    /// [`Supervisor::stop`] for synchronous code (app exit, drop), outside an
    /// async runtime. Gives up after `limit`; the group is then killed here.
    pub fn stop_blocking(&self, limit: Duration) {
        self.inner.stop.send_replace(true);
        let deadline = Instant::now() + limit;
        while !self.task.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        // If the runtime could not run the stop (it is shutting down), make
        // sure nothing of the group survives us.
        let pgid = self.inner.pgid.load(Ordering::SeqCst);
        if pgid != 0 {
            terminate_group_blocking(pgid, self.inner.spec.timing.stop_timeout);
        }
    }

    /// Process id of the running sidecar (its process group id too).
    pub fn pid(&self) -> Option<u32> {
        Some(self.inner.pgid.load(Ordering::SeqCst)).filter(|&p| p != 0)
    }

    /// The last lines the sidecar wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        self.inner.tail_text()
    }

    /// Whether the sidecar is up and answering.
    pub fn is_ready(&self) -> bool {
        matches!(*self.inner.state.borrow(), State::Ready { .. })
    }

    /// Why the sidecar is not restarted, once it exited with a status a
    /// restart cannot fix (every call fails with this error).
    pub fn failure(&self) -> Option<Error> {
        match &*self.inner.state.borrow() {
            State::Failed { error } => Some(error.clone()),
            _ => None,
        }
    }

    /// How long a whole stop may take: stdin grace, SIGTERM grace, a margin.
    pub fn stop_limit(&self) -> Duration {
        self.inner.spec.timing.stop_timeout * 2 + Duration::from_secs(1)
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if matches!(*self.inner.state.borrow(), State::Stopped) {
            return;
        }
        if tokio::runtime::Handle::try_current().is_ok() {
            // Blocking a runtime thread could stall the very task that stops
            // the sidecar: ask, and let it finish in the background.
            self.inner.stop.send_replace(true);
        } else {
            self.stop_blocking(self.stop_limit());
        }
    }
}

enum Outcome {
    /// A stop was requested (or the exit was expected): do not restart.
    Stopped,
    /// The attempt ended badly: restart after a delay.
    Failed {
        error: Error,
        exit: Option<ExitInfo>,
    },
}

async fn run(inner: Arc<Inner>, sink: EventSink) {
    let timing = inner.spec.timing;
    let mut delay = timing.restart_delay;
    let mut stop_rx = inner.stop.subscribe();
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        inner.state.send_replace(State::Starting { attempt });
        let started = Instant::now();
        let outcome = run_once(&inner, &sink, attempt, &mut stop_rx).await;
        inner.pgid.store(0, Ordering::SeqCst);
        let (error, exit) = match outcome {
            Outcome::Stopped => break,
            Outcome::Failed { error, exit } => (error, exit),
        };
        if let Error::SidecarFailed(info) = &error {
            // Starting it again would fail the same way (or, for `Locked`,
            // fight the other instance for its directory): stay failed.
            log::error!("{error}");
            let exited = SidecarExited {
                code: info.code,
                signal: info.signal,
                stderr_tail: info.stderr_tail.clone(),
                restarting: false,
                restart_in_ms: None,
            };
            inner.publish_failure(attempt, &error);
            sink(SupervisorEvent::Exited(exited));
            stop_requested(&mut stop_rx).await;
            break;
        }
        if started.elapsed() >= STABLE_AFTER {
            delay = timing.restart_delay;
        }
        log::warn!(
            "{error}; restarting the sync-queue sidecar in {} ms",
            delay.as_millis()
        );
        // State first: whoever reacts to the event finds calls waiting for
        // the restart, not the dead process.
        inner.publish_failure(attempt, &error);
        let exit = exit.unwrap_or(ExitInfo {
            code: None,
            signal: None,
            stderr_tail: inner.tail_text(),
        });
        sink(SupervisorEvent::Exited(SidecarExited {
            code: exit.code,
            signal: exit.signal,
            stderr_tail: exit.stderr_tail,
            restarting: true,
            restart_in_ms: Some(delay.as_millis() as u64),
        }));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop_requested(&mut stop_rx) => break,
        }
        delay = (delay * 2).min(timing.max_restart_delay);
    }
    inner.state.send_replace(State::Stopped);
}

/// One life of the sidecar process, from spawn to exit.
async fn run_once(
    inner: &Arc<Inner>,
    sink: &EventSink,
    attempt: u64,
    stop_rx: &mut watch::Receiver<bool>,
) -> Outcome {
    if *stop_rx.borrow() {
        return Outcome::Stopped;
    }
    let spec = &inner.spec;
    let config_file = match &spec.queue_config {
        Some(queue) => match write_config_file(queue, attempt) {
            Ok(path) => Some(TempFile(path)),
            Err(e) => {
                let error = Error::Config(format!("cannot write the queue config file: {e}"));
                return Outcome::Failed { error, exit: None };
            }
        },
        None => None,
    };

    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Last resort only: the stop below is the real cleanup.
        .kill_on_drop(true);
    if let Some(file) = &config_file {
        cmd.arg("--config").arg(&file.0);
    }
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    #[cfg(unix)]
    cmd.process_group(0);

    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            let error = Error::Spawn {
                program: spec.program.display().to_string(),
                source: Arc::new(e),
            };
            return Outcome::Failed { error, exit: None };
        }
    };
    let pid = child.id().unwrap_or(0);
    inner.pgid.store(pid, Ordering::SeqCst);
    log::info!(
        "started the sync-queue sidecar (pid {pid}): {}",
        spec.program.display()
    );

    inner
        .tail
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .lines
        .clear();
    let (stderr_task, stderr_probe) = match child.stderr.take() {
        Some(stderr) => {
            let (stderr, probe) = pipe::watch(stderr);
            let task = tokio::spawn(drain_stderr(stderr, inner.clone()));
            (Some(task), Some(probe))
        }
        None => (None, None),
    };
    let (stdin, stdout) = match (child.stdin.take(), child.stdout.take()) {
        (Some(stdin), Some(stdout)) => (stdin, stdout),
        _ => unreachable!("stdin and stdout are piped"),
    };
    let (stdout, stdout_probe) = pipe::watch(stdout);

    let (ready_tx, ready_rx) = oneshot::channel::<Value>();
    let ready_tx = Mutex::new(Some(ready_tx));
    let notify_sink = sink.clone();
    let on_notification: NotificationSink = Arc::new(move |n: Notification| {
        if n.method == "ready" {
            if let Some(tx) = ready_tx.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = tx.send(n.params);
                return;
            }
        }
        notify_sink(SupervisorEvent::Notification(n));
    });
    let (client, tasks) = Client::start(stdout, stdin, on_notification, spec.timing.stop_timeout);
    let client = Arc::new(client);
    let pipes = Pipes {
        tasks,
        stderr_task,
        stdout_probe,
        stderr_probe,
    };

    // Up to `ready`.
    let ready_timeout = spec.timing.ready_timeout;
    let ready = tokio::select! {
        params = ready_rx => params.ok(),
        status = child.wait() => {
            let exit = describe_exit(inner, status, &pipes).await;
            let error = Error::from_exit(exit.clone());
            inner.publish_failure(attempt, &error);
            client.close(error.clone());
            cleanup(inner, &client, pipes).await;
            return Outcome::Failed { error, exit: Some(exit) };
        }
        _ = tokio::time::sleep(ready_timeout) => {
            let status = stop_child(&mut child, &client, spec.timing.stop_timeout).await;
            let exit = describe_exit(inner, status, &pipes).await;
            inner.publish_failure(attempt, &Error::ReadyTimeout(ready_timeout));
            client.close(Error::ReadyTimeout(ready_timeout));
            cleanup(inner, &client, pipes).await;
            return Outcome::Failed { error: Error::ReadyTimeout(ready_timeout), exit: Some(exit) };
        }
        _ = stop_requested(stop_rx) => {
            let status = stop_child(&mut child, &client, spec.timing.stop_timeout).await;
            let exit = describe_exit(inner, status, &pipes).await;
            client.close(Error::Stopped);
            cleanup(inner, &client, pipes).await;
            emit_stopped(sink, exit);
            return Outcome::Stopped;
        }
    };
    drop(config_file); // read by now
    let Some(ready) = ready else {
        // The reader ended (stdout closed) without `ready`: the exit follows.
        let status = child.wait().await;
        let exit = describe_exit(inner, status, &pipes).await;
        let error = Error::from_exit(exit.clone());
        inner.publish_failure(attempt, &error);
        client.close(error.clone());
        cleanup(inner, &client, pipes).await;
        return Outcome::Failed {
            error,
            exit: Some(exit),
        };
    };
    log::info!("the sync-queue sidecar is ready: {ready}");
    inner.state.send_replace(State::Ready {
        client: client.clone(),
    });
    sink(SupervisorEvent::Ready(ready));

    // Serving, until the process ends or a stop is asked for.
    tokio::select! {
        status = child.wait() => {
            // Fail the calls in flight now: what is left of the process group
            // must not answer them after its stdin closes (see the module doc).
            let exit = describe_exit(inner, status, &pipes).await;
            if inner.exit_expected.swap(false, Ordering::SeqCst) || *inner.stop.borrow() {
                client.close(Error::Stopped);
                cleanup(inner, &client, pipes).await;
                log::info!("the sync-queue sidecar stopped ({exit})");
                emit_stopped(sink, exit);
                return Outcome::Stopped;
            }
            let error = Error::from_exit(exit.clone());
            inner.publish_failure(attempt, &error);
            let n = client.close(error.clone());
            log::error!("the sync-queue sidecar died with {n} call(s) in flight ({exit})");
            cleanup(inner, &client, pipes).await;
            Outcome::Failed { error, exit: Some(exit) }
        }
        _ = stop_requested(stop_rx) => {
            let status = stop_child(&mut child, &client, spec.timing.stop_timeout).await;
            let exit = describe_exit(inner, status, &pipes).await;
            client.close(Error::Stopped);
            cleanup(inner, &client, pipes).await;
            log::info!("stopped the sync-queue sidecar ({exit})");
            emit_stopped(sink, exit);
            Outcome::Stopped
        }
    }
}

fn emit_stopped(sink: &EventSink, exit: ExitInfo) {
    sink(SupervisorEvent::Exited(SidecarExited {
        code: exit.code,
        signal: exit.signal,
        stderr_tail: exit.stderr_tail,
        restarting: false,
        restart_in_ms: None,
    }));
}

/// What reads the sidecar's pipes.
struct Pipes {
    tasks: ClientTasks,
    stderr_task: Option<JoinHandle<()>>,
    stdout_probe: PipeProbe,
    stderr_probe: Option<PipeProbe>,
}

impl Pipes {
    /// Waits (at most [`SETTLE_LIMIT`]) until everything the process wrote
    /// before it exited has been handled: each pipe at EOF, or empty with its
    /// reader waiting for more (EOF may never come while a process it started
    /// holds the pipe).
    async fn settle(&self) {
        let deadline = Instant::now() + SETTLE_LIMIT;
        loop {
            let stdout = self.tasks.reader.is_finished() || self.stdout_probe.drained();
            let stderr = match (&self.stderr_task, &self.stderr_probe) {
                (Some(task), Some(probe)) => task.is_finished() || probe.drained(),
                _ => true,
            };
            if (stdout && stderr) || Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// After the process ended: lets the replies and stderr lines it wrote reach
/// their readers, and describes the exit.
async fn describe_exit(
    inner: &Inner,
    status: std::io::Result<ExitStatus>,
    pipes: &Pipes,
) -> ExitInfo {
    pipes.settle().await;
    let (code, signal) = match status {
        Ok(status) => (status.code(), exit_signal(&status)),
        Err(e) => {
            log::warn!("could not wait for the sync-queue sidecar: {e}");
            (None, None)
        }
    };
    ExitInfo {
        code,
        signal,
        stderr_tail: inner.tail_text(),
    }
}

/// Once the client is closed: ends whatever is left of the process group and
/// lets the readers finish.
async fn cleanup(inner: &Inner, client: &Client, pipes: Pipes) {
    // EOF for anything of the group still reading our pipe.
    client.close_stdin();
    let pgid = inner.pgid.load(Ordering::SeqCst);
    if pgid != 0 {
        // A onefile launcher's child, or anything else the sidecar started.
        terminate_group(pgid, inner.spec.timing.stop_timeout).await;
    }
    let grace = Duration::from_secs(1);
    let _ = tokio::time::timeout(grace, pipes.tasks.reader).await;
    if let Some(task) = pipes.stderr_task {
        let _ = tokio::time::timeout(grace, task).await;
    }
    pipes.tasks.writer.abort();
}

#[cfg(unix)]
fn exit_signal(status: &ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(status)
}

#[cfg(not(unix))]
fn exit_signal(_: &ExitStatus) -> Option<i32> {
    None
}

/// Close stdin and wait; SIGTERM the leader and wait; SIGKILL the group.
async fn stop_child(
    child: &mut Child,
    client: &Client,
    grace: Duration,
) -> std::io::Result<ExitStatus> {
    client.close_stdin();
    if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
        return status;
    }
    let pid = child.id().unwrap_or(0);
    log::warn!(
        "the sync-queue sidecar did not exit within {} ms of stdin closing; sending SIGTERM",
        grace.as_millis()
    );
    signal_leader(pid, Signal::Term);
    if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
        return status;
    }
    log::warn!(
        "the sync-queue sidecar ignored SIGTERM for {} ms; killing it",
        grace.as_millis()
    );
    signal_group(pid, Signal::Kill);
    let _ = child.start_kill();
    child.wait().await
}

/// The leader has exited: ends whatever is left of its group, gently first.
async fn terminate_group(pgid: u32, grace: Duration) {
    if !group_alive(pgid) {
        return;
    }
    // Give a onefile launcher's child a moment to follow its parent.
    let deadline = Instant::now() + grace;
    while group_alive(pgid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if group_alive(pgid) {
        signal_leader(pgid, Signal::Term);
        let deadline = Instant::now() + grace;
        while group_alive(pgid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        signal_group(pgid, Signal::Kill);
    }
}

/// [`terminate_group`] without a runtime, for the drop path.
fn terminate_group_blocking(pgid: u32, grace: Duration) {
    for signal in [None, Some(Signal::Term), Some(Signal::Kill)] {
        if !group_alive(pgid) {
            return;
        }
        match signal {
            Some(Signal::Term) => signal_leader(pgid, Signal::Term),
            Some(Signal::Kill) => signal_group(pgid, Signal::Kill),
            None => {}
        }
        let deadline = Instant::now() + grace;
        while group_alive(pgid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
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

/// SIGTERM goes to the leader only: a onefile launcher forwards it to its
/// child, which must get one stop signal, not two.
#[cfg(unix)]
fn signal_leader(pid: u32, signal: Signal) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid <= 1 {
        return;
    }
    // SAFETY: kill only sends a signal; the pid is the group leader we
    // spawned, and it cannot be reused while its group exists.
    unsafe {
        libc::kill(pid, signal.number());
    }
}

#[cfg(unix)]
fn signal_group(pgid: u32, signal: Signal) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: killpg only sends a signal; the group is the sidecar's own
    // (spawned with process_group(0)), never ours or init's.
    unsafe {
        libc::killpg(pgid, signal.number());
    }
}

/// Whether any process of the group is still running. Zombies awaiting their
/// parent's wait count as gone.
#[cfg(unix)]
fn group_alive(pgid: u32) -> bool {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return false;
    };
    if pgid <= 1 {
        return false;
    }
    // SAFETY: signal 0 only checks that the group exists and may be signalled.
    let exists = unsafe { libc::killpg(pgid, 0) } == 0;
    exists && !group_is_only_zombies(pgid)
}

#[cfg(target_os = "linux")]
fn group_is_only_zombies(pgid: libc::pid_t) -> bool {
    // /proc/<pid>/stat: "pid (comm) state ppid pgrp ...". The comm may hold
    // spaces or parentheses, so fields are counted after the last ')'.
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z" {
            return false;
        }
    }
    true
}

#[cfg(all(unix, not(target_os = "linux")))]
fn group_is_only_zombies(_: libc::pid_t) -> bool {
    false
}

#[cfg(not(unix))]
fn signal_group(_: u32, _: Signal) {}

#[cfg(not(unix))]
fn signal_leader(_: u32, _: Signal) {}

#[cfg(not(unix))]
fn group_alive(_: u32) -> bool {
    false
}

async fn drain_stderr<R: AsyncRead + Unpin>(stderr: R, inner: Arc<Inner>) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        match read_line_bounded(&mut reader, &mut buf, MAX_STDERR_LINE).await {
            Ok(LineRead::Line) => {
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end();
                log::info!(target: "sync_queue::sidecar", "{line}");
                inner
                    .tail
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(line);
            }
            Ok(LineRead::TooLong(n)) => {
                log::info!(target: "sync_queue::sidecar", "<a {n}-byte line>")
            }
            Ok(LineRead::Eof) | Err(_) => break,
        }
    }
}

/// A file removed when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
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

/// Resolves once a stop has been asked for (at once if it already has).
async fn stop_requested(stop_rx: &mut watch::Receiver<bool>) {
    let _ = stop_rx.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
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

    fn process_exists(pid: u32) -> bool {
        // A zombie (exited, not yet reaped) counts as gone.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
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
        assert_eq!(err.kind(), "Stopped");
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
            assert_eq!(err.kind(), "Stopped");
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
        assert_eq!(err.kind(), "Stopped");
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
}
