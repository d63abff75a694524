//! Per-destination reachability and the probe schedule.
//!
//! A destination (an origin) is `offline` after a network-class failure, held
//! (`authRequired`) after a 401, or switched off by the app (`appOffline`).
//! Its items are then left in the queue (the dispatcher pops with
//! `destinations.except`), so offline time costs them no attempts.
//!
//! Probe schedule: the gap between probes is a tenth of how long the
//! destination has been unreachable, at least `probeInitialMs` and at most
//! `probeMaxMs`, minus up to 20 % jitter (so a fleet does not probe in step).
//! The gaps grow exponentially (each ~1.1× the one before) and the time from
//! the server's return to the probe that notices it is at most a tenth of
//! the outage: ≤ 1 s after a 10 s outage, ≤ `probeMaxMs` after a long one.
//!
//! Pure bookkeeping, time passed in: the tests drive it without a clock.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use serde::Serialize;

/// One destination's state, as `outbox_status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Reach {
    Online,
    Offline,
    AuthRequired,
    AppOffline,
}

#[derive(Debug, Clone)]
pub(crate) struct Outage {
    pub since: Instant,
    pub next_probe: Instant,
    pub error: String,
}

/// Progress counters of one destination since the app started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    pub dispatched: u64,
    pub succeeded: u64,
    pub retried: u64,
    pub dead: u64,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Destination {
    pub outage: Option<Outage>,
    pub auth_held: bool,
    pub app_offline: bool,
    pub last_error: Option<String>,
    pub in_flight: usize,
    pub counters: Counters,
}

impl Destination {
    pub fn reach(&self, all_app_offline: bool) -> Reach {
        if self.app_offline || all_app_offline {
            Reach::AppOffline
        } else if self.auth_held {
            Reach::AuthRequired
        } else if self.outage.is_some() {
            Reach::Offline
        } else {
            Reach::Online
        }
    }

    pub fn excluded(&self) -> bool {
        self.app_offline || self.auth_held || self.outage.is_some()
    }
}

/// The probe schedule's bounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProbePolicy {
    pub initial: Duration,
    pub max: Duration,
}

impl ProbePolicy {
    /// The gap before the next probe of a destination unreachable for
    /// `offline_for`; `jitter` in [0, 1) takes up to 20 % off.
    pub fn gap(&self, offline_for: Duration, jitter: f64) -> Duration {
        let gap = (offline_for / 10).clamp(self.initial, self.max);
        gap.mul_f64(1.0 - 0.2 * jitter.clamp(0.0, 1.0))
    }
}

/// Every destination the outbox has met.
#[derive(Debug, Default)]
pub(crate) struct Destinations {
    by_origin: HashMap<String, Destination>,
    /// `set_online(false)` without a destination: nothing is dispatched.
    pub all_app_offline: bool,
}

impl Destinations {
    pub fn entry(&mut self, origin: &str) -> &mut Destination {
        self.by_origin.entry(origin.to_owned()).or_default()
    }

    pub fn get(&self, origin: &str) -> Option<&Destination> {
        self.by_origin.get(origin)
    }

    /// The origins pops must skip.
    pub fn excluded(&self) -> Vec<String> {
        let mut list: Vec<String> = self
            .by_origin
            .iter()
            .filter(|(_, d)| d.excluded())
            .map(|(o, _)| o.clone())
            .collect();
        list.sort();
        list
    }

    /// Marks `origin` unreachable. Returns the first probe's time if it was
    /// reachable before (an outage begins: emit `destination-offline`).
    pub fn went_offline(
        &mut self,
        origin: &str,
        error: &str,
        now: Instant,
        policy: ProbePolicy,
        jitter: f64,
    ) -> Option<Instant> {
        let d = self.entry(origin);
        d.last_error = Some(error.to_owned());
        if d.outage.is_some() {
            return None;
        }
        let next_probe = now + policy.gap(Duration::ZERO, jitter);
        d.outage = Some(Outage {
            since: now,
            next_probe,
            error: error.to_owned(),
        });
        Some(next_probe)
    }

    /// A probe failed: schedule the next one. Returns its time.
    pub fn probe_failed(
        &mut self,
        origin: &str,
        error: &str,
        now: Instant,
        policy: ProbePolicy,
        jitter: f64,
    ) -> Option<Instant> {
        let outage = self.by_origin.get_mut(origin)?.outage.as_mut()?;
        outage.error = error.to_owned();
        outage.next_probe = now + policy.gap(now - outage.since, jitter);
        Some(outage.next_probe)
    }

    /// The destination answered: reachable again. Returns whether it was not
    /// (emit `destination-online` if it is now dispatchable).
    pub fn came_back(&mut self, origin: &str) -> bool {
        self.by_origin
            .get_mut(origin)
            .is_some_and(|d| d.outage.take().is_some())
    }

    /// The app's `set_online`: for one origin, or (`None`) for all. Coming
    /// online also probes unreachable ones at once. Returns the origins that
    /// became dispatchable.
    pub fn set_app_online(
        &mut self,
        origin: Option<&str>,
        online: bool,
        now: Instant,
    ) -> Vec<String> {
        let all_before = self.all_app_offline;
        let before: HashMap<String, Reach> = self
            .by_origin
            .iter()
            .map(|(o, d)| (o.clone(), d.reach(all_before)))
            .collect();
        match origin {
            None => self.all_app_offline = !online,
            Some(origin) => self.entry(origin).app_offline = !online,
        }
        let all = self.all_app_offline;
        let mut back = Vec::new();
        for (o, d) in &mut self.by_origin {
            if origin.is_some_and(|one| one != o) {
                continue;
            }
            if online {
                d.app_offline = false;
                if let Some(outage) = &mut d.outage {
                    outage.next_probe = now;
                }
            }
            let was = before.get(o).copied().unwrap_or(Reach::Online);
            if was != Reach::Online && d.reach(all) == Reach::Online {
                back.push(o.clone());
            }
        }
        back.sort();
        back
    }

    /// Origins whose probe is due at `now`, and the earliest later probe.
    pub fn probes_due(&self, now: Instant) -> (Vec<String>, Option<Instant>) {
        let mut due = Vec::new();
        let mut next: Option<Instant> = None;
        for (origin, d) in &self.by_origin {
            let Some(outage) = &d.outage else { continue };
            if d.app_offline || self.all_app_offline {
                continue; // the app said offline: do not even probe
            }
            if outage.next_probe <= now {
                due.push(origin.clone());
            } else {
                next = Some(next.map_or(outage.next_probe, |n| n.min(outage.next_probe)));
            }
        }
        due.sort();
        (due, next)
    }

    /// Sorted by origin, for status answers.
    pub fn sorted(&self) -> BTreeMap<&String, &Destination> {
        self.by_origin.iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: ProbePolicy = ProbePolicy {
        initial: Duration::from_millis(500),
        max: Duration::from_secs(30),
    };

    #[test]
    fn gaps_are_a_tenth_of_the_outage_within_bounds_minus_jitter() {
        assert_eq!(POLICY.gap(Duration::ZERO, 0.0), Duration::from_millis(500));
        assert_eq!(
            POLICY.gap(Duration::from_secs(10), 0.0),
            Duration::from_secs(1)
        );
        assert_eq!(
            POLICY.gap(Duration::from_secs(3600), 0.0),
            Duration::from_secs(30)
        );
        assert_eq!(
            POLICY.gap(Duration::from_secs(10), 1.0),
            Duration::from_millis(800)
        );
    }

    #[test]
    fn a_ten_second_outage_is_noticed_within_a_second_of_its_end() {
        let t0 = Instant::now();
        let mut d = Destinations::default();
        let mut probe = d.went_offline("o", "refused", t0, POLICY, 0.5).unwrap();
        let back = t0 + Duration::from_secs(10);
        while probe < back {
            probe = d.probe_failed("o", "refused", probe, POLICY, 0.0).unwrap();
        }
        assert!(probe - back <= Duration::from_secs(1), "{:?}", probe - back);
    }

    #[test]
    fn offline_auth_and_app_states_exclude_and_report() {
        let t0 = Instant::now();
        let mut d = Destinations::default();
        d.entry("a");
        assert!(d.went_offline("b", "refused", t0, POLICY, 0.0).is_some());
        assert!(
            d.went_offline("b", "again", t0, POLICY, 0.0).is_none(),
            "one event per outage"
        );
        d.entry("c").auth_held = true;
        d.entry("e").app_offline = true;
        assert_eq!(d.excluded(), ["b", "c", "e"]);
        assert_eq!(d.get("b").unwrap().reach(false), Reach::Offline);
        assert_eq!(d.get("c").unwrap().reach(false), Reach::AuthRequired);
        assert_eq!(d.get("a").unwrap().reach(true), Reach::AppOffline);
        let (due, next) = d.probes_due(t0);
        assert!(due.is_empty());
        assert_eq!(next, Some(t0 + Duration::from_millis(500)));
        let (due, _) = d.probes_due(t0 + Duration::from_secs(1));
        assert_eq!(due, ["b"]);
        assert!(d.came_back("b"));
        assert!(!d.came_back("b"));
        assert_eq!(d.excluded(), ["c", "e"]);
    }

    #[test]
    fn the_app_switches_one_origin_or_all() {
        let t0 = Instant::now();
        let mut d = Destinations::default();
        d.entry("a");
        d.went_offline("b", "refused", t0, POLICY, 0.0);
        assert!(d.set_app_online(None, false, t0).is_empty());
        assert_eq!(
            d.get("a").unwrap().reach(d.all_app_offline),
            Reach::AppOffline
        );
        assert!(
            d.probes_due(t0 + Duration::from_secs(9)).0.is_empty(),
            "no probes"
        );
        let later = t0 + Duration::from_millis(1);
        assert_eq!(
            d.set_app_online(None, true, later),
            ["a"],
            "b is still unreachable"
        );
        assert_eq!(d.probes_due(later).0, ["b"], "probed at once");
        assert!(d.set_app_online(Some("a"), false, later).is_empty());
        assert_eq!(d.excluded(), ["a", "b"]);
        assert_eq!(d.set_app_online(Some("a"), true, later), ["a"]);
    }
}
