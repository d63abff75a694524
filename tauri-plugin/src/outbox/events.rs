//! The outbox's events (`sync-queue://…`) and their payloads. The plugin
//! emits them as Tauri events; outside an app they go to any sink.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

pub const DESTINATION_OFFLINE: &str = "sync-queue://destination-offline";
pub const DESTINATION_ONLINE: &str = "sync-queue://destination-online";
pub const AUTH_REQUIRED: &str = "sync-queue://auth-required";
pub const OUTBOX_STALLED: &str = "sync-queue://outbox-stalled";
pub const OUTBOX_PROGRESS: &str = "sync-queue://outbox-progress";

/// Receives `(event name, payload)`.
pub type OutboxEventSink = Arc<dyn Fn(&str, Value) + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    Dispatched,
    Succeeded,
    Retried,
    Dead,
}

/// `sync-queue://outbox-progress`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress<'a> {
    pub id: &'a str,
    pub destination: &'a str,
    pub outcome: Outcome,
    pub status: Option<u16>,
    pub error: Option<&'a str>,
    pub attempts: u32,
}
