//! What the plugin adds to a call: `push` through the plugin's Rust API (no
//! webview) against the same sidecar driven over a raw pipe, in one run.
//!
//! ```sh
//! cargo run --release --example bench -- [N] [CALLERS]
//! ```
//!
//! The sidecar command comes from `SYNC_QUEUE_SIDECAR_CMD` (words), default
//! `<checkout>/.venv/bin/python -m sync_queue`; it runs with `--memory`, so
//! the numbers are protocol and process costs, not fsync.

#[path = "support/sidecar_command.rs"]
mod sidecar_command;

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use sidecar_command::sidecar_command;
use tauri_plugin_sync_queue::{models::PushItem, LaunchSpec, SyncQueue};

struct Raw {
    child: std::process::Child,
    stdin: std::io::BufWriter<std::process::ChildStdin>,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Raw {
    fn start(command: &[String]) -> Raw {
        let mut child = Command::new(&command[0])
            .args(&command[1..])
            .arg("--memory")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the sidecar");
        let stdin = std::io::BufWriter::new(child.stdin.take().unwrap());
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("\"ready\"") {
            line.clear();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "the sidecar ended before ready"
            );
        }
        Raw {
            child,
            stdin,
            stdout,
        }
    }

    fn send(&mut self, id: usize) {
        let req =
            json!({"jsonrpc": "2.0", "id": id, "method": "push", "params": {"payload": {"n": id}}});
        serde_json::to_writer(&mut self.stdin, &req).unwrap();
        self.stdin.write_all(b"\n").unwrap();
    }

    /// The next reply (notifications skipped).
    fn reply(&mut self) -> Value {
        let mut line = String::new();
        loop {
            line.clear();
            assert!(self.stdout.read_line(&mut line).unwrap() > 0);
            let msg: Value = serde_json::from_str(&line).unwrap();
            if msg.get("id").is_some() {
                assert!(msg.get("result").is_some(), "{msg}");
                return msg;
            }
        }
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = self.stdin.flush();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, mut latencies: Vec<Duration>) -> Duration {
    latencies.sort();
    let mean = latencies.iter().sum::<Duration>() / latencies.len() as u32;
    println!(
        "{name:<28} mean {:>7.1} µs  p50 {:>7.1} µs  p99 {:>7.1} µs",
        mean.as_secs_f64() * 1e6,
        percentile(&latencies, 0.5).as_secs_f64() * 1e6,
        percentile(&latencies, 0.99).as_secs_f64() * 1e6
    );
    percentile(&latencies, 0.5)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(2000, |a| a.parse().expect("N"));
    let callers: usize = args.next().map_or(32, |a| a.parse().expect("CALLERS"));
    let command = sidecar_command();
    println!(
        "sidecar: {} --memory; {n} pushes; {callers} concurrent callers",
        command.join(" ")
    );
    let (raw_p50, raw_rate) = bench_raw(&command, n, callers);
    let (plugin_p50, plugin_rate) = bench_plugin(&command, n, callers);
    println!(
        "plugin adds {:.1} µs per call (p50) and loses {:.1} % throughput",
        (plugin_p50.as_secs_f64() - raw_p50.as_secs_f64()) * 1e6,
        (1.0 - plugin_rate / raw_rate) * 100.0
    );
}

/// Raw pipe: one request at a time, then pipelined with `callers` in flight.
/// The median latency and the pipelined rate.
fn bench_raw(command: &[String], n: usize, callers: usize) -> (Duration, f64) {
    let mut raw = Raw::start(command);
    for i in 0..100 {
        raw.send(i);
        raw.stdin.flush().unwrap();
        raw.reply();
    }
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        raw.send(i);
        raw.stdin.flush().unwrap();
        raw.reply();
        latencies.push(t.elapsed());
    }
    let p50 = report("raw pipe, sequential", latencies);
    let t = Instant::now();
    let mut sent = 0;
    for _ in 0..callers.min(n) {
        raw.send(sent);
        sent += 1;
    }
    raw.stdin.flush().unwrap();
    for _ in 0..n {
        raw.reply();
        if sent < n {
            raw.send(sent);
            sent += 1;
            raw.stdin.flush().unwrap();
        }
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    println!(
        "{:<28} {rate:>9.0} calls/s",
        format!("raw pipe, {callers} in flight")
    );
    (p50, rate)
}

/// The plugin's Rust API: sequential, then `callers` concurrent tasks. The
/// median latency and the concurrent rate.
fn bench_plugin(command: &[String], n: usize, callers: usize) -> (Duration, f64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut spec = LaunchSpec::command(
        &command[0],
        command[1..].iter().chain(["--memory".to_owned()].iter()),
    );
    spec.timing.call_timeout = Duration::from_secs(60);
    let queue = Arc::new(SyncQueue::start(rt.handle(), spec, Arc::new(|_| {})));
    rt.block_on(async {
        for i in 0..100 {
            queue.push(&PushItem::new(json!({ "n": i }))).await.unwrap();
        }
        let mut latencies = Vec::with_capacity(n);
        for i in 0..n {
            let t = Instant::now();
            queue.push(&PushItem::new(json!({ "n": i }))).await.unwrap();
            latencies.push(t.elapsed());
        }
        let p50 = report("plugin, sequential", latencies);
        let t = Instant::now();
        let tasks: Vec<_> = (0..callers)
            .map(|c| {
                let queue = queue.clone();
                tokio::spawn(async move {
                    for i in (c..n).step_by(callers) {
                        queue.push(&PushItem::new(json!({ "n": i }))).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let rate = n as f64 / t.elapsed().as_secs_f64();
        println!(
            "{:<28} {rate:>9.0} calls/s",
            format!("plugin, {callers} callers")
        );
        queue.stop().await;
        (p50, rate)
    })
}
