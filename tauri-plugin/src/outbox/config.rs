//! `tauri.conf.json > plugins > sync-queue > outbox`: how the HTTP outbox
//! dispatches. Every field is optional; the defaults are the contract's.

use std::time::Duration;

use serde::Deserialize;

/// The outbox's settings (`plugins.sync-queue.outbox`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// Run the dispatcher at all (default true). Off: `enqueue_request`
    /// still stores requests, nothing sends them.
    pub enabled: bool,
    /// Requests in flight at once (default 8).
    pub concurrency: u32,
    /// Time limit of one request when the request sets none (default 30 000 ms).
    pub timeout_ms: u64,
    /// First probe of an unreachable destination (default 500 ms).
    pub probe_initial_ms: u64,
    /// Longest gap between two probes (default 30 000 ms).
    pub probe_max_ms: u64,
    /// No progress for this long while work is due: the watchdog restarts
    /// the dispatcher (default 60 000 ms).
    pub stall_after_ms: u64,
    /// How much of a refused response's body the dead item's error keeps
    /// (default 1024 bytes).
    pub body_excerpt_bytes: usize,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            enabled: true,
            concurrency: 8,
            timeout_ms: 30_000,
            probe_initial_ms: 500,
            probe_max_ms: 30_000,
            stall_after_ms: 60_000,
            body_excerpt_bytes: 1024,
        }
    }
}

impl OutboxConfig {
    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }

    pub(crate) fn probe_initial(&self) -> Duration {
        Duration::from_millis(self.probe_initial_ms.max(1))
    }

    pub(crate) fn probe_max(&self) -> Duration {
        Duration::from_millis(self.probe_max_ms.max(self.probe_initial_ms).max(1))
    }

    pub(crate) fn stall_after(&self) -> Duration {
        Duration::from_millis(self.stall_after_ms.max(1))
    }

    pub(crate) fn concurrency(&self) -> usize {
        self.concurrency.max(1) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_camel_case_fields() {
        let config: OutboxConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, OutboxConfig::default());
        let config: OutboxConfig =
            serde_json::from_str(r#"{"concurrency": 2, "probeMaxMs": 1000}"#).unwrap();
        assert_eq!(config.concurrency, 2);
        assert_eq!(config.probe_max(), Duration::from_millis(1000));
        assert!(serde_json::from_str::<OutboxConfig>(r#"{"concurency": 2}"#).is_err());
    }
}
