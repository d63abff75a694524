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
//! It pops ahead, while the slots are busy: when fewer than `concurrency`
//! items wait in its buffer, it asks for enough to fill the buffer again
//! (`Depth`: about 10 ms of work at the current rate, 2 to 8 rounds of
//! `concurrency`), and keeps sending meanwhile. So a slot that frees is
//! filled at once, never after a sidecar round trip, and with a fast server,
//! where the sidecar's per-call cost dominates, each pop carries dozens of
//! items. The price is that a higher-priority item pushed now waits behind
//! at most the buffer (the engine's order holds within each pop); with a
//! slow server the buffer is two rounds. A pop's lease covers its items'
//! wait in that buffer (a request timeout for each round of the buffer up
//! to its last item, one for its own request, and a margin; a request that
//! would outlive its lease gets it extended first: `dispatch`), also when
//! the server turns slow after a fast stretch filled it. The buffer is the
//! outbox's, not the loop's: a dispatcher that the watchdog replaces leaves
//! it to the next one.
//!
//! A pop in flight is never cancelled (an item handed to a cancelled call
//! would sit leased until its lease ends): it runs as a task of its own that
//! puts what it gets in the outbox's buffer, so even a dispatcher that the
//! watchdog aborts mid-pop loses nothing; the loop only waits for it, and
//! stops waiting when connectivity changes (it pops again at once, with the
//! new `except` list, so a destination that comes back is served without
//! waiting for the old long poll). Errors
//! (the sidecar restarting) are retried with a short backoff: the sidecar
//! releases the items it had handed out when it starts again.

use std::{sync::Arc, time::Duration};

use serde_json::{json, Value};
use tokio::{
    sync::Semaphore,
    task::{JoinHandle, JoinSet},
    time::Instant,
};

use super::{dispatch, dispatch::Popped, Shared};
use crate::error::{Error, Result};

/// Long-poll wait while every destination is dispatchable.
const IDLE_WAIT: Duration = Duration::from_secs(5);
/// Long-poll wait while some destination is excluded (how soon one that
/// comes back is served).
const EXCLUDED_WAIT: Duration = Duration::from_millis(200);
/// Added to the lease: reporting takes a moment.
pub(crate) const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// The protocol's limit on a `popBatch`'s `max`. A larger one is refused
/// (`InvalidParams`): with `concurrency` above 500 even two rounds are more,
/// and a dispatcher asking for them would be refused on every pop and send
/// nothing.
const MAX_POP: usize = 1000;
/// While every destination is switched off by the app: how often to look again
/// (`set_online` wakes the loop at once).
const ALL_OFFLINE_RECHECK: Duration = Duration::from_secs(1);

/// The lease a pop asks for: its items wait in the buffer behind up to
/// `rounds` rounds of requests (each up to a timeout), then take their own
/// (a request that needs more gets it extended: `dispatch`). A lease that
/// ended in the buffer would cost the item an attempt it never made.
pub(crate) fn pop_lease(shared: &Shared, rounds: usize) -> Duration {
    let rounds = u32::try_from(rounds).unwrap_or(u32::MAX).max(1);
    shared
        .config
        .timeout()
        .saturating_mul(rounds.saturating_add(1))
        + LEASE_MARGIN
}

pub(crate) async fn run(shared: Arc<Shared>) {
    let mut tasks = JoinSet::new();
    let mut backoff = Duration::from_millis(50);
    let mut next_pop = Instant::now();
    let concurrency = shared.config.concurrency();
    // Owned by this loop: a restarted dispatcher starts with every slot free.
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut popping: Option<JoinHandle<Result<()>>> = None;
    let mut depth = Depth::new(concurrency, Instant::now());
    loop {
        while tasks.try_join_next().is_some() {}
        let (sent, buffered) = fill_slots(&shared, &slots, &mut tasks);
        depth.sent(sent);
        let mut all_offline = false;
        if popping.is_none() && buffered < concurrency && Instant::now() >= next_pop {
            let max = depth
                .items(Instant::now())
                .saturating_sub(buffered)
                .clamp(1, MAX_POP);
            // The last of them waits behind this many rounds.
            let rounds = (buffered + max).div_ceil(concurrency);
            match start_pop(&shared, max, rounds) {
                Some(pop) => popping = Some(pop),
                None => all_offline = true,
            }
        }
        let wait_until = if all_offline {
            Instant::now() + ALL_OFFLINE_RECHECK
        } else {
            next_pop
        };
        tokio::select! {
            answer = async { popping.as_mut().expect("guarded").await }, if popping.is_some() => {
                popping = None;
                // A pop task that panicked is an error like any other: try again.
                let answer = answer.unwrap_or_else(|e| Err(Error::Protocol(format!("pop: {e}"))));
                match answer {
                    Ok(()) => backoff = Duration::from_millis(50),
                    Err(Error::ShuttingDown) => return,
                    Err(e) => {
                        log::warn!(
                            "the outbox could not pop: {e}; trying again in {} ms",
                            backoff.as_millis()
                        );
                        next_pop = Instant::now() + backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            }
            // A slot freed while items wait: fill it (only this loop takes them).
            slot = slots.acquire(), if buffered > 0 => drop(slot),
            // Connectivity changed. A pop in flight asked with the old `except`
            // list: a destination that came back would wait for its long poll to
            // end (up to 200 ms). Leave it to finish on its own (its items still
            // go to the buffer) and ask again now.
            _ = shared.wake_dispatcher.notified() => popping = None,
            _ = tokio::time::sleep_until(wait_until), if popping.is_none() && buffered == 0 => {}
        }
    }
}

/// Sends buffered items while slots are free; how many it sent and how many
/// stay buffered.
fn fill_slots(
    shared: &Arc<Shared>,
    slots: &Arc<Semaphore>,
    tasks: &mut JoinSet<()>,
) -> (usize, usize) {
    let mut ready = shared.ready();
    let mut sent = 0;
    while !ready.is_empty() {
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            break;
        };
        let item = ready.pop_front().expect("not empty");
        tasks.spawn(dispatch::run(shared.clone(), item, slot));
        sent += 1;
    }
    (sent, ready.len())
}

/// How much work the buffer holds: popped-ahead items wait there, and a
/// higher-priority item pushed meanwhile waits behind them.
const BUFFER_TIME: Duration = Duration::from_millis(10);
/// How long a stretch the sending rate is measured over.
const RATE_WINDOW: Duration = Duration::from_millis(50);

/// How many items to keep popped ahead: about `BUFFER_TIME` of work at the
/// rate the dispatcher is sending, at least 2 and at most 8 rounds of
/// `concurrency`. A slow server gets a short buffer (a newly pushed urgent
/// item waits behind little); a fast one gets long pops, which keep the
/// sidecar's per-call cost low.
#[derive(Debug)]
pub(crate) struct Depth {
    concurrency: usize,
    sent: usize,
    since: Instant,
    /// Items per second, smoothed over the last windows.
    rate: f64,
}

impl Depth {
    pub fn new(concurrency: usize, now: Instant) -> Depth {
        Depth {
            concurrency,
            sent: 0,
            since: now,
            rate: 0.0,
        }
    }

    pub fn sent(&mut self, items: usize) {
        self.sent += items;
    }

    /// The buffer's size now.
    pub fn items(&mut self, now: Instant) -> usize {
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed >= RATE_WINDOW {
            let rate = self.sent as f64 / elapsed.as_secs_f64();
            self.rate = (self.rate + rate) / 2.0;
            self.sent = 0;
            self.since = now;
        }
        let wanted = (self.rate * BUFFER_TIME.as_secs_f64()).ceil() as usize;
        wanted.clamp(2 * self.concurrency, 8 * self.concurrency)
    }
}

/// Starts a `popBatch` for up to `max` items of the dispatchable
/// destinations, leased for `rounds` rounds in the buffer, whose items go to
/// the buffer; None while the app has switched every destination off.
fn start_pop(shared: &Arc<Shared>, max: usize, rounds: usize) -> Option<JoinHandle<Result<()>>> {
    let (all_offline, except) = {
        let table = shared.destinations();
        (table.all_app_offline, table.excluded())
    };
    if all_offline {
        return None;
    }
    let wait = if except.is_empty() {
        IDLE_WAIT
    } else {
        EXCLUDED_WAIT
    };
    let lease = pop_lease(shared, rounds);
    let params = json!({
        "max": max,
        "timeoutMs": wait.as_millis() as u64,
        "leaseMs": lease.as_millis() as u64,
        "destinations": {"except": except},
    });
    let shared = shared.clone();
    Some(tokio::spawn(async move {
        let items = shared.supervisor.call("popBatch", &params, wait).await?;
        shared.ready().extend(parse(items, lease));
        Ok(())
    }))
}

fn parse(items: Value, lease: Duration) -> Vec<Popped> {
    let Value::Array(items) = items else {
        log::error!("popBatch did not answer a list: {items}");
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| match serde_json::from_value::<Popped>(item) {
            Ok(popped) => Some(Popped { lease, ..popped }),
            Err(e) => {
                log::error!("an outbox item does not match the protocol: {e}");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_grows_with_the_sending_rate_and_shrinks_with_it() {
        let start = Instant::now();
        let mut depth = Depth::new(8, start);
        assert_eq!(depth.items(start), 16, "no rate known yet: two rounds");
        // 30 000 items/s (a zero-work local server): the most, 8 rounds.
        depth.sent(3000);
        assert_eq!(depth.items(start + Duration::from_millis(100)), 64);
        // 1 200 items/s (8 slots, ~6.5 ms each): the least, two rounds.
        let mut at = start + Duration::from_millis(100);
        for _ in 0..8 {
            depth.sent(120);
            at += Duration::from_millis(100);
            depth.items(at);
        }
        assert_eq!(depth.items(at), 16);
        // 4 000 items/s: 40 items, 10 ms of work.
        for _ in 0..12 {
            depth.sent(400);
            at += Duration::from_millis(100);
            depth.items(at);
        }
        assert_eq!(depth.items(at), 40);
    }

    #[test]
    fn the_rate_is_measured_over_whole_windows() {
        let start = Instant::now();
        let mut depth = Depth::new(4, start);
        depth.sent(1000);
        // 1 ms after the start is too short a stretch to judge the rate by.
        assert_eq!(depth.items(start + Duration::from_millis(1)), 8);
        assert_eq!(depth.items(start + RATE_WINDOW), 32);
    }
}
