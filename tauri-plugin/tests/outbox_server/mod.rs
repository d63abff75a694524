//! A real HTTP server for the outbox tests and benchmark (axum on
//! 127.0.0.1, its own tokio runtime), playing a cooperating server:
//!
//! - it requires `Idempotency-Key` and applies each key's effect once: a
//!   replay gets the stored response, and a key's effect is recorded (key,
//!   path, body, in order) before the response is sent, slow or not;
//! - per path it can fail the first N attempts of each key (500, 429 with
//!   `Retry-After`), always refuse (400, 404), answer late (past the
//!   client's timeout), or demand `Authorization: Bearer <token>`;
//! - `HEAD` (the outbox's probe) is answered 200 and recorded nowhere;
//! - it can be stopped and started again on the same port (an outage).

#![allow(dead_code)]

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    Router,
};

/// What a path does.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Fail the first `times` attempts of each key with `status` (and
    /// `Retry-After: retry_after` if set), without effect; then apply.
    FailFirst {
        times: u32,
        status: u16,
        retry_after: Option<String>,
    },
    /// Always answer `status` with a body, without effect.
    Refuse { status: u16, body: String },
    /// Apply, then answer only after `delay` for the first `times` attempts of each key.
    SlowFirst { times: u32, delay: Duration },
    /// Apply, spending `work` first (a realistic handler: see the benchmark).
    Work { work: Duration },
    /// 401 unless `Authorization: Bearer <token>`.
    Auth { token: String },
}

#[derive(Debug, Clone)]
pub struct Effect {
    pub key: String,
    pub path: String,
    pub body: String,
    pub at: Instant,
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub key: String,
    pub path: String,
    pub at: Instant,
    pub status: u16,
}

#[derive(Default)]
pub struct Record {
    pub effects: Vec<Effect>,
    pub attempts: Vec<Attempt>,
    stored: HashMap<String, (u16, String)>,
    /// Attempts per key: what `decide` needs, without scanning `attempts`
    /// (a scan per request made the server's cost grow with its history).
    tries: HashMap<String, u32>,
    behaviours: HashMap<String, Behaviour>,
}

impl Record {
    pub fn attempts_of(&self, key: &str) -> Vec<&Attempt> {
        self.attempts.iter().filter(|a| a.key == key).collect()
    }

    pub fn effects_of(&self, key: &str) -> usize {
        self.effects.iter().filter(|e| e.key == key).count()
    }
}

type Shared = Arc<Mutex<Record>>;

pub struct TestServer {
    pub addr: SocketAddr,
    record: Shared,
    runtime: tokio::runtime::Runtime,
    running: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
}

impl TestServer {
    /// A server on a free port of 127.0.0.1.
    pub fn start() -> TestServer {
        TestServer::start_on("127.0.0.1:0".parse().unwrap())
    }

    /// A server on `addr` (port 0: any free one).
    pub fn start_on(addr: SocketAddr) -> TestServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("server runtime");
        let mut server = TestServer {
            addr,
            record: Shared::default(),
            runtime,
            running: None,
        };
        server.resume();
        server
    }

    /// `http://127.0.0.1:<port>`: the destination of its requests.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    pub fn on(&self, path: &str, behaviour: Behaviour) {
        self.record().behaviours.insert(path.to_owned(), behaviour);
    }

    pub fn record(&self) -> MutexGuard<'_, Record> {
        self.record.lock().unwrap()
    }

    /// Stops listening and closes every connection (an outage).
    pub fn stop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            let _ = stop.send(());
            self.runtime.block_on(task).expect("server task");
        }
    }

    /// Listens again on the same address.
    pub fn resume(&mut self) {
        assert!(self.running.is_none(), "already running");
        let record = self.record.clone();
        let addr = self.addr;
        let listener = self.runtime.block_on(async move {
            // Right after a stop the port may be in TIME_WAIT for a moment.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match tokio::net::TcpListener::bind(addr).await {
                    Ok(listener) => return listener,
                    Err(e) if Instant::now() < deadline => {
                        eprintln!("bind {addr}: {e}; again");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => panic!("bind {addr}: {e}"),
                }
            }
        });
        self.addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(handle).with_state(record);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = self.runtime.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.await;
                })
                .await
                .expect("serve");
        });
        self.running = Some((stop_tx, task));
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some((stop, _)) = self.running.take() {
            let _ = stop.send(());
        }
    }
}

async fn handle(
    State(record): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method == Method::HEAD {
        return StatusCode::OK.into_response();
    }
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return (StatusCode::BAD_REQUEST, "Idempotency-Key required").into_response();
    };
    let path = uri.path().to_owned();
    let body = String::from_utf8_lossy(&body).into_owned();
    let (answer, delay) = decide(&record, &key, &path, &body, &headers);
    if let Some(Delay { delay, .. }) = delay {
        tokio::time::sleep(delay).await;
    }
    let (status, text, retry_after) = answer;
    let mut response = (StatusCode::from_u16(status).unwrap(), text).into_response();
    if let Some(after) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", after.parse().unwrap());
    }
    response
}

struct Delay {
    delay: Duration,
}

type Answer = (u16, String, Option<String>);

/// Under the lock: count the attempt, replay or apply, say what to answer.
fn decide(
    record: &Shared,
    key: &str,
    path: &str,
    body: &str,
    headers: &HeaderMap,
) -> (Answer, Option<Delay>) {
    let mut r = record.lock().unwrap();
    let tries = r.tries.get(key).copied().unwrap_or(0); // before this one
    let behaviour = r.behaviours.get(path).cloned();
    let mut delay = None;
    let answer: Answer = if let Some((status, text)) = r.stored.get(key) {
        (*status, format!("replayed: {text}"), None)
    } else {
        match behaviour {
            Some(Behaviour::FailFirst {
                times,
                status,
                retry_after,
            }) if tries < times => (status, format!("failing {}", tries + 1), retry_after),
            Some(Behaviour::Refuse { status, body }) => (status, body, None),
            Some(Behaviour::Auth { token })
                if headers.get("authorization").and_then(|v| v.to_str().ok())
                    != Some(&format!("Bearer {token}")) =>
            {
                (401, "who are you?".into(), None)
            }
            other => {
                match other {
                    Some(Behaviour::SlowFirst { times, delay: d }) if tries < times => {
                        delay = Some(Delay { delay: d });
                    }
                    Some(Behaviour::Work { work }) => {
                        delay = Some(Delay { delay: work });
                    }
                    _ => {}
                }
                apply(&mut r, key, path, body)
            }
        }
    };
    *r.tries.entry(key.to_owned()).or_default() += 1;
    r.attempts.push(Attempt {
        key: key.to_owned(),
        path: path.to_owned(),
        at: Instant::now(),
        status: answer.0,
    });
    (answer, delay)
}

fn apply(r: &mut Record, key: &str, path: &str, body: &str) -> Answer {
    r.effects.push(Effect {
        key: key.to_owned(),
        path: path.to_owned(),
        body: body.to_owned(),
        at: Instant::now(),
    });
    let text = format!("applied #{}", r.effects.len());
    r.stored.insert(key.to_owned(), (201, text.clone()));
    (201, text, None)
}
