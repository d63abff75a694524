//! One thin command per protocol method, plus the plugin's own `status`; each
//! delegates to [`SyncQueue`]. Arguments arrive camelCase from JavaScript
//! (`leaseId`, `leaseMs`). The list must match `COMMANDS` in command_names.rs
//! (tests/command_list.rs and tests/test_method_list.py check it).

use std::collections::BTreeMap;

use tauri::{command, State};

use crate::{
    error::Result, models::*, outbox::request::HttpRequest, outbox::status::OutboxStatus,
    SidecarStatus, SyncQueue,
};

#[command]
pub(crate) async fn ping(queue: State<'_, SyncQueue>) -> Result<bool> {
    queue.ping().await
}

#[command]
pub(crate) async fn push(queue: State<'_, SyncQueue>, item: PushItem) -> Result<PushResult> {
    queue.push(&item).await
}

#[command]
pub(crate) async fn push_batch(
    queue: State<'_, SyncQueue>,
    items: Vec<PushItem>,
) -> Result<PushBatchResult> {
    queue.push_batch(&items).await
}

#[command]
pub(crate) async fn pop(
    queue: State<'_, SyncQueue>,
    options: Option<PopOptions>,
) -> Result<Option<Item>> {
    queue.pop(&options.unwrap_or_default()).await
}

#[command]
pub(crate) async fn pop_batch(
    queue: State<'_, SyncQueue>,
    options: Option<PopBatchOptions>,
) -> Result<Vec<Item>> {
    queue.pop_batch(&options.unwrap_or_default()).await
}

#[command]
pub(crate) async fn complete(
    queue: State<'_, SyncQueue>,
    id: String,
    lease_id: Option<String>,
) -> Result<()> {
    queue.complete(&id, lease_id.as_deref()).await
}

#[command]
pub(crate) async fn complete_batch(
    queue: State<'_, SyncQueue>,
    items: Vec<CompleteRef>,
) -> Result<CompleteBatchResult> {
    queue.complete_batch(&items).await
}

#[command]
pub(crate) async fn fail(
    queue: State<'_, SyncQueue>,
    id: String,
    error: Option<String>,
    lease_id: Option<String>,
    dead: Option<bool>,
    retry_after_ms: Option<u64>,
    charge: Option<bool>,
) -> Result<FailResult> {
    let options = FailOptions {
        error,
        lease_id,
        dead,
        retry_after_ms,
        charge,
    };
    queue.fail_with(&id, &options).await
}

#[command]
pub(crate) async fn cancel(queue: State<'_, SyncQueue>, id: String) -> Result<()> {
    queue.cancel(&id).await
}

#[command]
pub(crate) async fn release(queue: State<'_, SyncQueue>, id: String) -> Result<()> {
    queue.release(&id).await
}

#[command]
pub(crate) async fn reject(
    queue: State<'_, SyncQueue>,
    id: String,
    reason: Option<String>,
) -> Result<()> {
    queue.reject(&id, reason.as_deref()).await
}

#[command]
pub(crate) async fn requeue(queue: State<'_, SyncQueue>, id: String) -> Result<()> {
    queue.requeue(&id).await
}

#[command]
pub(crate) async fn extend_lease(
    queue: State<'_, SyncQueue>,
    id: String,
    lease_ms: u64,
    lease_id: Option<String>,
) -> Result<ExtendLeaseResult> {
    queue.extend_lease(&id, lease_ms, lease_id.as_deref()).await
}

#[command]
pub(crate) async fn get(queue: State<'_, SyncQueue>, id: String) -> Result<Item> {
    queue.get(&id).await
}

#[command]
pub(crate) async fn list(
    queue: State<'_, SyncQueue>,
    options: Option<ListOptions>,
) -> Result<ListPage> {
    queue.list(&options.unwrap_or_default()).await
}

#[command]
pub(crate) async fn purge(queue: State<'_, SyncQueue>, status: Status) -> Result<PurgeResult> {
    queue.purge(status).await
}

#[command]
pub(crate) async fn stats(queue: State<'_, SyncQueue>) -> Result<Stats> {
    queue.stats().await
}

#[command]
pub(crate) async fn health(queue: State<'_, SyncQueue>) -> Result<Health> {
    queue.health().await
}

#[command]
pub(crate) async fn pause(queue: State<'_, SyncQueue>) -> Result<()> {
    queue.pause().await
}

#[command]
pub(crate) async fn resume(queue: State<'_, SyncQueue>) -> Result<()> {
    queue.resume().await
}

#[command]
pub(crate) async fn flush(queue: State<'_, SyncQueue>) -> Result<()> {
    queue.flush().await
}

#[command]
pub(crate) async fn shutdown(queue: State<'_, SyncQueue>) -> Result<()> {
    queue.shutdown().await
}

/// The plugin's own: no call to the sidecar.
#[command]
pub(crate) fn status(queue: State<'_, SyncQueue>) -> SidecarStatus {
    queue.status()
}

#[command]
pub(crate) async fn enqueue_request(
    queue: State<'_, SyncQueue>,
    request: HttpRequest,
) -> Result<PushResult> {
    queue.enqueue_request(&request).await
}

#[command]
pub(crate) fn set_online(
    queue: State<'_, SyncQueue>,
    online: bool,
    destination: Option<String>,
) -> Result<()> {
    queue.set_online(online, destination.as_deref())
}

#[command]
pub(crate) fn set_headers(
    queue: State<'_, SyncQueue>,
    destination: String,
    headers: BTreeMap<String, String>,
) -> Result<()> {
    queue.set_headers(&destination, headers)
}

#[command]
pub(crate) fn outbox_status(queue: State<'_, SyncQueue>) -> OutboxStatus {
    queue.outbox_status()
}
