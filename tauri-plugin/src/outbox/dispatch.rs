//! One item: send its request, classify the answer, report to the sidecar.
//!
//! Failures that are the network's, not the request's (the host refuses
//! connections, or the connection broke and a probe finds the host gone),
//! mark the destination offline and return the item with `charge: false`:
//! offline time costs no attempts. A 401 does the same and holds the
//! destination for new headers.

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant, SystemTime},
};

use reqwest::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::sync::OwnedSemaphorePermit;

use super::{
    classify::{classify, Overrides, Verdict},
    dispatcher::LEASE_MARGIN,
    events::{self, Outcome, Progress},
    prober,
    request::{invalid, origin_of, HttpSpec, Prepared},
    Shared,
};

/// The fields of a popped item the dispatcher needs.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Popped {
    pub id: String,
    #[serde(default)]
    pub lease_id: Option<String>,
    #[serde(default)]
    pub attempts: u32,
    pub payload: Value,
    #[serde(default)]
    pub destination: Option<String>,
    /// When the pop handed it out: its lease runs from then.
    #[serde(skip, default = "Instant::now")]
    pub popped_at: Instant,
    /// The lease the pop asked for (`dispatcher::pop_lease`).
    #[serde(skip)]
    pub lease: Duration,
}

/// How much of a response body is read (for the hook and the excerpt).
const BODY_READ_LIMIT: usize = 64 * 1024;

/// What to tell the sidecar.
enum Report {
    Complete {
        status: u16,
    },
    Fail {
        status: Option<u16>,
        error: String,
        dead: bool,
        retry_after: Option<Duration>,
    },
    /// Not the request's fault: back to pending, no attempt counted.
    Uncharged {
        error: String,
    },
}

/// `slot` is one of the dispatcher's concurrency slots: given back as soon as
/// the request is done, before the outcome is reported.
pub(crate) async fn run(shared: Arc<Shared>, mut item: Popped, slot: OwnedSemaphorePermit) {
    // The payload is read once, here: taken, not copied.
    let payload = std::mem::take(&mut item.payload);
    let spec = HttpSpec::from_payload(payload).and_then(|spec| {
        let prepared = spec.prepare()?;
        // enqueue_request refuses such ids; an item pushed some other way
        // must not go out without its Idempotency-Key either.
        HeaderValue::from_str(&item.id).map_err(|_| {
            invalid(
                "id",
                format!(
                    "id {:?} cannot be sent as the Idempotency-Key header",
                    item.id
                ),
            )
        })?;
        Ok((spec, prepared))
    });
    let (spec, prepared) = match spec {
        Ok(ok) => ok,
        Err(e) => {
            let origin = item.destination.clone().unwrap_or_default();
            let report = Report::Fail {
                status: None,
                error: e.to_string(),
                dead: true,
                retry_after: None,
            };
            return finish(&shared, item, origin, report).await;
        }
    };
    let origin = item
        .destination
        .clone()
        .or_else(|| origin_of(&spec.url).ok())
        .unwrap_or_default();
    // It may have gone offline (or been held) since the pop.
    let excluded = {
        let table = shared.destinations();
        table.all_app_offline || table.get(&origin).is_some_and(|d| d.excluded())
    };
    if excluded {
        let report = Report::Uncharged {
            error: format!("{origin} is not dispatchable now"),
        };
        return finish(&shared, item, origin, report).await;
    }
    if !lease_covers(&shared, &item, prepared.timeout).await {
        return; // not ours to send now: it comes back when its lease ends
    }
    let deadline = Instant::now() + prepared.timeout.unwrap_or_else(|| shared.config.timeout());
    let on_the_wire = OnTheWire::start(&shared, &origin, deadline);
    shared.progressed();
    progress(&shared, &item, &origin, Outcome::Dispatched, None, None);
    let report = send(&shared, &item, &origin, &spec, prepared).await;
    drop(slot);
    drop(on_the_wire);
    finish(&shared, item, origin, report).await;
}

/// A request counted in flight (`outbox_status`), uncounted when dropped:
/// also when its task is aborted mid-request (the watchdog replacing a
/// stalled dispatcher), which would otherwise leave it counted for good.
/// Its deadline (sent + its timeout) tells the watchdog that a slot busy
/// with a slow request is not a stall until that request's time is up.
struct OnTheWire<'a> {
    shared: &'a Shared,
    origin: &'a str,
    ticket: u64,
}

impl<'a> OnTheWire<'a> {
    fn start(shared: &'a Shared, origin: &'a str, deadline: Instant) -> Self {
        {
            let mut table = shared.destinations();
            let d = table.entry(origin);
            d.in_flight += 1;
            d.counters.dispatched += 1;
        }
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        let ticket = shared.wire_deadlines.start(deadline);
        OnTheWire {
            shared,
            origin,
            ticket,
        }
    }
}

impl Drop for OnTheWire<'_> {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.shared.destinations().entry(self.origin).in_flight -= 1;
        self.shared.wire_deadlines.end(self.ticket);
    }
}

/// The pop's lease must last until the request is answered and reported: a
/// request with a longer `timeoutMs` of its own, or one that waited in the
/// buffer behind slow requests, gets its lease extended first. Otherwise the
/// lease could end mid-request and the engine hand the item out again: a
/// second copy on the wire beside the first, and the first one's report
/// refused. False when the lease could not be extended (then the request is
/// not sent: the item may already be someone else's).
async fn lease_covers(shared: &Shared, item: &Popped, timeout: Option<Duration>) -> bool {
    let timeout = timeout.unwrap_or_else(|| shared.config.timeout());
    let lease_left = item.lease.saturating_sub(item.popped_at.elapsed());
    if timeout + LEASE_MARGIN <= lease_left {
        return true;
    }
    let mut params = json!({
        "id": item.id,
        "leaseMs": (timeout + LEASE_MARGIN).as_millis() as u64,
    });
    if let Some(lease) = &item.lease_id {
        params["leaseId"] = json!(lease);
    }
    match shared
        .supervisor
        .call("extendLease", &params, Duration::ZERO)
        .await
    {
        Ok(_) => true,
        Err(e) => {
            log::warn!(
                "outbox item {}: could not extend its lease for a {} ms request: {e}",
                item.id,
                timeout.as_millis()
            );
            false
        }
    }
}

async fn send(
    shared: &Shared,
    item: &Popped,
    origin: &str,
    spec: &HttpSpec,
    prepared: Prepared,
) -> Report {
    let mut headers = prepared.headers;
    for (name, value) in shared.auth.for_origin(origin) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.insert(name, value);
        }
    }
    if let Ok(key) = HeaderValue::from_str(&item.id) {
        headers.insert("idempotency-key", key); // always Ok: checked in `run`
    }
    let timeout = prepared.timeout.unwrap_or_else(|| shared.config.timeout());
    let mut request = shared
        .http
        .request(prepared.method, prepared.url)
        .headers(headers)
        .timeout(timeout);
    if let Some(body) = prepared.body {
        request = request.body(body);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => return transport_failure(shared, origin, &e, timeout).await,
    };
    let status = response.status().as_u16();
    let response_headers = response.headers().clone();
    let body = match read_bounded(response, BODY_READ_LIMIT).await {
        Ok(body) => body,
        Err(e) => return transport_failure(shared, origin, &e, timeout).await,
    };
    let overrides = Overrides {
        retry: &spec.retry_statuses,
        dead: &spec.dead_statuses,
    };
    let verdict = classify(
        status,
        &response_headers,
        &body,
        &overrides,
        shared.hook.as_ref(),
        shared.config.body_excerpt_bytes,
        SystemTime::now(),
    );
    match verdict {
        Verdict::Complete => Report::Complete { status },
        Verdict::Retry { error, after } => Report::Fail {
            status: Some(status),
            error,
            dead: false,
            retry_after: after,
        },
        Verdict::Dead { error } => Report::Fail {
            status: Some(status),
            error,
            dead: true,
            retry_after: None,
        },
        Verdict::AuthRequired => {
            let newly = shared.change(origin, |table| {
                let d = table.entry(origin);
                d.last_error = Some(format!("HTTP {status}: credentials refused"));
                !std::mem::replace(&mut d.auth_held, true)
            });
            if newly {
                log::warn!("{origin} refused the credentials (HTTP {status}); its requests wait for new headers");
            }
            shared.emit(
                events::AUTH_REQUIRED,
                json!({"destination": origin, "status": status, "itemId": item.id}),
            );
            Report::Uncharged {
                error: format!("HTTP {status}: waiting for new credentials"),
            }
        }
    }
}

/// No usable response. Refused connections and DNS failures say the host is
/// unreachable; a timeout says the request is slow (charged: a host that is
/// always too slow must reach the dead letters); any other break is
/// checked with a probe.
async fn transport_failure(
    shared: &Shared,
    origin: &str,
    error: &reqwest::Error,
    timeout: Duration,
) -> Report {
    let text = error_chain(error);
    if error.is_timeout() && !error.is_connect() {
        return Report::Fail {
            status: None,
            error: format!("timed out after {} ms: {text}", timeout.as_millis()),
            dead: false,
            retry_after: None,
        };
    }
    if error.is_connect() || prober::probe(shared, origin).await.is_err() {
        shared.went_offline(origin, &text);
        return Report::Uncharged { error: text };
    }
    Report::Fail {
        status: None,
        error: text,
        dead: false,
        retry_after: None,
    }
}

/// The error and its causes, which say what actually failed.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

async fn read_bounded(mut response: reqwest::Response, limit: usize) -> reqwest::Result<Vec<u8>> {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await? {
            Some(chunk) => body.extend_from_slice(&chunk[..chunk.len().min(limit - body.len())]),
            None => break,
        }
    }
    Ok(body)
}

/// Tells the sidecar and the app what became of the attempt. A success is
/// handed to the completer (batched with the other tasks', one sidecar call
/// per round trip), which records it once the sidecar has answered; this
/// task ends at once.
async fn finish(shared: &Arc<Shared>, item: Popped, origin: String, report: Report) {
    let (params, outcome, status, error) = match report {
        Report::Complete { status } => return hand_to_completer(shared, item, origin, status),
        Report::Fail {
            status,
            error,
            dead,
            retry_after,
        } => {
            let mut params = fail_params(&item, &error);
            if dead {
                params.insert("dead".into(), json!(true));
            }
            if let Some(after) = retry_after {
                params.insert("retryAfterMs".into(), json!(after.as_millis() as u64));
            }
            let outcome = if dead {
                Outcome::Dead
            } else {
                Outcome::Retried
            };
            (params, Some(outcome), status, error)
        }
        Report::Uncharged { error } => {
            let mut params = fail_params(&item, &error);
            params.insert("charge".into(), json!(false));
            (params, None, None, error)
        }
    };
    let answer = shared
        .supervisor
        .call("fail", &Value::Object(params), Duration::ZERO)
        .await;
    let outcome = match (&answer, outcome) {
        // Out of retries: the engine made it dead.
        (Ok(v), Some(Outcome::Retried)) if v.get("retry") == Some(&Value::Bool(false)) => {
            Some(Outcome::Dead)
        }
        (_, outcome) => outcome,
    };
    let error = Some(error.as_str());
    recorded(shared, &item, &origin, &answer, outcome, status, error);
}

/// A success goes to the completer, which records it once the sidecar has.
fn hand_to_completer(shared: &Arc<Shared>, item: Popped, origin: String, status: u16) {
    let (id, lease) = (item.id.clone(), item.lease_id.clone());
    let then = {
        let shared = shared.clone();
        Box::new(move |answer: crate::error::Result<()>| {
            let answer = answer.map(|()| Value::Null);
            let outcome = Some(Outcome::Succeeded);
            recorded(
                &shared,
                &item,
                &origin,
                &answer,
                outcome,
                Some(status),
                None,
            );
        })
    };
    shared.completer.complete(&id, lease.as_deref(), then);
}

/// The `fail` params every failure has: the item, its lease, the error.
fn fail_params(item: &Popped, error: &str) -> Map<String, Value> {
    let mut params = Map::new();
    params.insert("id".into(), json!(item.id));
    if let Some(lease) = &item.lease_id {
        params.insert("leaseId".into(), json!(lease));
    }
    params.insert("error".into(), json!(error));
    params
}

/// Counts and announces an outcome the sidecar has (or has not) recorded.
fn recorded(
    shared: &Shared,
    item: &Popped,
    origin: &str,
    answer: &crate::error::Result<Value>,
    outcome: Option<Outcome>,
    status: Option<u16>,
    error: Option<&str>,
) {
    // Not recorded: no outcome yet (no event, no count). The item comes
    // back (its lease ends, or the restarted sidecar releases it) and is
    // sent again; the Idempotency-Key makes that safe.
    let outcome = match answer {
        Ok(_) => outcome,
        Err(e) => {
            log::warn!(
                "could not report the outcome of outbox item {}: {e}",
                item.id
            );
            None
        }
    };
    {
        let mut table = shared.destinations();
        let d = table.entry(origin);
        match outcome {
            Some(Outcome::Succeeded) => d.counters.succeeded += 1,
            Some(Outcome::Retried) => d.counters.retried += 1,
            Some(Outcome::Dead) => d.counters.dead += 1,
            _ => {}
        }
        if let (Some(error), Some(_)) = (error, outcome) {
            d.last_error = Some(error.to_owned());
        }
    }
    shared.progressed();
    if let Some(outcome) = outcome {
        progress(shared, item, origin, outcome, status, error);
    }
}

fn progress(
    shared: &Shared,
    item: &Popped,
    origin: &str,
    outcome: Outcome,
    status: Option<u16>,
    error: Option<&str>,
) {
    // `attempts` counts this attempt already (the pop counted it).
    let payload = Progress {
        id: &item.id,
        destination: origin,
        outcome,
        status,
        error,
        attempts: item.attempts,
    };
    shared.emit(
        events::OUTBOX_PROGRESS,
        serde_json::to_value(payload).unwrap_or(Value::Null),
    );
}
