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
    io::{
        AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter,
    },
    sync::{mpsc, oneshot, Notify},
    task::JoinHandle,
};

use crate::error::{Error, Result, RpcError};

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

async fn write_loop<W>(
    stdin: W,
    mut rx: mpsc::Receiver<Outgoing>,
    mut close: oneshot::Receiver<()>,
    shared: Arc<Shared>,
) where
    W: AsyncWrite + Unpin,
{
    let mut out = BufWriter::with_capacity(64 * 1024, stdin);
    let mut batch: Vec<u64> = Vec::new();
    let failure = loop {
        let first = tokio::select! {
            biased;
            _ = &mut close => break None,
            msg = rx.recv() => match msg {
                Some(msg) => msg,
                None => break None,
            },
        };
        // Write what is queued now, then flush once: pipelined callers share a
        // syscall, and a lone caller is flushed at once.
        batch.clear();
        let mut next = Some(first);
        let mut result = Ok(());
        while let Some(msg) = next.take() {
            // A caller that timed out or was cancelled before its turn is not sent.
            if shared.is_pending(msg.id) {
                batch.push(msg.id);
                result = out.write_all(&msg.line).await;
                if result.is_err() {
                    break;
                }
            }
            if batch.len() < 256 {
                next = rx.try_recv().ok();
            }
        }
        if result.is_ok() {
            result = out.flush().await;
        }
        if let Err(e) = result {
            break Some(Arc::new(e));
        }
        // Sent whole: their replies may still come (a sidecar answers what it
        // has read after its stdin closes), so a close must not fail them.
        batch.clear();
    };

    let error = match failure {
        Some(e) => {
            log::warn!("writing to the sync-queue sidecar failed: {e}");
            Error::Io(e)
        }
        None => shared.gone_error(),
    };
    // Nothing more is written: fail the batch that did not go out whole and
    // everything still queued, so no caller waits for a reply that cannot come.
    for id in batch.drain(..) {
        shared.resolve(id, Err(error.clone()));
    }
    rx.close();
    while let Ok(msg) = rx.try_recv() {
        shared.resolve(msg.id, Err(error.clone()));
    }
    // `out` drops here, closing the sidecar's stdin.
}

async fn read_loop<R>(stdout: R, shared: Arc<Shared>, on_notification: NotificationSink)
where
    R: AsyncRead + Unpin,
{
    let mut reader = BufReader::with_capacity(64 * 1024, stdout);
    let mut line = Vec::new();
    loop {
        match read_line_bounded(&mut reader, &mut line, MAX_LINE_BYTES).await {
            Ok(LineRead::Eof) => break,
            Ok(LineRead::TooLong(n)) => {
                log::warn!(
                    "skipped a {n}-byte line from the sync-queue sidecar (limit {MAX_LINE_BYTES})"
                );
            }
            Ok(LineRead::Line) => handle_line(&line, &shared, &on_notification),
            Err(e) => {
                log::warn!("reading the sync-queue sidecar's stdout failed: {e}");
                break;
            }
        }
    }
}

fn handle_line(line: &[u8], shared: &Shared, on_notification: &NotificationSink) {
    let line = line.trim_ascii();
    if line.is_empty() {
        return;
    }
    let msg: Incoming = match serde_json::from_slice(line) {
        Ok(msg) => msg,
        Err(e) => {
            // A frozen Python binary or a stray print() can put text on stdout.
            log::warn!("skipped a line from the sync-queue sidecar that is not a JSON-RPC message ({e}): {}", preview(line));
            return;
        }
    };
    match (msg.method, msg.id) {
        (Some(method), None) => on_notification(Notification { method, params: msg.params.unwrap_or(Value::Null) }),
        (Some(method), Some(_)) => {
            log::warn!("ignored a request `{method}` from the sync-queue sidecar: the plugin serves no methods");
        }
        (None, Some(Value::Number(n))) if n.as_u64().is_some() => {
            let id = n.as_u64().unwrap_or_default();
            let reply = match msg.error {
                Some(error) => Err(Error::Rpc(error)),
                // `"result": null` (an empty pop) and an absent result read the same.
                None => Ok(msg.result.unwrap_or(Value::Null)),
            };
            if !shared.resolve(id, reply) {
                log::debug!("dropped a reply to request {id}: its caller has already gone");
            }
        }
        (None, id) => match msg.error {
            Some(error) => log::error!(
                "the sync-queue sidecar reported an error not tied to a pending request (id {}): {} ({})",
                id.unwrap_or(Value::Null),
                error.message,
                error.code
            ),
            None => log::warn!("skipped a message from the sync-queue sidecar with an unknown id: {}", preview(line)),
        },
    }
}

fn preview(line: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&line[..line.len().min(MAX)]);
    if line.len() > MAX {
        format!("{text}…")
    } else {
        text.into_owned()
    }
}

#[derive(Debug, PartialEq)]
pub(crate) enum LineRead {
    /// `buf` holds one line, without its `\n` (the last line may lack one).
    Line,
    /// The line was longer than allowed and has been skipped; its length.
    TooLong(usize),
    Eof,
}

/// Reads one `\n`-terminated line into `buf`, never holding more than `max`
/// bytes of it: a longer line is consumed and reported as `TooLong`.
pub(crate) async fn read_line_bounded<R>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<LineRead>
where
    R: AsyncBufRead + Unpin,
{
    buf.clear();
    let mut total = 0usize;
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(match (total, too_long) {
                (0, _) => LineRead::Eof,
                (n, true) => LineRead::TooLong(n),
                _ => LineRead::Line,
            });
        }
        let (chunk, ends_line) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], true),
            None => (available, false),
        };
        total += chunk.len();
        if !too_long {
            if buf.len() + chunk.len() > max {
                too_long = true;
                buf.clear();
                buf.shrink_to(64 * 1024);
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        let used = chunk.len() + usize::from(ends_line);
        reader.consume(used);
        if ends_line {
            return Ok(if too_long {
                LineRead::TooLong(total)
            } else {
                LineRead::Line
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Mutex as StdMutex;
    use tokio::io::{duplex, AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines};

    const T: Duration = Duration::from_secs(5);

    /// The far end of the pipes: what the sidecar would read and write.
    struct FakeSidecar {
        requests: Lines<BufReader<DuplexStream>>,
        replies: DuplexStream,
    }

    impl FakeSidecar {
        async fn next_request(&mut self) -> Value {
            let line = self.requests.next_line().await.unwrap().expect("a request");
            serde_json::from_str(&line).unwrap()
        }
        async fn send(&mut self, text: &str) {
            self.replies.write_all(text.as_bytes()).await.unwrap();
            self.replies.write_all(b"\n").await.unwrap();
        }
    }

    fn setup() -> (
        Arc<Client>,
        ClientTasks,
        FakeSidecar,
        Arc<StdMutex<Vec<Notification>>>,
    ) {
        let (stdin, sidecar_stdin) = duplex(1 << 16);
        let (sidecar_stdout, stdout) = duplex(1 << 16);
        let seen = Arc::new(StdMutex::new(Vec::new()));
        let sink_seen = seen.clone();
        let sink: NotificationSink = Arc::new(move |n| sink_seen.lock().unwrap().push(n));
        let (client, tasks) = Client::start(stdout, stdin, sink, Duration::ZERO);
        let fake = FakeSidecar {
            requests: BufReader::new(sidecar_stdin).lines(),
            replies: sidecar_stdout,
        };
        (Arc::new(client), tasks, fake, seen)
    }

    #[tokio::test]
    async fn request_line_is_jsonrpc_with_named_params() {
        let (client, _tasks, mut fake, _) = setup();
        let call = tokio::spawn({
            let client = client.clone();
            async move { client.call("push", &json!({"payload": {"a": 1}}), T).await }
        });
        let req = fake.next_request().await;
        assert_eq!(
            req,
            json!({"jsonrpc": "2.0", "id": 1, "method": "push", "params": {"payload": {"a": 1}}})
        );
        fake.send(r#"{"jsonrpc":"2.0","id":1,"result":{"id":"x"}}"#)
            .await;
        assert_eq!(call.await.unwrap().unwrap(), json!({"id": "x"}));
        assert_eq!(client.in_flight(), 0);
    }

    #[tokio::test]
    async fn interleaved_replies_reach_their_callers() {
        let (client, _tasks, mut fake, _) = setup();
        let calls: Vec<_> = (0..3)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(
                    async move { client.call("get", &json!({ "id": i.to_string() }), T).await },
                )
            })
            .collect();
        let mut ids = Vec::new();
        for _ in 0..3 {
            let req = fake.next_request().await;
            ids.push((
                req["id"].as_u64().unwrap(),
                req["params"]["id"].as_str().unwrap().to_owned(),
            ));
        }
        // Answer in reverse order, with a notification and a blank line in between.
        fake.send(r#"{"jsonrpc":"2.0","method":"itemsAvailable","params":{"pending":2}}"#)
            .await;
        for (id, param) in ids.iter().rev() {
            fake.send(&format!(
                r#"{{"jsonrpc":"2.0","id":{id},"result":{{"echo":"{param}"}}}}"#
            ))
            .await;
            fake.send("").await;
        }
        for (i, call) in calls.into_iter().enumerate() {
            assert_eq!(
                call.await.unwrap().unwrap(),
                json!({ "echo": i.to_string() })
            );
        }
        assert_eq!(client.in_flight(), 0);
    }

    #[tokio::test]
    async fn null_result_and_error_objects() {
        let (client, _tasks, mut fake, _) = setup();
        let c = client.clone();
        let pop = tokio::spawn(async move { c.call("pop", &json!({}), T).await });
        let id = fake.next_request().await["id"].clone();
        fake.send(&format!(r#"{{"jsonrpc":"2.0","id":{id},"result":null}}"#))
            .await;
        assert_eq!(pop.await.unwrap().unwrap(), Value::Null);

        let c = client.clone();
        let get = tokio::spawn(async move { c.call("get", &json!({"id": "nope"}), T).await });
        let id = fake.next_request().await["id"].clone();
        fake.send(&format!(
            r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32002,"message":"no item nope","data":{{"kind":"ItemNotFound"}}}}}}"#
        ))
        .await;
        let err = get.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), "ItemNotFound");
        assert_eq!(err.code(), Some(-32002));
        assert_eq!(err.to_string(), "no item nope");
    }

    #[tokio::test]
    async fn garbage_lines_are_skipped() {
        let (client, _tasks, mut fake, seen) = setup();
        let c = client.clone();
        let call = tokio::spawn(async move { c.call("ping", &json!({}), T).await });
        let id = fake.next_request().await["id"].clone();
        fake.send("Hello from a stray print()").await;
        fake.send("{not json").await;
        fake.send("[1,2,3]").await;
        fake.send(r#"{"jsonrpc":"2.0","id":"not-ours","result":1}"#)
            .await;
        fake.send(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}"#)
            .await;
        fake.send("\u{1F600} not json either\r").await;
        fake.send(&format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{\"pong\":true}}}}\r"
        ))
        .await;
        assert_eq!(call.await.unwrap().unwrap(), json!({"pong": true}));
        assert!(seen.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn notifications_go_to_the_sink() {
        let (_client, tasks, mut fake, seen) = setup();
        fake.send(r#"{"jsonrpc":"2.0","method":"itemFailed","params":{"id":"a","attempts":4,"error":"boom"}}"#)
            .await;
        drop(fake);
        tasks.reader.await.unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(
            *seen,
            vec![Notification {
                method: "itemFailed".into(),
                params: json!({"id":"a","attempts":4,"error":"boom"})
            }]
        );
    }

    #[tokio::test]
    async fn timeouts_free_their_entries_and_late_replies_are_dropped() {
        let (client, _tasks, mut fake, _) = setup();
        let err = client
            .call("pop", &json!({}), Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Timeout { ref method, .. } if method == "pop"),
            "{err:?}"
        );
        assert_eq!(err.kind(), "Timeout");
        assert_eq!(client.in_flight(), 0, "timed-out entry must be removed");
        // The late reply finds no entry and is dropped; the next call still works.
        let id = fake.next_request().await["id"].clone();
        fake.send(&format!(r#"{{"jsonrpc":"2.0","id":{id},"result":null}}"#))
            .await;
        let c = client.clone();
        let call = tokio::spawn(async move { c.call("ping", &json!({}), T).await });
        let id = fake.next_request().await["id"].clone();
        fake.send(&format!(
            r#"{{"jsonrpc":"2.0","id":{id},"result":{{"pong":true}}}}"#
        ))
        .await;
        assert_eq!(call.await.unwrap().unwrap(), json!({"pong": true}));
        assert_eq!(client.in_flight(), 0);
    }

    #[tokio::test]
    async fn cancelled_calls_free_their_entries() {
        let (client, _tasks, mut fake, _) = setup();
        let c = client.clone();
        let call =
            tokio::spawn(async move { c.call("pop", &json!({"timeoutMs": 60000}), T).await });
        fake.next_request().await;
        assert_eq!(client.in_flight(), 1);
        call.abort();
        assert!(call.await.unwrap_err().is_cancelled());
        assert_eq!(client.in_flight(), 0, "cancelled entry must be removed");
    }

    #[tokio::test]
    async fn close_fails_every_call_in_flight_and_later_calls() {
        let (client, _tasks, mut fake, _) = setup();
        let calls: Vec<_> = (0..5)
            .map(|_| {
                let c = client.clone();
                tokio::spawn(async move { c.call("pop", &json!({}), T).await })
            })
            .collect();
        for _ in 0..5 {
            fake.next_request().await;
        }
        let info = crate::error::SidecarExited {
            code: None,
            signal: Some(9),
            stderr_tail: "last words".into(),
            restarting: true,
            restart_in_ms: Some(100),
        };
        assert_eq!(client.close(Error::SidecarExited(info.clone())), 5);
        for call in calls {
            let err = call.await.unwrap().unwrap_err();
            assert!(
                matches!(&err, Error::SidecarExited(i) if *i == info),
                "{err:?}"
            );
        }
        assert_eq!(client.in_flight(), 0);
        let err = client.call("ping", &json!({}), T).await.unwrap_err();
        assert_eq!(err.kind(), "SidecarExited");
        assert_eq!(client.in_flight(), 0);
    }

    #[tokio::test]
    async fn write_failure_fails_the_call_and_frees_its_entry() {
        let (stdin, sidecar_stdin) = duplex(64);
        let (_sidecar_stdout, stdout) = duplex(64);
        drop(sidecar_stdin); // the sidecar is gone: writes fail with BrokenPipe
        let (client, tasks) = Client::start(stdout, stdin, Arc::new(|_| {}), Duration::ZERO);
        let err = client.call("ping", &json!({}), T).await.unwrap_err();
        assert_eq!(err.kind(), "Io", "{err:?}");
        assert_eq!(client.in_flight(), 0);
        tasks.writer.await.unwrap();
        // With the writer gone, later calls fail at once, leaving nothing behind.
        let err = client.call("ping", &json!({}), T).await.unwrap_err();
        assert_eq!(err.kind(), "Io");
        assert_eq!(client.in_flight(), 0);
    }

    #[tokio::test]
    async fn calls_sent_before_stdin_closes_still_get_their_replies() {
        let (client, _tasks, mut fake, _) = setup();
        let c = client.clone();
        let pop = tokio::spawn(async move { c.call("pop", &json!({"timeoutMs": 60000}), T).await });
        let id = fake.next_request().await["id"].clone();
        client.close_stdin();
        assert!(fake.requests.next_line().await.unwrap().is_none());
        // What a sidecar does on stdin EOF: answer what it has read.
        fake.send(&format!(r#"{{"jsonrpc":"2.0","id":{id},"result":null}}"#))
            .await;
        assert_eq!(pop.await.unwrap().unwrap(), Value::Null);
    }

    #[tokio::test]
    async fn close_stdin_gives_the_sidecar_eof() {
        let (client, tasks, mut fake, _) = setup();
        client.close_stdin();
        tasks.writer.await.unwrap();
        assert!(fake.requests.next_line().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn bounded_reader_skips_long_lines_whole() {
        let data = b"short\nthis line is far too long\nok\nlast-without-newline".to_vec();
        let mut reader = BufReader::with_capacity(4, &data[..]);
        let mut buf = Vec::new();
        assert_eq!(
            read_line_bounded(&mut reader, &mut buf, 10).await.unwrap(),
            LineRead::Line
        );
        assert_eq!(buf, b"short");
        assert_eq!(
            read_line_bounded(&mut reader, &mut buf, 10).await.unwrap(),
            LineRead::TooLong(25)
        );
        assert_eq!(
            read_line_bounded(&mut reader, &mut buf, 10).await.unwrap(),
            LineRead::Line
        );
        assert_eq!(buf, b"ok");
        assert_eq!(
            read_line_bounded(&mut reader, &mut buf, 100).await.unwrap(),
            LineRead::Line
        );
        assert_eq!(buf, b"last-without-newline");
        assert_eq!(
            read_line_bounded(&mut reader, &mut buf, 10).await.unwrap(),
            LineRead::Eof
        );
    }
}
