//! The deadlines of the requests on the wire (sent + their timeout), so the
//! watchdog can tell a dispatcher whose every slot waits for a slow but
//! still timely request from a stalled one: only once one of them is past
//! its time can "no progress" mean a stall. Without this, a request whose
//! own `timeoutMs` exceeds `stallAfterMs` was cut off by a restart and its
//! attempt charged when its lease ran out.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
    time::Instant,
};

#[derive(Default)]
pub(crate) struct WireDeadlines {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    deadlines: HashMap<u64, Instant>,
}

impl WireDeadlines {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section leaves the map consistent; ignore poisoning.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request went on the wire; the ticket ends it.
    pub fn start(&self, deadline: Instant) -> u64 {
        let mut inner = self.lock();
        inner.next += 1;
        let ticket = inner.next;
        inner.deadlines.insert(ticket, deadline);
        ticket
    }

    pub fn end(&self, ticket: u64) {
        self.lock().deadlines.remove(&ticket);
    }

    /// Every one of `slots` holds a request whose time is not up at `now`:
    /// the dispatcher cannot send more, and is rightly waiting.
    pub fn all_slots_waiting_in_time(&self, slots: usize, now: Instant) -> bool {
        let inner = self.lock();
        inner.deadlines.len() >= slots && inner.deadlines.values().all(|d| *d > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_full_slots_of_timely_requests_count_as_waiting() {
        let wire = WireDeadlines::default();
        let now = Instant::now();
        let slow = wire.start(now + Duration::from_secs(90));
        assert!(!wire.all_slots_waiting_in_time(2, now), "a slot is free");
        let late = wire.start(now + Duration::from_millis(10));
        assert!(wire.all_slots_waiting_in_time(2, now));
        let after = now + Duration::from_millis(20);
        assert!(
            !wire.all_slots_waiting_in_time(2, after),
            "one is past its time"
        );
        wire.end(late);
        wire.end(slow);
        assert!(
            !wire.all_slots_waiting_in_time(1, now),
            "nothing on the wire"
        );
    }
}
