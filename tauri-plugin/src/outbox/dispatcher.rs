//! The dispatcher loop: pops HTTP items for the dispatchable destinations and
//! sends up to `concurrency` at once, one task per item. A slot is held while
//! the request is on the wire, not while its outcome is reported: the
//! sidecar's commit (an fsync on disk) does not keep the next request waiting.
//! Order within a key holds all the same: the engine hands out a key's next
//! item only once the report of the one before is applied.
//!
//! Pops pass `destinations.except` (offline, held and app-offline origins),
//! so the engine keeps those items pending and uncharged; it also keeps
//! items of one `partitionKey` in order, one at a time. A pop long-polls
//! (the sidecar answers as soon as an item is pushed); while a destination
//! is excluded the wait is short, so one that comes back is served promptly.
//!
//! It pops one round ahead (up to `concurrency` more items than free
//! slots), so a slot that frees is filled at once, without a sidecar round
//! trip: with a fast server the per-item sidecar cost dominates, and this
//! halves the calls per item (one pop per round instead of one per item).
//! Leases cover the wait in that buffer (two request timeouts plus a
//! margin). The buffer is the outbox's, not the loop's: a dispatcher that
//! the watchdog replaces leaves it to the next one.
//!
//! The loop never cancels a pop in flight (an item handed to a cancelled
//! call would sit leased until its lease ends). Errors (the sidecar
//! restarting) are retried with a short backoff: the sidecar releases the
//! items it had handed out when it starts again.

use std::{sync::Arc, time::Duration};

use serde_json::{json, Value};
use tokio::{sync::Semaphore, task::JoinSet};

use super::{dispatch, dispatch::Popped, Shared};
use crate::error::Error;

/// Long-poll wait while every destination is dispatchable.
const IDLE_WAIT: Duration = Duration::from_secs(5);
/// Long-poll wait while some destination is excluded (how soon one that
/// comes back is served).
const EXCLUDED_WAIT: Duration = Duration::from_millis(200);
/// Added to the lease: reporting takes a moment.
pub(crate) const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// The lease a pop asks for: in the buffer up to one request's time, then
/// its own (a request that needs more gets it extended: `dispatch`).
pub(crate) fn pop_lease(shared: &Shared) -> Duration {
    shared.config.timeout() * 2 + LEASE_MARGIN
}

pub(crate) async fn run(shared: Arc<Shared>) {
    let mut tasks = JoinSet::new();
    let mut backoff = Duration::from_millis(50);
    let concurrency = shared.config.concurrency();
    // Owned by this loop: a restarted dispatcher starts with every slot free.
    let slots = Arc::new(Semaphore::new(concurrency));
    loop {
        while tasks.try_join_next().is_some() {}
        let waiting = loop {
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                break !shared.ready().is_empty();
            };
            let Some(item) = shared.ready().pop_front() else {
                break false;
            };
            tasks.spawn(dispatch::run(shared.clone(), item, slot));
        };
        if waiting {
            // Every slot is busy: wait for one (only this loop takes them).
            drop(slots.acquire().await);
            continue;
        }
        let (all_offline, except) = {
            let table = shared.destinations();
            (table.all_app_offline, table.excluded())
        };
        if all_offline {
            tokio::select! {
                _ = shared.wake_dispatcher.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        let wait = if except.is_empty() {
            IDLE_WAIT
        } else {
            EXCLUDED_WAIT
        };
        let lease = pop_lease(&shared);
        let params = json!({
            "max": slots.available_permits() + concurrency,
            "timeoutMs": wait.as_millis() as u64,
            "leaseMs": lease.as_millis() as u64,
            "destinations": {"except": except},
        });
        match shared.supervisor.call("popBatch", &params, wait).await {
            Ok(items) => {
                backoff = Duration::from_millis(50);
                shared.ready().extend(parse(items));
            }
            Err(Error::ShuttingDown) => return,
            Err(e) => {
                log::warn!(
                    "the outbox could not pop: {e}; trying again in {} ms",
                    backoff.as_millis()
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

fn parse(items: Value) -> Vec<Popped> {
    let Value::Array(items) = items else {
        log::error!("popBatch did not answer a list: {items}");
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| match serde_json::from_value::<Popped>(item) {
            Ok(popped) => Some(popped),
            Err(e) => {
                log::error!("an outbox item does not match the protocol: {e}");
                None
            }
        })
        .collect()
}
