//! The Rust API: [`SyncQueue`], one typed async method per protocol method.
//! Tauri commands and Rust code (`app.sync_queue()`) both go through it.
//! Desktop only: there are no sidecar processes on mobile.

use std::{
    collections::BTreeMap,
    sync::{Arc, OnceLock},
    time::Duration,
};

use serde::{de::DeserializeOwned, Serialize};
use serde_json::{json, Value};

use crate::{
    config::LaunchSpec,
    error::{Error, Result},
    models::*,
    outbox::{
        config::OutboxConfig,
        events::OutboxEventSink,
        request::{push_params, HttpRequest},
        status::OutboxStatus,
        Outbox, OutboxHooks,
    },
    status::{Recorder, SidecarStatus},
    supervisor::{EventSink, Supervisor},
};

/// A supervised sync-queue sidecar. Dropping it stops the sidecar.
pub struct SyncQueue {
    supervisor: Arc<Supervisor>,
    recorder: Arc<Recorder>,
    outbox: OnceLock<Arc<Outbox>>,
}

/// Stops the sidecar when dropped. The plugin puts one in the app's resource
/// table, which Tauri clears in `cleanup_before_exit` (after
/// `RunEvent::Exit`, and on the exit paths that skip the event loop, such as
/// the updater's).
pub(crate) struct ExitGuard(Arc<Supervisor>, Option<Arc<Outbox>>);

impl tauri::Resource for ExitGuard {}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        // The outbox first: its tasks would only fail against a stopping sidecar.
        if let Some(outbox) = &self.1 {
            outbox.stop();
        }
        self.0.stop_blocking(self.0.stop_limit());
    }
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ById<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_id: Option<&'a str>,
}

impl SyncQueue {
    /// Starts a sidecar outside of any Tauri app (tools, benchmarks):
    /// `spec` says what to run, `events` receives its notifications.
    /// Inside an app, the plugin does this for you.
    pub fn start(
        runtime: &tokio::runtime::Handle,
        spec: LaunchSpec,
        events: EventSink,
    ) -> SyncQueue {
        let recorder = Recorder::new();
        let events = recorder.wrap(events);
        SyncQueue {
            supervisor: Arc::new(Supervisor::start(runtime, spec, events)),
            recorder,
            outbox: OnceLock::new(),
        }
    }

    pub(crate) fn exit_guard(&self) -> ExitGuard {
        ExitGuard(self.supervisor.clone(), self.outbox.get().cloned())
    }

    /// Starts the HTTP outbox's dispatcher (when `config.enabled`) on
    /// `runtime`; `events` receives its events. The plugin does this at
    /// setup; call it yourself only outside a Tauri app. Once per queue.
    pub fn start_outbox(
        &self,
        runtime: &tokio::runtime::Handle,
        config: OutboxConfig,
        hooks: OutboxHooks,
        events: OutboxEventSink,
    ) -> Result<()> {
        let outbox = Outbox::start(runtime, self.supervisor.clone(), config, hooks, events)?;
        self.outbox
            .set(Arc::new(outbox))
            .map_err(|_| Error::Config("the outbox is already started".into()))
    }

    fn outbox(&self) -> Result<&Arc<Outbox>> {
        self.outbox
            .get()
            .ok_or_else(|| Error::Config("the outbox is not started".into()))
    }

    /// Puts an HTTP request in the outbox: an item with the request as its
    /// payload and its URL's origin as its destination. The dispatcher
    /// sends it with `Idempotency-Key: <id>`.
    pub async fn enqueue_request(&self, request: &HttpRequest) -> Result<PushResult> {
        let (params, _) = push_params(request)?;
        self.typed("push", &params, Duration::ZERO).await
    }

    /// `false`: send nothing (to `destination`, or anywhere); `true`: resume
    /// and probe unreachable destinations now.
    pub fn set_online(&self, online: bool, destination: Option<&str>) -> Result<()> {
        self.outbox()?.set_online(online, destination)
    }

    /// Headers for every request to `destination` (an origin or any URL of
    /// it), applied at dispatch time and never stored; releases a 401 hold.
    pub fn set_headers(&self, destination: &str, headers: BTreeMap<String, String>) -> Result<()> {
        self.outbox()?.set_headers(destination, headers)
    }

    /// The dispatcher, its destinations and their progress.
    pub fn outbox_status(&self) -> OutboxStatus {
        match self.outbox.get() {
            Some(outbox) => outbox.status(),
            None => OutboxStatus {
                running: false,
                online: true,
                concurrency: 0,
                in_flight: 0,
                destinations: Vec::new(),
                stalled: None,
            },
        }
    }

    /// Sends any method with any params and returns the raw result: for
    /// methods the sidecar added after this plugin was written.
    pub async fn call(&self, method: &str, params: &Value) -> Result<Value> {
        self.supervisor.call(method, params, Duration::ZERO).await
    }

    async fn typed<P, T>(&self, method: &str, params: &P, extra: Duration) -> Result<T>
    where
        P: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let value = self.supervisor.call(method, params, extra).await?;
        serde_json::from_value(value).map_err(|e| {
            Error::Protocol(format!(
                "the result of `{method}` does not match the protocol: {e}"
            ))
        })
    }

    /// Checks the sidecar answers. Returns `true` (the `pong`).
    pub async fn ping(&self) -> Result<bool> {
        let v: Value = self.typed("ping", &Empty {}, Duration::ZERO).await?;
        Ok(v.get("pong").and_then(Value::as_bool).unwrap_or(false))
    }

    /// Adds an item; returns its id.
    pub async fn push(&self, item: &PushItem) -> Result<PushResult> {
        self.typed("push", item, Duration::ZERO).await
    }

    /// Adds items all or nothing.
    pub async fn push_batch(&self, items: &[PushItem]) -> Result<PushBatchResult> {
        self.typed("pushBatch", &json!({ "items": items }), Duration::ZERO)
            .await
    }

    /// Hands out the next item (now `processing`, with a fresh lease), or
    /// `None`. With `timeout_ms` it waits that long for one.
    pub async fn pop(&self, options: &PopOptions) -> Result<Option<Item>> {
        let wait = Duration::from_millis(options.timeout_ms.unwrap_or(0));
        self.typed("pop", options, wait).await
    }

    /// Hands out up to `max` items.
    pub async fn pop_batch(&self, options: &PopBatchOptions) -> Result<Vec<Item>> {
        let wait = Duration::from_millis(options.timeout_ms.unwrap_or(0));
        self.typed("popBatch", options, wait).await
    }

    /// Marks a processing item done. Pass the `lease_id` from `pop` so a late
    /// consumer cannot complete someone else's attempt.
    pub async fn complete(&self, id: &str, lease_id: Option<&str>) -> Result<()> {
        let _: Value = self
            .typed("complete", &ById { id, lease_id }, Duration::ZERO)
            .await?;
        Ok(())
    }

    /// Marks several processing items done in one call (one commit). Each
    /// on its own: one that cannot be completed is listed in `errors` and
    /// does not stop the others.
    pub async fn complete_batch(&self, items: &[CompleteRef]) -> Result<CompleteBatchResult> {
        self.typed("completeBatch", &json!({ "items": items }), Duration::ZERO)
            .await
    }

    /// Reports a failed attempt; the item is retried later or, out of
    /// retries, becomes `failed`.
    pub async fn fail(
        &self,
        id: &str,
        error: Option<&str>,
        lease_id: Option<&str>,
    ) -> Result<FailResult> {
        let options = FailOptions {
            error: error.map(str::to_owned),
            lease_id: lease_id.map(str::to_owned),
            ..FailOptions::default()
        };
        self.fail_with(id, &options).await
    }

    /// `fail` with every option: `dead` (to the dead letters at once),
    /// `retry_after_ms` (instead of the backoff, for `Retry-After`) and
    /// `charge: false` (the attempt does not count; for an outbox whose
    /// destination went away while the request was in flight).
    pub async fn fail_with(&self, id: &str, options: &FailOptions) -> Result<FailResult> {
        #[derive(Serialize)]
        struct Params<'a> {
            id: &'a str,
            #[serde(flatten)]
            options: &'a FailOptions,
        }
        self.typed("fail", &Params { id, options }, Duration::ZERO)
            .await
    }

    /// Cancels a held, pending or processing item.
    pub async fn cancel(&self, id: &str) -> Result<()> {
        let _: Value = self
            .typed("cancel", &ById { id, lease_id: None }, Duration::ZERO)
            .await?;
        Ok(())
    }

    /// A `held` item (pushed with `hold: true`) becomes `pending`, keeping
    /// its place in line.
    pub async fn release(&self, id: &str) -> Result<()> {
        let _: Value = self
            .typed("release", &ById { id, lease_id: None }, Duration::ZERO)
            .await?;
        Ok(())
    }

    /// A `held` item becomes `cancelled`; `reason` (default `"rejected"`)
    /// is its `lastError`.
    pub async fn reject(&self, id: &str, reason: Option<&str>) -> Result<()> {
        #[derive(Serialize)]
        struct Params<'a> {
            id: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            reason: Option<&'a str>,
        }
        let _: Value = self
            .typed("reject", &Params { id, reason }, Duration::ZERO)
            .await?;
        Ok(())
    }

    /// Puts a failed or cancelled item back in line with its attempts reset.
    pub async fn requeue(&self, id: &str) -> Result<()> {
        let _: Value = self
            .typed("requeue", &ById { id, lease_id: None }, Duration::ZERO)
            .await?;
        Ok(())
    }

    /// Extends a processing item's lease to now + `lease_ms`.
    pub async fn extend_lease(
        &self,
        id: &str,
        lease_ms: u64,
        lease_id: Option<&str>,
    ) -> Result<ExtendLeaseResult> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Params<'a> {
            id: &'a str,
            lease_ms: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            lease_id: Option<&'a str>,
        }
        self.typed(
            "extendLease",
            &Params {
                id,
                lease_ms,
                lease_id,
            },
            Duration::ZERO,
        )
        .await
    }

    /// One item by id.
    pub async fn get(&self, id: &str) -> Result<Item> {
        self.typed("get", &ById { id, lease_id: None }, Duration::ZERO)
            .await
    }

    /// A page of items in push order.
    pub async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        self.typed("list", options, Duration::ZERO).await
    }

    /// Removes every item with this finished status.
    pub async fn purge(&self, status: Status) -> Result<PurgeResult> {
        self.typed("purge", &json!({ "status": status }), Duration::ZERO)
            .await
    }

    pub async fn stats(&self) -> Result<Stats> {
        self.typed("stats", &Empty {}, Duration::ZERO).await
    }

    /// The sidecar's health, and the outbox's: a stalled dispatcher makes
    /// the queue unhealthy and says why.
    pub async fn health(&self) -> Result<Health> {
        let mut health: Health = self.typed("health", &Empty {}, Duration::ZERO).await?;
        if let Some(outbox) = self.outbox.get() {
            let outbox = outbox.health();
            if let Some(stalled) = &outbox.stalled {
                health.healthy = false;
                health
                    .reason
                    .get_or_insert_with(|| format!("the outbox stalled: {stalled}"));
            }
            health.outbox = Some(outbox);
        }
        Ok(health)
    }

    /// While paused, `pop` hands out nothing. Durable.
    pub async fn pause(&self) -> Result<()> {
        let _: Value = self.typed("pause", &Empty {}, Duration::ZERO).await?;
        Ok(())
    }

    pub async fn resume(&self) -> Result<()> {
        let _: Value = self.typed("resume", &Empty {}, Duration::ZERO).await?;
        Ok(())
    }

    /// Returns once everything so far is durable and compacted.
    pub async fn flush(&self) -> Result<()> {
        let _: Value = self.typed("flush", &Empty {}, Duration::ZERO).await?;
        Ok(())
    }

    /// Asks the sidecar to finish its work, persist and exit. It is not
    /// restarted: later calls fail with `ShuttingDown`.
    pub async fn shutdown(&self) -> Result<()> {
        self.supervisor.shutdown_sidecar().await?;
        Ok(())
    }

    /// Stops the sidecar process (stdin EOF, then SIGTERM, then SIGKILL to its
    /// process group) and waits for it. The plugin does this on app exit.
    pub async fn stop(&self) {
        if let Some(outbox) = self.outbox.get() {
            outbox.stop();
        }
        self.supervisor.stop().await;
        self.recorder.stopped();
    }

    /// [`SyncQueue::stop`] from synchronous code outside an async runtime.
    pub fn stop_blocking(&self) {
        if let Some(outbox) = self.outbox.get() {
            outbox.stop();
        }
        self.supervisor.stop_blocking(self.supervisor.stop_limit());
        self.recorder.stopped();
    }

    /// The sidecar's state and the last `ready` and `sidecar-exited`
    /// payloads: what a listener registered from the start would know. No
    /// call to the sidecar is made (this is the `status` command).
    pub fn status(&self) -> SidecarStatus {
        self.recorder.status(self.supervisor.failure())
    }

    /// Process id of the running sidecar, if one runs.
    pub fn sidecar_pid(&self) -> Option<u32> {
        self.supervisor.pid()
    }

    /// Whether the sidecar is up and answering.
    pub fn is_ready(&self) -> bool {
        self.supervisor.is_ready()
    }

    /// Why the sidecar is not running and will not be restarted: it exited
    /// with a status a restart cannot fix (kind `Locked`, `Config`,
    /// `DataUnreadable` or `DataDirUnusable`; see [`Error::SidecarFailed`]).
    /// Every call fails with this error until the app starts the plugin again.
    pub fn failure(&self) -> Option<Error> {
        self.supervisor.failure()
    }

    /// The last lines the sidecar wrote to stderr (also sent to the `log` crate).
    pub fn stderr_tail(&self) -> String {
        self.supervisor.stderr_tail()
    }
}
