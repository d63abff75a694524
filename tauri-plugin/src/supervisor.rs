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

mod attempt;
mod process;
mod stderr;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::{Duration, Instant},
};

use serde::Serialize;
use serde_json::Value;
use tokio::{sync::watch, task::JoinHandle};

use crate::{
    client::{Client, Notification},
    config::{LaunchSpec, Timing},
    error::{Error, Result, SidecarExited},
};

/// A sidecar that ran this long before it died restarts with the first delay again.
const STABLE_AFTER: Duration = Duration::from_secs(60);

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

struct Inner {
    state: watch::Sender<State>,
    stop: watch::Sender<bool>,
    /// Set just before the `shutdown` request: the exit that follows is wanted.
    exit_expected: AtomicBool,
    tail: Mutex<stderr::Tail>,
    /// Process group of the running sidecar (= its pid), 0 when none.
    pgid: AtomicU32,
    spec: LaunchSpec,
}

impl Inner {
    fn tail(&self) -> MutexGuard<'_, stderr::Tail> {
        self.tail.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tail_text(&self) -> String {
        self.tail().text()
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
            State::Stopped => return Err(Error::ShuttingDown),
            State::Failed { error } => return Err(error.clone()),
            State::Starting { attempt } => *attempt,
            State::Backoff { attempt, .. } => attempt + 1,
        };
        loop {
            if rx.changed().await.is_err() {
                return Err(Error::ShuttingDown);
            }
            match &*rx.borrow_and_update() {
                State::Ready { client, .. } => return Ok(client.clone()),
                State::Stopped => return Err(Error::ShuttingDown),
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
                // It is exiting; wait until it is gone, so later calls get `ShuttingDown`.
                self.stop().await;
            }
            Err(_) => self.inner.exit_expected.store(false, Ordering::SeqCst),
        }
        result
    }

    /// Stops the sidecar (stdin EOF, then SIGTERM, then SIGKILL to its group)
    /// and waits until it is gone. Calls in flight fail with `ShuttingDown`.
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
            process::end_group_blocking(pgid, self.inner.spec.timing.stop_timeout);
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
    /// The attempt ended badly; `exit` says whether and when it restarts.
    Failed { error: Error, exit: SidecarExited },
}

/// Delays between restarts: the first, doubled after each failure up to the
/// longest; the first again after a life of [`STABLE_AFTER`].
struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(timing: &Timing) -> Backoff {
        Backoff {
            first: timing.restart_delay,
            max: timing.max_restart_delay,
            next: timing.restart_delay,
        }
    }

    /// The delay before the restart that follows a life of `ran`.
    fn after(&mut self, ran: Duration) -> Duration {
        if ran >= STABLE_AFTER {
            self.next = self.first;
        }
        let delay = self.next;
        self.next = (delay * 2).min(self.max);
        delay
    }
}

/// The restart loop: one [`attempt::run`] after another until a stop, or an
/// exit a restart cannot fix.
async fn run(inner: Arc<Inner>, sink: EventSink) {
    let mut backoff = Backoff::new(&inner.spec.timing);
    let mut stop_rx = inner.stop.subscribe();
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        inner.state.send_replace(State::Starting { attempt });
        let outcome = attempt::run(&inner, &sink, attempt, &mut stop_rx, &mut backoff).await;
        inner.pgid.store(0, Ordering::SeqCst);
        let Outcome::Failed { error, exit } = outcome else {
            break;
        };
        // State first: whoever reacts to the event finds calls waiting for
        // the restart (or failing with why), not the dead process.
        inner.publish_failure(attempt, &error);
        let restart_in = exit.restart_in_ms.map(Duration::from_millis);
        sink(SupervisorEvent::Exited(exit));
        let Some(delay) = restart_in else {
            // Starting it again would fail the same way (or, for `Locked`,
            // fight the other instance for its directory): stay failed.
            log::error!("{error}");
            stop_requested(&mut stop_rx).await;
            break;
        };
        log::warn!(
            "{error}; restarting the sync-queue sidecar in {} ms",
            delay.as_millis()
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop_requested(&mut stop_rx) => break,
        }
    }
    inner.state.send_replace(State::Stopped);
}

/// Resolves once a stop has been asked for (at once if it already has).
async fn stop_requested(stop_rx: &mut watch::Receiver<bool>) {
    let _ = stop_rx.wait_for(|stop| *stop).await;
}

#[cfg(all(test, unix))]
mod tests;
