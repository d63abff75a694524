//! The wire types of docs/protocol.md §3–§6, in Rust. Field names are camelCase on
//! the wire and in TypeScript (guest-js/index.ts mirrors this file).
//!
//! Optional request fields are left out of the JSON when `None`: the sidecar
//! refuses unknown params, and an absent field means "use the default".

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Priority {
    Critical,
    High,
    Normal,
    Low,
    Background,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    Pending,
    Processing,
    Completed,
    /// Retries exhausted: the dead-letter set.
    Failed,
    Cancelled,
    /// Pushed with `hold: true`: never handed out until `release`.
    Held,
}

/// An item as the sidecar reports it (§3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    pub id: String,
    pub payload: Value,
    pub priority: Priority,
    pub status: Status,
    pub attempts: u32,
    pub max_retries: u32,
    #[serde(default)]
    pub correlation_id: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub partition_key: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub available_at: i64,
    #[serde(default)]
    pub lease_expires_at: Option<i64>,
    #[serde(default)]
    pub lease_id: Option<String>,
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// The origin an outbox dispatcher sends it to; `None`: the app's own item.
    #[serde(default)]
    pub destination: Option<String>,
    /// The unique-work key it was pushed with.
    #[serde(default)]
    pub unique_key: Option<String>,
}

/// The writable fields of an item: what `push` takes (§3).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushItem {
    /// Any JSON; `null` is a valid payload, but the field is required.
    pub payload: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    /// Only pops with `destinations` hand it out (an outbox dispatcher):
    /// the origin it is sent to, e.g. `"http://127.0.0.1:8080"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// Stored `held`: never handed out until `release` (approval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<bool>,
    /// Unique work: what to do when a live item has the same key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique: Option<Unique>,
}

/// `PushItem::unique`: a key and what to do with a live item under it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Unique {
    pub key: String,
    pub policy: UniquePolicy,
}

/// Keep the live item (add nothing), replace a held/pending one, or queue
/// behind it (WorkManager's policies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum UniquePolicy {
    Keep,
    Replace,
    Append,
}

/// What a push with `unique` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum UniqueOutcome {
    Added,
    /// Nothing added: the result's `id` is the live item's.
    Kept,
    Replaced,
    Appended,
}

/// The options of `fail` (see `SyncQueue::fail_with`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailOptions {
    /// What went wrong; kept as the item's `lastError`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
    /// To the dead letters (`failed`) at once, whatever retries are left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead: Option<bool>,
    /// The next attempt not before now + this (instead of the backoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// `false`: the attempt does not count; the item is pending again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge: Option<bool>,
}

/// One member of `complete_batch`: an item id and, best, the `leaseId` from `pop`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompleteRef {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
}

/// What `complete_batch` did: the ids completed, and each member refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompleteBatchResult {
    pub completed: Vec<String>,
    #[serde(default)]
    pub errors: Vec<CompleteBatchError>,
}

/// A member of `complete_batch` that was refused: its index, its id and the
/// error object (`{code, message, data: {kind, …}}`) `complete` would give.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompleteBatchError {
    pub index: usize,
    pub id: String,
    pub error: Value,
}

/// A pop's `destinations`: hand out only items with a destination that is
/// not in `except` (an outbox dispatcher passes its offline origins).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Destinations {
    pub except: Vec<String>,
}

impl PushItem {
    /// An item with this payload and every other field left to the sidecar.
    pub fn new(payload: impl Into<Value>) -> Self {
        Self {
            payload: payload.into(),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushResult {
    pub id: String,
    /// Present when the push had `unique`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique: Option<UniqueOutcome>,
    /// With `unique: replaced`: the id of the item cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushBatchResult {
    pub ids: Vec<String>,
    #[serde(default)]
    pub duplicates: Vec<String>,
    /// One entry per member pushed with `unique`, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique: Option<Vec<PushResult>>,
}

/// Options of `pop`. With `timeout_ms` > 0 the call waits that long for an
/// item (long poll); the plugin adds it to the call's own time limit.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PopOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
    /// Present: only items with a destination not listed (the outbox's pop);
    /// absent: only items without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destinations: Option<Destinations>,
}

/// Options of `popBatch`; `max` defaults to the queue's `batch_size`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PopBatchOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destinations: Option<Destinations>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailResult {
    /// `false`: the item ran out of retries and is now `failed`.
    pub retry: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtendLeaseResult {
    pub lease_expires_at: i64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// Defaults to 100, at most 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The `next` cursor of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListPage {
    pub items: Vec<Item>,
    /// Opaque cursor for the next page, `None` on the last one.
    #[serde(default)]
    pub next: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PurgeResult {
    pub removed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub healthy: bool,
    pub breaker: BreakerState,
    pub paused: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The HTTP outbox's dispatcher, added by the plugin (not the sidecar).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox: Option<crate::outbox::status::OutboxHealth>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Throughput {
    pub enqueue_per_sec: f64,
    pub dequeue_per_sec: f64,
}

/// Queue metrics (§6). The protocol names a minimum; fields the sidecar adds
/// are kept in `extra` and passed on to TypeScript unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub total_enqueued: u64,
    pub total_completed: u64,
    pub total_failed: u64,
    pub current_size: u64,
    /// `None` until something has finished.
    pub success_rate: Option<f64>,
    pub avg_wait_ms: f64,
    pub avg_processing_ms: f64,
    pub by_status: BTreeMap<String, u64>,
    pub by_priority: BTreeMap<String, u64>,
    pub throughput: Throughput,
    #[serde(default)]
    pub storage: Map<String, Value>,
    /// Per destination (origin): its items by status and its last error.
    #[serde(default)]
    pub destinations: BTreeMap<String, DestinationStats>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `stats.destinations[origin]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationStats {
    pub pending: u64,
    pub processing: u64,
    pub held: u64,
    pub failed: u64,
    pub completed: u64,
    #[serde(default)]
    pub cancelled: u64,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub last_error_at: Option<i64>,
}

/// The `ready` notification's params (§2), forwarded as `sync-queue://ready`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ready {
    pub version: String,
    pub protocol: u32,
    /// `None` in memory mode.
    #[serde(default)]
    pub data_dir: Option<String>,
    /// The data directory's `durability` (`"always"`, `"periodic"` or
    /// `"snapshot"`), or `"memory"` in memory mode.
    pub durability: String,
    #[serde(default)]
    pub recovered: Recovered,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `ready.recovered`: the items recovered, by status, and what recovery set aside.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Recovered {
    /// Damaged journal blocks that the sidecar moved to quarantine files on open: their
    /// records may have been acknowledged and are not in the queue. Empty if none (the
    /// sidecar then sends no such field).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quarantined: Vec<Quarantined>,
    /// Item counts by status (`pending`, `processing`, ...).
    #[serde(flatten)]
    pub counts: BTreeMap<String, u64>,
}

/// One entry of `ready.recovered.quarantined`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quarantined {
    /// The journal segment the block came from.
    pub file: String,
    /// Where in that segment (the segment now ends there).
    pub offset: u64,
    /// How many bytes were moved.
    pub bytes: u64,
    /// The quarantine file holding them, in the data directory.
    pub quarantine: String,
    /// Why the block could not be read (checksum or authentication failure).
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn push_item_omits_unset_fields_and_keeps_null_payload() {
        let item = PushItem {
            priority: Some(Priority::High),
            ..PushItem::new(Value::Null)
        };
        assert_eq!(
            serde_json::to_value(&item).unwrap(),
            json!({"payload": null, "priority": "high"})
        );
    }

    #[test]
    fn outbox_fields_serialize_as_the_wire_names_them() {
        let item = PushItem {
            destination: Some("http://h".into()),
            hold: Some(true),
            unique: Some(Unique {
                key: "k".into(),
                policy: UniquePolicy::Append,
            }),
            ..PushItem::new(1)
        };
        assert_eq!(
            serde_json::to_value(&item).unwrap(),
            json!({"payload": 1, "destination": "http://h", "hold": true,
                   "unique": {"key": "k", "policy": "append"}})
        );
        let pop = PopOptions {
            destinations: Some(Destinations {
                except: vec!["http://h".into()],
            }),
            ..PopOptions::default()
        };
        assert_eq!(
            serde_json::to_value(&pop).unwrap(),
            json!({"destinations": {"except": ["http://h"]}})
        );
        let fail = FailOptions {
            retry_after_ms: Some(5),
            charge: Some(false),
            ..FailOptions::default()
        };
        assert_eq!(
            serde_json::to_value(&fail).unwrap(),
            json!({"retryAfterMs": 5, "charge": false})
        );
        let result: PushResult =
            serde_json::from_value(json!({"id": "b", "unique": "replaced", "replaced": "a"}))
                .unwrap();
        assert_eq!(result.unique, Some(UniqueOutcome::Replaced));
        assert_eq!(result.replaced.as_deref(), Some("a"));
        let plain: PushResult = serde_json::from_value(json!({"id": "a"})).unwrap();
        assert_eq!(serde_json::to_value(&plain).unwrap(), json!({"id": "a"}));
    }

    #[test]
    fn push_item_requires_payload() {
        assert!(serde_json::from_value::<PushItem>(json!({"id": "a"})).is_err());
        let item: PushItem =
            serde_json::from_value(json!({"payload": null, "delayMs": 5})).unwrap();
        assert_eq!(item.delay_ms, Some(5));
    }

    #[test]
    fn item_round_trips_camel_case() {
        let wire = json!({
            "id": "a", "payload": {"x": 1}, "priority": "normal", "status": "processing",
            "attempts": 1, "maxRetries": 3, "correlationId": null, "metadata": {"k": "v"},
            "partitionKey": null, "createdAt": 1, "updatedAt": 2, "availableAt": 1,
            "leaseExpiresAt": 30001, "leaseId": "L1", "expiresAt": null, "lastError": null,
            "destination": "http://127.0.0.1:8080", "uniqueKey": null
        });
        let item: Item = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(item.lease_id.as_deref(), Some("L1"));
        assert_eq!(serde_json::to_value(&item).unwrap(), wire);
    }

    #[test]
    fn ready_recovered_counts_and_quarantined() {
        let wire = json!({
            "version": "0.1.0", "protocol": 1, "dataDir": "/d", "durability": "always",
            "recovered": {
                "pending": 2, "failed": 0,
                "quarantined": [{
                    "file": "/d/journal-00000000000000000001.log", "offset": 123, "bytes": 31,
                    "quarantine": "/d/quarantine-x.bin", "reason": "block checksum mismatch"
                }]
            }
        });
        let ready: Ready = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(ready.recovered.counts["pending"], 2);
        assert_eq!(ready.recovered.quarantined[0].offset, 123);
        assert_eq!(serde_json::to_value(&ready).unwrap(), wire);
        let plain: Ready = serde_json::from_value(json!({
            "version": "0.1.0", "protocol": 1, "durability": "memory",
            "recovered": {"pending": 1}
        }))
        .unwrap();
        assert!(plain.recovered.quarantined.is_empty());
        assert_eq!(
            serde_json::to_value(&plain.recovered).unwrap(),
            json!({"pending": 1})
        );
    }

    #[test]
    fn stats_keeps_unknown_fields() {
        let wire = json!({
            "totalEnqueued": 1, "totalCompleted": 0, "totalFailed": 0, "currentSize": 1,
            "successRate": null, "avgWaitMs": 0.5, "avgProcessingMs": 0.0,
            "byStatus": {"pending": 1}, "byPriority": {"normal": 1},
            "throughput": {"enqueuePerSec": 1.0, "dequeuePerSec": 0.0},
            "storage": {}, "totalRetries": 0,
            "destinations": {"http://h": {
                "pending": 1, "processing": 0, "held": 2, "failed": 0, "completed": 3,
                "cancelled": 0, "lastError": "HTTP 503", "lastErrorAt": 7
            }}
        });
        let stats: Stats = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(stats.extra["totalRetries"], 0);
        assert_eq!(stats.destinations["http://h"].held, 2);
        assert_eq!(
            stats.destinations["http://h"].last_error.as_deref(),
            Some("HTTP 503")
        );
        assert_eq!(serde_json::to_value(&stats).unwrap(), wire);
    }
}
