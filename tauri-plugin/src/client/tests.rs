//! The client over in-memory pipes, with a scripted sidecar.

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
    let call = tokio::spawn(async move { c.call("pop", &json!({"timeoutMs": 60000}), T).await });
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
