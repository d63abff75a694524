//! The example's own "sync" endpoint: an HTTP server on 127.0.0.1 (a free port) that
//! stands in for an app's backend. The window's worker POSTs every item it pops to
//! `/sync`; a switch in the window decides how the server answers:
//!
//! - `ok`: `200 {"received": n}`;
//! - `fail`: `503`, as a backend that is up but broken;
//! - `timeout`: reads the request and never answers, so the client's own timeout fires;
//! - `down`: the listening socket is closed, so connections are refused.
//!
//! Every answer says `Connection: close`, so no kept-alive connection outlives a switch
//! to `down`. It speaks just enough HTTP/1.1 for `fetch` (including the CORS preflight,
//! because the page's origin is not the server's); a real app talks to a real backend.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tauri::async_runtime::JoinHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Requests larger than this are answered 413: an item's payload is small.
const MAX_REQUEST_BYTES: usize = 1 << 20;
/// How long `timeout` mode holds a connection before dropping it (the worker gives up
/// much sooner).
const HOLD_FOR: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Ok,
    Fail,
    Timeout,
    Down,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointInfo {
    pub url: String,
    pub mode: Mode,
    /// Items answered `ok` since the app started.
    pub received: u64,
}

/// What the connection tasks read; they never wait for a switch in progress.
struct Shared {
    mode: Mutex<Mode>,
    received: AtomicU64,
}

pub struct Endpoint {
    port: u16,
    shared: Arc<Shared>,
    /// The accept loop, `None` while `down`. Aborting it drops (closes) the listener.
    accept: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Endpoint {
    /// Bind a free port on 127.0.0.1 and start answering `ok`.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            mode: Mutex::new(Mode::Ok),
            received: AtomicU64::new(0),
        });
        let accept = spawn_accept_loop(listener, shared.clone());
        Ok(Self {
            port,
            shared,
            accept: tokio::sync::Mutex::new(Some(accept)),
        })
    }

    pub fn info(&self) -> EndpointInfo {
        EndpointInfo {
            url: format!("http://127.0.0.1:{}/sync", self.port),
            mode: *self.shared.mode.lock().expect("mode lock"),
            received: self.shared.received.load(Ordering::Relaxed),
        }
    }

    pub async fn set_mode(&self, mode: Mode) -> std::io::Result<EndpointInfo> {
        let mut accept = self.accept.lock().await;
        if mode == Mode::Down {
            if let Some(task) = accept.take() {
                task.abort();
                // Wait until the task, and with it the listener, is gone: from here on
                // a connection is refused.
                let _ = task.await;
            }
        } else if accept.is_none() {
            // The same port again (tokio sets SO_REUSEADDR on Unix listeners).
            let listener = TcpListener::bind(("127.0.0.1", self.port)).await?;
            *accept = Some(spawn_accept_loop(listener, self.shared.clone()));
        }
        *self.shared.mode.lock().expect("mode lock") = mode;
        Ok(self.info())
    }
}

fn spawn_accept_loop(listener: TcpListener, shared: Arc<Shared>) -> JoinHandle<()> {
    tauri::async_runtime::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                // Out of file descriptors, say: try again shortly rather than spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let mode = *shared.mode.lock().expect("mode lock");
            let shared = shared.clone();
            tauri::async_runtime::spawn(async move {
                let _ = serve(stream, mode, &shared.received).await;
            });
        }
    })
}

/// One request on one connection, answered as the switch was when it connected.
async fn serve(mut stream: TcpStream, mode: Mode, received: &AtomicU64) -> std::io::Result<()> {
    let Some(request) = read_request(&mut stream).await? else {
        return respond(&mut stream, "413 Payload Too Large", "{}").await;
    };
    if request.starts_with("OPTIONS ") {
        return respond(&mut stream, "204 No Content", "").await;
    }
    if !request.starts_with("POST /sync ") {
        return respond(&mut stream, "404 Not Found", r#"{"error":"POST /sync"}"#).await;
    }
    match mode {
        Mode::Ok => {
            let n = received.fetch_add(1, Ordering::Relaxed) + 1;
            respond(&mut stream, "200 OK", &format!(r#"{{"received":{n}}}"#)).await
        }
        Mode::Fail => {
            respond(
                &mut stream,
                "503 Service Unavailable",
                r#"{"error":"switched to fail"}"#,
            )
            .await
        }
        // Hold the connection open without a word, until the client gives up.
        Mode::Timeout => {
            let mut sink = [0u8; 1024];
            let _ = tokio::time::timeout(HOLD_FOR, async {
                while stream.read(&mut sink).await.unwrap_or(0) > 0 {}
            })
            .await;
            Ok(())
        }
        // The listener is closed in this mode; a connection accepted just before the
        // switch is closed unanswered, as by a server going down.
        Mode::Down => Ok(()),
    }
}

/// The request's head and body as text, or `None` when it is too large.
async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(head_end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
            let body_len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if head_end + 4 + body_len > MAX_REQUEST_BYTES {
                return Ok(None);
            }
            if buf.len() >= head_end + 4 + body_len {
                return Ok(Some(String::from_utf8_lossy(&buf).into_owned()));
            }
        } else if buf.len() > MAX_REQUEST_BYTES {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\n\
         content-type: application/json\r\n\
         content-length: {}\r\n\
         access-control-allow-origin: *\r\n\
         access-control-allow-methods: POST\r\n\
         access-control-allow-headers: content-type\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
