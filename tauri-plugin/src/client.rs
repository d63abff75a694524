//! JSON-RPC 2.0 client over a pair of byte streams (the sidecar's stdout and
//! stdin), one JSON text per line (docs/protocol.md §1).
//!
//! Shape, after helix's LSP transport and rust-analyzer's proc-macro client:
//! callers never touch the pipes. A call takes an id, puts a oneshot sender in
//! the pending map *before* its line is queued, and hands the line to the one
//! writer task; the one reader task pairs each reply with its sender by id.
//!
//! Rule: an entry leaves the pending map on the reply, on a write failure, on
//! the call's timeout or cancellation (a guard removes it however the call's
//! future ends), or when the client is closed, which fails every entry at
//! once. Nothing else removes entries and nothing leaks.
//!
//! The client knows nothing about processes: the supervisor closes it with the
//! sidecar's exit status when the process dies. That keeps it testable over
//! `tokio::io::duplex`.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::Duration,
};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::{mpsc, oneshot, Notify},
    task::JoinHandle,
};

use crate::error::{Error, Result, RpcError};

mod lines;
mod tasks;

pub(crate) use lines::{read_line_bounded, LineRead};
use tasks::{read_loop, write_loop};

/// Longest stdout line accepted, well above the sidecar's own 16 MiB default
/// limit. A longer line is skipped without being held whole in memory.
pub(crate) const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// How many queued requests the writer may hold before callers wait.
const OUTGOING_CAPACITY: usize = 1024;

/// A notification from the sidecar (a message with a `method` and no `id`).
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub method: String,
    pub params: Value,
}

pub(crate) type NotificationSink = Arc<dyn Fn(Notification) + Send + Sync>;

type Reply = std::result::Result<Value, Error>;

#[derive(Default)]
struct Pending {
    calls: HashMap<u64, oneshot::Sender<Reply>>,
    /// Set once, when the client is closed; every later call fails with it.
    closed: Option<Error>,
}

struct Shared {
    pending: Mutex<Pending>,
    next_id: AtomicU64,
    /// Dropping (or firing) this ends the writer, which closes stdin.
    close_stdin: Mutex<Option<oneshot::Sender<()>>>,
    /// Woken when the client is closed.
    closed_notify: Notify,
    /// How long a call that found the pipe broken waits for the close that
    /// explains why (the supervisor closes with the exit status).
    close_grace: Duration,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (every operation is a single insert/remove), so poisoning is ignored.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_pending(&self, id: u64) -> bool {
        self.pending().calls.contains_key(&id)
    }

    /// Removes the entry and answers it, if it is still there.
    fn resolve(&self, id: u64, reply: Reply) -> bool {
        let sender = self.pending().calls.remove(&id);
        match sender {
            // The receiver may be gone (caller cancelled); nothing to do then.
            Some(tx) => tx.send(reply).is_ok(),
            None => false,
        }
    }

    /// The error a call gets when the client can no longer carry it.
    fn gone_error(&self) -> Error {
        self.pending().closed.clone().unwrap_or_else(|| {
            Error::Io(Arc::new(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the sidecar's stdin is closed",
            )))
        })
    }
}

/// Removes a call's pending entry when the call ends, whichever way it ends.
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.pending().calls.remove(&self.id);
    }
}

struct Outgoing {
    id: u64,
    line: Vec<u8>,
}

#[derive(Serialize)]
struct Request<'a, P: Serialize + ?Sized> {
    jsonrpc: &'static str,
    id: u64,
    method: &'a str,
    params: &'a P,
}

/// Any message the sidecar may write. Which fields are present tells what it is.
#[derive(Deserialize)]
struct Incoming {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    params: Option<Value>,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<RpcError>,
}

pub(crate) struct Client {
    shared: Arc<Shared>,
    outgoing: mpsc::Sender<Outgoing>,
}

/// The tasks a started client runs. The reader ends at EOF on the sidecar's
/// stdout; the writer when stdin is closed or breaks.
pub(crate) struct ClientTasks {
    pub reader: JoinHandle<()>,
    pub writer: JoinHandle<()>,
}

impl Client {
    /// Starts the reader and writer tasks on the current tokio runtime.
    /// `close_grace`: how long a call that finds the pipe broken waits for
    /// [`Client::close`] to say why, before it reports the bare I/O error.
    pub fn start<R, W>(
        stdout: R,
        stdin: W,
        on_notification: NotificationSink,
        close_grace: Duration,
    ) -> (Client, ClientTasks)
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (close_tx, close_rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            pending: Mutex::default(),
            next_id: AtomicU64::new(1),
            close_stdin: Mutex::new(Some(close_tx)),
            closed_notify: Notify::new(),
            close_grace,
        });
        let (tx, rx) = mpsc::channel(OUTGOING_CAPACITY);
        let writer = tokio::spawn(write_loop(stdin, rx, close_rx, shared.clone()));
        let reader = tokio::spawn(read_loop(stdout, shared.clone(), on_notification));
        (
            Client {
                shared,
                outgoing: tx,
            },
            ClientTasks { reader, writer },
        )
    }

    /// Sends `method` with `params` (a JSON object) and waits for the reply,
    /// at most `timeout` in all (queueing included).
    pub async fn call<P>(&self, method: &str, params: &P, timeout: Duration) -> Result<Value>
    where
        P: Serialize + ?Sized,
    {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let mut line = serde_json::to_vec(&Request {
            jsonrpc: "2.0",
            id,
            method,
            params,
        })?;
        line.push(b'\n');

        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.shared.pending();
            if let Some(err) = &pending.closed {
                return Err(err.clone());
            }
            pending.calls.insert(id, tx);
        }
        let _guard = PendingGuard {
            shared: &self.shared,
            id,
        };

        let exchange = async {
            if self.outgoing.send(Outgoing { id, line }).await.is_err() {
                return Err(self.shared.gone_error());
            }
            match rx.await {
                Ok(reply) => reply,
                // The sender was dropped unanswered: the writer gave up on it.
                Err(_) => Err(self.shared.gone_error()),
            }
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Err(Error::Io(e))) => Err(self.explain(Error::Io(e)).await),
            Ok(reply) => reply,
            Err(_) => Err(Error::Timeout {
                method: method.to_owned(),
                timeout,
            }),
        }
    }

    /// A broken pipe usually means the sidecar died, and the supervisor is
    /// about to close the client with the exit status and stderr tail: wait a
    /// little for that, as it says more than "Broken pipe".
    async fn explain(&self, error: Error) -> Error {
        let notified = self.shared.closed_notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(closed) = self.shared.pending().closed.clone() {
            return closed;
        }
        let _ = tokio::time::timeout(self.shared.close_grace, notified).await;
        self.shared.pending().closed.clone().unwrap_or(error)
    }

    /// Fails every call in flight with `error`, and every later call too.
    /// Returns how many calls were in flight. Only the first close counts.
    pub fn close(&self, error: Error) -> usize {
        let calls = {
            let mut pending = self.shared.pending();
            if pending.closed.is_none() {
                pending.closed = Some(error.clone());
            }
            std::mem::take(&mut pending.calls)
        };
        self.shared.closed_notify.notify_waiters();
        let n = calls.len();
        for (_, tx) in calls {
            let _ = tx.send(Err(error.clone()));
        }
        n
    }

    /// Ends the writer, which drops the sidecar's stdin: the sidecar sees EOF,
    /// answers what it has read and exits (docs/protocol.md §2).
    pub fn close_stdin(&self) {
        let tx = self
            .shared
            .close_stdin
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(tx) = tx {
            let _ = tx.send(());
        }
    }

    /// Number of calls waiting for a reply.
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.shared.pending().calls.len()
    }
}

#[cfg(test)]
mod tests;
