//! The answer of `outbox_status`, and the `outbox` field of `health`.

use serde::Serialize;

use super::connectivity::{Counters, Reach};

/// Why the watchdog last found the dispatcher stuck (cleared by progress).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stalled {
    pub reason: String,
    /// When the stall began (ms since the Unix epoch).
    pub since: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationStatus {
    pub destination: String,
    pub state: Reach,
    /// Ms since the Unix epoch, while `offline`.
    pub next_probe_at: Option<i64>,
    pub last_error: Option<String>,
    pub in_flight: usize,
    #[serde(flatten)]
    pub counters: Counters,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxStatus {
    /// The dispatcher is running (enabled and not stopped).
    pub running: bool,
    /// The app has not said `set_online(false)` for all destinations.
    pub online: bool,
    pub concurrency: usize,
    pub in_flight: usize,
    pub destinations: Vec<DestinationStatus>,
    pub stalled: Option<Stalled>,
}

/// `health.outbox`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxHealth {
    pub running: bool,
    /// Why the dispatcher is stuck, if it is.
    pub stalled: Option<String>,
}
