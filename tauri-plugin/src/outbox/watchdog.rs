//! The stall watchdog: requests are due for reachable destinations, yet
//! nothing was sent and no outcome reported for `stallAfterMs`. Then it
//! emits `outbox-stalled`, `health` and `outbox_status` say why, and the
//! dispatcher is replaced by a fresh one (the items the old one held come
//! back when their leases end).
//!
//! "Due": items the dispatcher popped ahead and has not sent, or, read from
//! the sidecar, pending HTTP items (first page of `list`) whose destination
//! is not excluded, whose time has come and that no processing or earlier
//! pending item of the same key holds back; nothing while the queue is
//! paused. A dispatcher whose every slot waits for a request still within
//! its timeout is not stalled (`wire_deadlines`), however long that is.

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::{json, Value};

use super::{epoch_ms, events, status::Stalled, Shared};

/// Items of the first `list` page the watchdog looks at.
const SAMPLE: u32 = 500;

/// Whether the dispatcher is stuck: work has been due since `work_seen`
/// and nothing happened since then, or since the last progress, for longer
/// than `stall_after`.
pub(crate) fn verdict(
    now: Instant,
    work_seen: Option<Instant>,
    progress: Instant,
    stall_after: Duration,
) -> Option<Instant> {
    let since = work_seen?.max(progress);
    (now.saturating_duration_since(since) > stall_after).then_some(since)
}

pub(crate) async fn run(shared: Arc<Shared>, restart: Box<dyn Fn() + Send + Sync>) {
    let stall_after = shared.config.stall_after();
    let period = (stall_after / 4).max(Duration::from_millis(20));
    let mut work_seen: Option<Instant> = None;
    loop {
        tokio::time::sleep(period).await;
        if !shared.supervisor.is_ready() {
            work_seen = None; // the supervisor's business, not a stall
            continue;
        }
        // Items popped ahead and not sent are due by definition.
        let buffered = !shared.ready().is_empty();
        let due = if buffered {
            Some(true)
        } else {
            due_work(&shared).await
        };
        match due {
            Some(true) => {
                work_seen.get_or_insert_with(Instant::now);
            }
            _ => {
                work_seen = None;
                continue;
            }
        }
        // Every slot busy with a request whose time is not up: waiting, not
        // stuck (a request may take longer than stallAfterMs by its own
        // timeoutMs). Once one is past its time, "no progress" counts again.
        let slots = shared.config.concurrency();
        if shared
            .wire_deadlines
            .all_slots_waiting_in_time(slots, Instant::now())
        {
            continue;
        }
        let Some(since) = verdict(
            Instant::now(),
            work_seen,
            shared.last_progress(),
            stall_after,
        ) else {
            continue;
        };
        let reason = format!(
            "requests are due for reachable destinations, but none was sent or finished for {} ms",
            since.elapsed().as_millis()
        );
        log::error!("the outbox stalled: {reason}; restarting its dispatcher");
        let stalled = Stalled {
            reason: reason.clone(),
            since: epoch_ms(since),
        };
        shared.set_stalled(stalled.clone());
        shared.emit(
            events::OUTBOX_STALLED,
            json!({"reason": stalled.reason, "since": stalled.since, "restarted": true}),
        );
        restart();
        work_seen = None;
    }
}

/// Whether a pending HTTP item could be dispatched now; `None` if the
/// sidecar could not say.
async fn due_work(shared: &Shared) -> Option<bool> {
    let health = shared
        .supervisor
        .call("health", &json!({}), Duration::ZERO)
        .await
        .ok()?;
    if health.get("paused") == Some(&Value::Bool(true)) {
        return Some(false);
    }
    let list = |status: &str| {
        let params = json!({"status": status, "limit": SAMPLE});
        async move {
            shared
                .supervisor
                .call("list", &params, Duration::ZERO)
                .await
                .ok()
        }
    };
    let processing = list("processing").await?;
    let page = list("pending").await?;
    let (all_offline, excluded) = {
        let table = shared.destinations();
        (table.all_app_offline, table.excluded())
    };
    if all_offline {
        return Some(false);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64;
    let mut keys_ahead: HashSet<String> = processing
        .get("items")?
        .as_array()?
        .iter()
        .filter_map(|item| item.get("partitionKey")?.as_str().map(str::to_owned))
        .collect();
    for item in page.get("items")?.as_array()? {
        let key = item.get("partitionKey").and_then(Value::as_str);
        let held_back = key.is_some_and(|k| !keys_ahead.insert(k.to_owned()));
        let Some(destination) = item.get("destination").and_then(Value::as_str) else {
            continue;
        };
        let available = item
            .get("availableAt")
            .and_then(Value::as_i64)
            .unwrap_or(i64::MAX);
        if !held_back && available <= now && !excluded.iter().any(|o| o == destination) {
            return Some(true);
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_needs_due_work_and_no_progress_for_the_whole_window() {
        let t0 = Instant::now();
        let s = |ms| Duration::from_millis(ms);
        let window = s(1000);
        assert_eq!(
            verdict(t0 + s(5000), None, t0, window),
            None,
            "no work, no stall"
        );
        assert_eq!(verdict(t0 + s(900), Some(t0), t0, window), None);
        assert_eq!(verdict(t0 + s(1100), Some(t0), t0, window), Some(t0));
        // Progress after the work was seen restarts the window.
        assert_eq!(verdict(t0 + s(1100), Some(t0), t0 + s(500), window), None);
        // Old progress does not make fresh work a stall at once.
        assert_eq!(
            verdict(t0 + s(10_100), Some(t0 + s(10_000)), t0, window),
            None
        );
    }
}
