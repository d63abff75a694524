//! One life of the sidecar process, from spawn to exit: start it, wait for
//! `ready`, serve, and end it, whichever way it ends, through one path
//! ([`Life::end`]): describe the exit, fail the calls in flight, clean up the
//! process group.

use std::{
    process::ExitStatus,
    sync::{atomic::Ordering, Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::{
    process::Child,
    sync::{oneshot, watch},
    task::JoinHandle,
};

use super::{
    process, stderr, stop_requested, Backoff, EventSink, Inner, Outcome, State, SupervisorEvent,
};
use crate::{
    client::{Client, ClientTasks, Notification, NotificationSink},
    error::{is_fatal_exit, Error, SidecarExited},
    pipe::{self, PipeProbe},
};

/// Longest wait, once the process has exited, for the replies and stderr
/// lines it wrote before to be read (normally a few milliseconds).
const SETTLE_LIMIT: Duration = Duration::from_secs(1);

/// How a life ends.
enum Ending {
    /// The process exited by itself.
    Exited(std::io::Result<ExitStatus>),
    /// We end it: on a requested stop (`None`), or because the attempt
    /// failed with this error.
    Stop(Option<Error>),
}

/// Runs attempt `attempt`: one life of the process, from spawn to exit.
pub(super) async fn run(
    inner: &Arc<Inner>,
    sink: &EventSink,
    attempt: u64,
    stop_rx: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
) -> Outcome {
    if *stop_rx.borrow() {
        return Outcome::Stopped;
    }
    let started = Instant::now();
    let (child, config_file) = match process::spawn(&inner.spec, attempt) {
        Ok(spawned) => spawned,
        Err(error) => {
            let exit = SidecarExited {
                code: None,
                signal: None,
                stderr_tail: inner.tail_text(),
                restarting: true,
                restart_in_ms: Some(backoff.after(started.elapsed()).as_millis() as u64),
            };
            return Outcome::Failed { error, exit };
        }
    };
    let (ready_rx, mut life) = Life::start(inner, sink, child, attempt, started);
    let ready_timeout = inner.spec.timing.ready_timeout;
    let ready = tokio::select! {
        params = ready_rx => params.map_err(|_| None),
        status = life.child.wait() => Err(Some(Ending::Exited(status))),
        _ = tokio::time::sleep(ready_timeout) => {
            Err(Some(Ending::Stop(Some(Error::ReadyTimeout(ready_timeout)))))
        }
        _ = stop_requested(stop_rx) => Err(Some(Ending::Stop(None))),
    };
    drop(config_file); // read by now
    let ready = match ready {
        Ok(ready) => ready,
        // The reader ended (stdout closed) without `ready`: the exit follows.
        Err(None) => {
            let status = life.child.wait().await;
            return life.end(Ending::Exited(status), backoff).await;
        }
        Err(Some(ending)) => return life.end(ending, backoff).await,
    };
    log::info!("the sync-queue sidecar is ready: {ready}");
    inner.state.send_replace(State::Ready {
        client: life.client.clone(),
    });
    sink(SupervisorEvent::Ready(ready));
    // Serving, until the process ends or a stop is asked for.
    let ending = tokio::select! {
        status = life.child.wait() => Ending::Exited(status),
        _ = stop_requested(stop_rx) => Ending::Stop(None),
    };
    life.end(ending, backoff).await
}

/// One running process, and what talks to it and reads from it.
struct Life {
    child: Child,
    attempt: u64,
    started: Instant,
    inner: Arc<Inner>,
    sink: EventSink,
    client: Arc<Client>,
    pipes: Pipes,
}

impl Life {
    /// Wires the child's pipes: the client on stdin/stdout, the stderr
    /// drain. Resolves the receiver with `ready`'s params.
    fn start(
        inner: &Arc<Inner>,
        sink: &EventSink,
        mut child: Child,
        attempt: u64,
        started: Instant,
    ) -> (oneshot::Receiver<Value>, Life) {
        let pid = child.id().unwrap_or(0);
        inner.pgid.store(pid, Ordering::SeqCst);
        log::info!(
            "started the sync-queue sidecar (pid {pid}): {}",
            inner.spec.program.display()
        );
        inner.tail().clear();
        let (stderr_task, stderr_probe) = match child.stderr.take() {
            Some(stderr) => {
                let (stderr, probe) = pipe::watch(stderr);
                let keeper = inner.clone();
                let task = tokio::spawn(stderr::drain(stderr, move |l| keeper.tail().push(l)));
                (Some(task), Some(probe))
            }
            None => (None, None),
        };
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            unreachable!("stdin and stdout are piped")
        };
        let (stdout, stdout_probe) = pipe::watch(stdout);
        let (ready_tx, ready_rx) = oneshot::channel();
        let timing = inner.spec.timing;
        let notify = notification_sink(sink.clone(), ready_tx);
        let (client, tasks) = Client::start(stdout, stdin, notify, timing.stop_timeout);
        let pipes = Pipes {
            tasks,
            stderr_task,
            stdout_probe,
            stderr_probe,
        };
        let life = Life {
            child,
            attempt,
            started,
            inner: inner.clone(),
            sink: sink.clone(),
            client: Arc::new(client),
            pipes,
        };
        (ready_rx, life)
    }

    /// The one way a life ends: stop the process if it still runs, describe
    /// its exit, fail the calls in flight (with `ShuttingDown` for a wanted
    /// exit, else with why), clean up the group, say what happened.
    async fn end(mut self, ending: Ending, backoff: &mut Backoff) -> Outcome {
        let (status, stopped_for) = match ending {
            Ending::Exited(status) => (status, None),
            Ending::Stop(why) => {
                self.client.close_stdin();
                let grace = self.inner.spec.timing.stop_timeout;
                (process::stop_child(&mut self.child, grace).await, Some(why))
            }
        };
        // Fail the calls in flight now, not at EOF: what is left of the group
        // must not answer them after its stdin closes (see the module doc).
        let exit = self.describe_exit(status).await;
        let inner = &self.inner;
        let wanted = inner.exit_expected.swap(false, Ordering::SeqCst) || *inner.stop.borrow();
        let (error, exit) = match stopped_for {
            Some(None) => return self.stopped(exit).await,
            None if wanted => return self.stopped(exit).await,
            Some(Some(error)) => (error, self.restarting(exit, backoff)),
            None if is_fatal_exit(exit.code) => (Error::from_exit(exit.clone()), exit),
            None => {
                let exit = self.restarting(exit, backoff);
                (Error::from_exit(exit.clone()), exit)
            }
        };
        inner.publish_failure(self.attempt, &error);
        let n = self.client.close(error.clone());
        if n > 0 {
            log::error!("the sync-queue sidecar ended with {n} call(s) in flight ({exit})");
        }
        self.cleanup().await;
        Outcome::Failed { error, exit }
    }

    /// A wanted end (a stop, or the exit after `shutdown`).
    async fn stopped(self, exit: SidecarExited) -> Outcome {
        self.client.close(Error::ShuttingDown);
        let sink = self.sink.clone();
        self.cleanup().await;
        log::info!("the sync-queue sidecar stopped ({exit})");
        sink(SupervisorEvent::Exited(exit));
        Outcome::Stopped
    }

    /// `exit`, to be followed by a restart after the next backoff delay.
    fn restarting(&self, mut exit: SidecarExited, backoff: &mut Backoff) -> SidecarExited {
        let delay = backoff.after(self.started.elapsed());
        exit.restarting = true;
        exit.restart_in_ms = Some(delay.as_millis() as u64);
        exit
    }

    /// After the process ended: lets the replies and stderr lines it wrote
    /// reach their readers, and describes the exit.
    async fn describe_exit(&self, status: std::io::Result<ExitStatus>) -> SidecarExited {
        self.pipes.settle().await;
        let (code, signal) = match status {
            Ok(status) => (status.code(), process::exit_signal(&status)),
            Err(e) => {
                log::warn!("could not wait for the sync-queue sidecar: {e}");
                (None, None)
            }
        };
        SidecarExited {
            code,
            signal,
            stderr_tail: self.inner.tail_text(),
            restarting: false,
            restart_in_ms: None,
        }
    }

    /// Once the client is closed: ends whatever is left of the process group
    /// and lets the readers finish.
    async fn cleanup(self) {
        // EOF for anything of the group still reading our pipe.
        self.client.close_stdin();
        let pgid = self.inner.pgid.load(Ordering::SeqCst);
        if pgid != 0 {
            process::end_group(pgid, self.inner.spec.timing.stop_timeout).await;
        }
        let grace = Duration::from_secs(1);
        let _ = tokio::time::timeout(grace, self.pipes.tasks.reader).await;
        if let Some(task) = self.pipes.stderr_task {
            let _ = tokio::time::timeout(grace, task).await;
        }
        self.pipes.tasks.writer.abort();
    }
}

/// Hands `ready` to `ready_tx` (once) and every other notification to `sink`.
fn notification_sink(sink: EventSink, ready_tx: oneshot::Sender<Value>) -> NotificationSink {
    let ready_tx = Mutex::new(Some(ready_tx));
    Arc::new(move |n: Notification| {
        if n.method == "ready" {
            if let Some(tx) = ready_tx.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = tx.send(n.params);
                return;
            }
        }
        sink(SupervisorEvent::Notification(n));
    })
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
