//! Brings unreachable destinations back: probes each when its schedule
//! ([`super::connectivity`]) says, and marks it online when it answers.
//!
//! A probe is `HEAD <origin>/`: any HTTP answer, whatever its status, proves
//! the host reachable (whether the request then succeeds is the dispatcher's
//! business). Only a transport failure keeps it offline.

use std::{sync::Arc, time::Instant};

use super::{dispatch::error_chain, jitter, Shared};

/// One probe of `origin`, bounded by the shorter of the request timeout and
/// the longest probe gap.
pub(crate) async fn probe(shared: &Shared, origin: &str) -> Result<(), String> {
    let timeout = shared.config.timeout().min(shared.config.probe_max());
    let url = format!("{origin}/");
    match shared.http.head(&url).timeout(timeout).send().await {
        Ok(_) => Ok(()),
        Err(e) => Err(error_chain(&e)),
    }
}

pub(crate) async fn run(shared: Arc<Shared>) {
    loop {
        let (due, next) = shared.destinations().probes_due(Instant::now());
        let mut probes = tokio::task::JoinSet::new();
        for origin in due {
            let shared = shared.clone();
            probes.spawn(async move {
                let outcome = probe(&shared, &origin).await;
                (origin, outcome)
            });
        }
        while let Some(Ok((origin, outcome))) = probes.join_next().await {
            match outcome {
                Ok(()) => {
                    log::info!("{origin} answers again; its requests resume");
                    shared.change(&origin, |table| table.came_back(&origin));
                }
                Err(error) => {
                    let policy = shared.probe_policy();
                    shared.destinations().probe_failed(
                        &origin,
                        &error,
                        Instant::now(),
                        policy,
                        jitter(),
                    );
                }
            }
        }
        let (due, next_after) = shared.destinations().probes_due(Instant::now());
        if !due.is_empty() {
            continue;
        }
        let next = next_after.or(next);
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = shared.wake_prober.notified() => {}
                }
            }
            None => shared.wake_prober.notified().await,
        }
    }
}
