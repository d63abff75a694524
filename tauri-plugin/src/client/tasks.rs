//! The client's two tasks: the one writer (batches lines to the sidecar's
//! stdin) and the one reader (pairs replies with their callers, hands
//! notifications to the sink).

use std::sync::Arc;

use serde_json::Value;
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter},
    sync::{mpsc, oneshot},
};

use super::{
    read_line_bounded, Incoming, LineRead, Notification, NotificationSink, Outgoing, Shared,
    MAX_LINE_BYTES,
};
use crate::error::Error;

pub(super) async fn write_loop<W>(
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
        batch.clear();
        if let Err(e) = write_batch(&mut out, first, &mut rx, &shared, &mut batch).await {
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

/// Writes `first` and what is queued behind it now (up to 256 lines), then
/// flushes once: pipelined callers share a syscall, and a lone caller is
/// flushed at once. `batch` gets the ids written.
async fn write_batch<W>(
    out: &mut BufWriter<W>,
    first: Outgoing,
    rx: &mut mpsc::Receiver<Outgoing>,
    shared: &Shared,
    batch: &mut Vec<u64>,
) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let mut next = Some(first);
    while let Some(msg) = next.take() {
        // A caller that timed out or was cancelled before its turn is not sent.
        if shared.is_pending(msg.id) {
            batch.push(msg.id);
            out.write_all(&msg.line).await?;
        }
        if batch.len() < 256 {
            next = rx.try_recv().ok();
        }
    }
    out.flush().await
}

pub(super) async fn read_loop<R>(stdout: R, shared: Arc<Shared>, on_notification: NotificationSink)
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
