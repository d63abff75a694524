//! The outbox against a plain `reqwest` loop, in one run, to the same local
//! server (tests/outbox_server: axum on 127.0.0.1, idempotent per key):
//!
//! - throughput draining N requests at 8-way concurrency, for a handler that
//!   does no work and for handlers that wait 1 ms and 5 ms (as a database
//!   write would; tokio's timer makes that about 2.2 and 6.3 ms a request),
//!   in memory and on disk; beside the outbox, a hand-written queue worker
//!   (pop 64, send them 8 at a time, `completeBatch`), the least any sender
//!   backed by the sidecar does; the CPU each request took, in the sidecar
//!   and in this process (HTTP client, server, and the outbox around the
//!   client), beside the plain loop's;
//! - added latency: one request at a time, enqueue → server applied → the
//!   item completed, against one `reqwest` round trip;
//! - outage recovery: the server down 10 s, time from its return to the
//!   first request it applies (default probe settings).
//!
//! ```sh
//! cargo run --release --example bench_outbox -- [N, default 5000]
//! ```
//!
//! The sidecar: `SYNC_QUEUE_SIDECAR_CMD` (words), default
//! `<checkout>/.venv/bin/python -m sync_queue`, with `--memory` or a fresh
//! `--data-dir` (removed afterwards).
//!
//! Results, 2026-12-01 13:54-13:57 UTC, three runs in a row on `3df7eff`,
//! N = 5000, the 2-core machine otherwise idle (load 0.8-1.5), release
//! build (README.md, "Sync to your server", has the ranges of these and of
//! two more runs on `048eb2e`, 14:22-14:24):
//!
//! | figure (8-way; peer: plain reqwest, same server, same run) | outbox | hand-written worker | peer |
//! |---|---|---|---|
//! | zero-work handler, memory: rate, ratio | 28.7-34.9 k/s, 0.42-0.49 | 0.40-0.44 | 68.9-70.9 k/s |
//! | zero-work handler, on disk | 22.7-26.3 k/s, 0.33-0.37 | 0.35-0.38 | same |
//! | zero-work, CPU µs per request: sidecar + this process | 8-10 + 40-48 | 4-8 + 38-44 | 26-28 |
//! | 1 ms handler (2.2 ms a request), memory / on disk | 0.91-0.96 / 0.92-0.97 | 0.86-0.90 / 0.82-0.86 | 3.6 k/s |
//! | 5 ms handler (6.3 ms a request), memory / on disk | 0.95-0.99 / 0.94-0.99 | 0.92-0.96 / 0.90-0.95 | 1.25-1.28 k/s |
//! | latency one at a time, zero-work, median | 0.32-0.39 ms (4.1-5.1×) | | 0.08-0.09 ms |
//! | latency one at a time, 5 ms handler, median | 6.54-6.94 ms (1.05×) | | 6.25-6.63 ms |
//! | outage of 10 s: server back → first request applied | 641-845 ms | | target 1000 ms |
//!
//! Where the server does any work the outbox keeps within 1-10 % of the
//! plain loop's time (the target: 30 %), on disk included, and ahead of the
//! hand-written worker. With a handler that does nothing, the run is
//! CPU-bound on 2 cores shared by client, server and sidecar: the plain loop
//! needs 26-28 µs of CPU per request, the outbox 48-58 (8-10 of them in the
//! sidecar: lease, journal, complete; 14-20 more in this process: the calls
//! to the sidecar and their JSON, a task per request, progress events), so
//! it reaches about half of the plain loop's rate there. The hand-written
//! worker (lockstep: pop, send, complete; a baseline, not a floor) does no
//! better. Earlier today, before the pop-ahead and completion changes
//! (12:58 UTC, N = 2000, on `bb882ed`): 19.3 k/s in memory, 13.8 k/s on
//! disk.

#[path = "../tests/outbox_server/mod.rs"]
mod outbox_server;
#[path = "support/sidecar_command.rs"]
mod sidecar_command;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use outbox_server::{Behaviour, TestServer};
use serde_json::{json, Value};
use sidecar_command::sidecar_command;
use tauri_plugin_sync_queue::{
    models::{CompleteRef, Destinations, PopBatchOptions},
    HttpRequest, LaunchSpec, OutboxConfig, OutboxEventSink, OutboxHooks, SyncQueue,
};
use tokio::{
    sync::{Notify, Semaphore},
    task::JoinSet,
};

const CONCURRENCY: usize = 8;

/// Where the sidecar keeps the queue: memory, or a data directory with the
/// default durability (fsync at each group commit).
#[derive(Clone, Copy)]
enum Storage {
    Memory,
    Disk,
}

/// Counts the outbox's `succeeded` events. The waiter is woken once, when
/// the count it waits for is reached, not at each event: a wake-up per item
/// would charge the outbox a thread switch the plain loop does not pay.
#[derive(Default)]
struct Succeeded {
    count: AtomicUsize,
    target: AtomicUsize,
    last: std::sync::Mutex<Option<Instant>>,
    reached: Notify,
}

impl Succeeded {
    fn record(&self) {
        *self.last.lock().unwrap() = Some(Instant::now());
        let count = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        if count >= self.target.load(Ordering::SeqCst) {
            self.reached.notify_one();
        }
    }

    /// Waits until `count` items have succeeded; when the last one did.
    async fn wait_for(&self, count: usize) -> Instant {
        self.target.store(count, Ordering::SeqCst);
        while self.count.load(Ordering::SeqCst) < count {
            self.reached.notified().await;
        }
        self.last.lock().unwrap().unwrap()
    }
}

/// A sidecar; with `Storage::Disk`, in a fresh data directory (removed by
/// `Sidecar::stop`).
struct Sidecar {
    queue: Arc<SyncQueue>,
    dir: Option<std::path::PathBuf>,
}

impl Sidecar {
    fn start(rt: &tokio::runtime::Runtime, storage: Storage) -> Sidecar {
        let command = sidecar_command();
        let dir = match storage {
            Storage::Memory => None,
            Storage::Disk => Some(std::env::temp_dir().join(format!(
                "sync-queue-bench-outbox-{}-{:?}",
                std::process::id(),
                Instant::now()
            ))),
        };
        let storage_args = match &dir {
            None => vec!["--memory".to_owned()],
            Some(dir) => vec!["--data-dir".to_owned(), dir.display().to_string()],
        };
        let mut spec =
            LaunchSpec::command(&command[0], command[1..].iter().chain(storage_args.iter()));
        spec.timing.call_timeout = Duration::from_secs(60);
        let queue = Arc::new(SyncQueue::start(rt.handle(), spec, Arc::new(|_| {})));
        Sidecar { queue, dir }
    }

    async fn stop(self) {
        self.queue.stop().await;
        if let Some(dir) = self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A sidecar with a running outbox; its `succeeded` events are counted.
fn start_queue(
    rt: &tokio::runtime::Runtime,
    config: OutboxConfig,
    storage: Storage,
) -> (Sidecar, Arc<Succeeded>) {
    let sidecar = Sidecar::start(rt, storage);
    let succeeded = Arc::new(Succeeded::default());
    let counter = succeeded.clone();
    let sink: OutboxEventSink = Arc::new(move |name, payload: Value| {
        if name == "sync-queue://outbox-progress" && payload["outcome"] == "succeeded" {
            counter.record();
        }
    });
    sidecar
        .queue
        .start_outbox(rt.handle(), config, OutboxHooks::default(), sink)
        .unwrap();
    (sidecar, succeeded)
}

fn request(server: &TestServer, path: &str, n: usize) -> HttpRequest {
    let mut request = HttpRequest::new("POST", server.url(path));
    request.body = Some(json!({"n": n, "note": "an edit to sync"}));
    request
}

/// One drain of `n` requests: its rate and the CPU it took per request.
#[derive(Clone, Copy)]
struct Drain {
    per_second: f64,
    /// The sidecar's CPU per request (0 for the plain loop).
    sidecar_us: f64,
    /// This process's CPU per request: the HTTP client and the server, and
    /// for the outbox the plugin around the client.
    process_us: f64,
}

/// Queues `n` requests to `path`, one `enqueue_request` each.
async fn enqueue(queue: &SyncQueue, server: &TestServer, path: &str, n: usize) {
    for i in 0..n {
        queue
            .enqueue_request(&request(server, path, i))
            .await
            .unwrap();
    }
}

/// Time and CPU (the sidecar's, this process's) from `start` to `drain`.
struct Meter {
    pid: String,
    at: Instant,
    sidecar: f64,
    process: f64,
}

impl Meter {
    fn start(queue: &SyncQueue) -> Meter {
        let pid = queue.sidecar_pid().unwrap().to_string();
        let (sidecar, process) = (cpu_seconds(&pid), cpu_seconds("self"));
        Meter {
            pid,
            at: Instant::now(),
            sidecar,
            process,
        }
    }

    /// `n` requests were sent since `start`.
    fn drain(&self, n: usize) -> Drain {
        let per_second = n as f64 / self.at.elapsed().as_secs_f64();
        let (sidecar, process) = (cpu_seconds(&self.pid), cpu_seconds("self"));
        Drain {
            per_second,
            sidecar_us: (sidecar - self.sidecar) * 1e6 / n as f64,
            process_us: (process - self.process) * 1e6 / n as f64,
        }
    }
}

/// The outbox draining `n` requests queued while it was switched off.
fn outbox_throughput(
    rt: &tokio::runtime::Runtime,
    server: &TestServer,
    path: &str,
    n: usize,
    storage: Storage,
) -> Drain {
    let (sidecar, succeeded) = start_queue(rt, OutboxConfig::default(), storage);
    let queue = sidecar.queue.clone();
    rt.block_on(async {
        queue.set_online(false, None).unwrap();
        enqueue(&queue, server, path, n).await;
        let meter = Meter::start(&queue);
        queue.set_online(true, None).unwrap();
        succeeded.wait_for(n).await;
        let drain = meter.drain(n);
        sidecar.stop().await;
        drain
    })
}

/// The least a queue-backed sender does, written by hand: pop 64, send them
/// `CONCURRENCY` at a time with plain reqwest, complete them in one call,
/// again; no pop-ahead, connectivity, classification, lease extensions or
/// events.
/// Beside the outbox it tells what the sidecar costs from what the outbox
/// adds around it.
fn worker_throughput(
    rt: &tokio::runtime::Runtime,
    server: &TestServer,
    path: &str,
    n: usize,
    storage: Storage,
) -> Drain {
    let sidecar = Sidecar::start(rt, storage);
    let queue = sidecar.queue.clone();
    let client = plain_client();
    let url = server.url(path);
    rt.block_on(async {
        enqueue(&queue, server, path, n).await;
        let meter = Meter::start(&queue);
        let mut done = 0;
        let slots = Arc::new(Semaphore::new(CONCURRENCY));
        while done < n {
            // Items with a destination go to pops that name the ones to skip.
            let options = PopBatchOptions {
                max: Some(64),
                destinations: Some(Destinations::default()),
                ..PopBatchOptions::default()
            };
            let mut sends = JoinSet::new();
            for item in queue.pop_batch(&options).await.unwrap() {
                let slot = slots.clone().acquire_owned().await.unwrap();
                let (client, url) = (client.clone(), url.clone());
                sends.spawn(async move {
                    let body = serde_json::to_vec(&item.payload["http"]["body"]).unwrap();
                    let response = client
                        .post(&url)
                        .header("idempotency-key", &item.id)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    assert!(response.status().is_success());
                    response.bytes().await.unwrap();
                    drop(slot);
                    CompleteRef {
                        id: item.id,
                        lease_id: item.lease_id,
                    }
                });
            }
            let sent = sends.join_all().await;
            assert!(
                !sent.is_empty(),
                "{done} of {n} sent, and the queue has no more"
            );
            done += sent.len();
            let answer = queue.complete_batch(&sent).await.unwrap();
            assert!(answer.errors.is_empty(), "{:?}", answer.errors);
        }
        let drain = meter.drain(n);
        sidecar.stop().await;
        drain
    })
}

/// CPU seconds (user + system) a process has used so far, from /proc (in
/// clock ticks of 10 ms: a drain should last a second or more).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// A plain reqwest loop (`CONCURRENCY` tasks) sending `n` requests.
fn reqwest_throughput(
    rt: &tokio::runtime::Runtime,
    server: &TestServer,
    path: &str,
    n: usize,
) -> Drain {
    let client = plain_client();
    let url = server.url(path);
    let next = Arc::new(AtomicUsize::new(0));
    let run = format!("{:?}", Instant::now());
    rt.block_on(async {
        let t = Instant::now();
        let self0 = cpu_seconds("self");
        let tasks: Vec<_> = (0..CONCURRENCY)
            .map(|_| {
                let (client, url, next, run) =
                    (client.clone(), url.clone(), next.clone(), run.clone());
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        let body = json!({"n": i, "note": "an edit to sync"});
                        let response = client
                            .post(&url)
                            .header("idempotency-key", format!("plain-{run}-{i}"))
                            .header("content-type", "application/json")
                            .body(serde_json::to_vec(&body).unwrap())
                            .send()
                            .await
                            .unwrap();
                        assert!(response.status().is_success());
                        response.bytes().await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        Drain {
            per_second: n as f64 / t.elapsed().as_secs_f64(),
            sidecar_us: 0.0,
            process_us: (cpu_seconds("self") - self0) * 1e6 / n as f64,
        }
    })
}

/// The peer: reqwest with the same TLS setup as the outbox's (rustls, ring).
fn plain_client() -> reqwest::Client {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_platform_verifier()
        .unwrap()
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median enqueue → completed of one request at a time, and of one reqwest call.
fn latencies(
    rt: &tokio::runtime::Runtime,
    server: &TestServer,
    path: &str,
    rounds: usize,
) -> (Duration, Duration) {
    let (sidecar, succeeded) = start_queue(rt, OutboxConfig::default(), Storage::Memory);
    let queue = sidecar.queue.clone();
    let outbox = rt.block_on(async {
        let mut all = Vec::new();
        for i in 0..rounds {
            let t = Instant::now();
            queue
                .enqueue_request(&request(server, path, i))
                .await
                .unwrap();
            let done = succeeded.wait_for(i + 1).await;
            all.push(done - t);
        }
        sidecar.stop().await;
        all
    });
    let client = plain_client();
    let plain = rt.block_on(async {
        let mut all = Vec::new();
        for i in 0..rounds {
            let t = Instant::now();
            let response = client
                .post(server.url(path))
                .header("idempotency-key", format!("lat-plain-{path}-{i}"))
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&json!({"n": i})).unwrap())
                .send()
                .await
                .unwrap();
            response.bytes().await.unwrap();
            all.push(t.elapsed());
        }
        all
    });
    (median(outbox), median(plain))
}

/// From the server's return after a 10 s outage to its first applied request.
fn outage_recovery(rt: &tokio::runtime::Runtime, server: &mut TestServer) -> Duration {
    let (sidecar, _succeeded) = start_queue(rt, OutboxConfig::default(), Storage::Memory);
    let queue = sidecar.queue.clone();
    server.stop();
    rt.block_on(async {
        for i in 0..20 {
            queue
                .enqueue_request(&request(server, "/outage", i))
                .await
                .unwrap();
        }
    });
    std::thread::sleep(Duration::from_secs(10));
    let before = server.record().effects.len();
    let back = Instant::now();
    server.resume();
    let first = loop {
        if let Some(e) = server.record().effects.get(before) {
            break e.at;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    rt.block_on(sidecar.stop());
    first - back
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut server = TestServer::start();
    for (path, ms) in [("/work1", 1), ("/work5", 5)] {
        let work = Duration::from_millis(ms);
        server.on(path, Behaviour::Work { work });
    }

    // Warm up both (connections, the sidecar's imports).
    reqwest_throughput(&rt, &server, "/warm", 200);
    outbox_throughput(&rt, &server, "/warm", 200, Storage::Memory);

    let title = format!("figure (N = {n}, 8-way; peer: plain reqwest, same server)");
    println!(
        "{title:<72} {:>12} {:>12} {:>6}   CPU µs/request: sidecar + this process (peer)",
        "sender", "peer", "ratio"
    );
    for (handler, path) in [
        ("zero-work handler", "/zero"),
        ("1 ms handler", "/work1"),
        ("5 ms handler", "/work5"),
    ] {
        let plain = reqwest_throughput(&rt, &server, path, n);
        // What a request takes in the plain loop (tokio's timer rounds the
        // handler's wait up to its next millisecond tick).
        let each = CONCURRENCY as f64 / plain.per_second * 1000.0;
        for (storage, name) in [(Storage::Memory, "memory"), (Storage::Disk, "on disk")] {
            let rows = [
                ("outbox", outbox_throughput(&rt, &server, path, n, storage)),
                (
                    "hand-written worker",
                    worker_throughput(&rt, &server, path, n, storage),
                ),
            ];
            for (sender, drain) in rows {
                println!(
                    "{:<72} {:>8.0} /s  {:>8.0} /s  {:>6.2}   {:.0} + {:.0} ({:.0})",
                    format!("{sender}, {handler} ({each:.2} ms a request), {name}"),
                    drain.per_second,
                    plain.per_second,
                    drain.per_second / plain.per_second,
                    drain.sidecar_us,
                    drain.process_us,
                    plain.process_us,
                );
            }
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for (handler, path, rounds) in [("zero-work", "/lat", 200), ("5 ms handler", "/work5", 100)] {
        let (outbox, peer) = latencies(&rt, &server, path, rounds);
        println!(
            "{:<72} {:>8.2} ms  {:>8.2} ms  {:>6.2}",
            format!("latency, {handler}, one at a time, median"),
            ms(outbox),
            ms(peer),
            ms(outbox) / ms(peer)
        );
    }
    let recovery = outage_recovery(&rt, &mut server);
    println!(
        "{:<72} {:>8.0} ms  {:>8.0} ms  {:>6.2}",
        "outage of 10 s: server back → first applied (peer: target)",
        ms(recovery),
        1000.0,
        ms(recovery) / 1000.0
    );
}
