//! The HTTP outbox: items that describe HTTP requests, sent by a dispatcher
//! that runs in the plugin (tokio tasks, independent of any window) and
//! reports each outcome to the sidecar, the store of record.
//!
//! - [`request`]: the request, its stored payload and its destination (origin).
//! - [`classify`]: what a response means (complete, retry, dead, auth).
//! - [`connectivity`]: per-destination reachability and the probe schedule.
//! - [`auth`]: headers applied at dispatch time.
//! - [`dispatch`]: one item: send it, classify, report.
//! - [`dispatcher`]: the loop popping items with the configured concurrency.
//! - [`prober`]: brings unreachable destinations back.
//! - [`watchdog`]: restarts a dispatcher that makes no progress.
//!
//! Every attempt carries `Idempotency-Key: <item id>`: delivery is at least
//! once (a crash between the server's answer and `complete` sends again), and
//! a server that applies each key once makes the effect exactly once.
//! The sidecar may restart under it: pops and reports then fail and are
//! retried, and items it had leased come back when it starts again.

pub mod auth;
pub mod classify;
mod completer;
pub mod config;
pub mod connectivity;
mod dispatch;
mod dispatcher;
pub mod events;
mod prober;
pub mod request;
pub mod status;
mod watchdog;
mod wire_deadlines;

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::{json, Value};
use tokio::{sync::Notify, task::JoinHandle};

use crate::{error::Result, supervisor::Supervisor};
use auth::{AuthHeaders, AuthProvider};
use classify::ClassifyHook;
use config::OutboxConfig;
use connectivity::{Destinations, ProbePolicy, Reach};
use events::OutboxEventSink;
use status::{DestinationStatus, OutboxHealth, OutboxStatus, Stalled};

/// What the app plugs into the outbox from Rust.
#[derive(Clone, Default)]
pub struct OutboxHooks {
    pub classify: Option<ClassifyHook>,
    pub auth: Option<AuthProvider>,
}

impl std::fmt::Debug for OutboxHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxHooks")
            .field("classify", &self.classify.is_some())
            .field("auth", &self.auth.is_some())
            .finish()
    }
}

/// When the dispatcher last did something; what the watchdog reads.
struct Liveness {
    /// The last request sent or outcome reported.
    progress: Instant,
    stalled: Option<Stalled>,
}

/// Shared by the dispatcher, its item tasks, the prober and the watchdog.
pub(crate) struct Shared {
    pub config: OutboxConfig,
    pub completer: completer::Completer,
    pub supervisor: Arc<Supervisor>,
    pub http: reqwest::Client,
    pub auth: AuthHeaders,
    pub hook: Option<ClassifyHook>,
    events: OutboxEventSink,
    destinations: Mutex<Destinations>,
    liveness: Mutex<Liveness>,
    /// Popped, not yet sent: what the dispatcher popped ahead (2-8 rounds).
    ready: Mutex<VecDeque<dispatch::Popped>>,
    pub in_flight: Arc<AtomicUsize>,
    /// The deadlines of the requests on the wire, for the watchdog.
    pub(crate) wire_deadlines: wire_deadlines::WireDeadlines,
    /// Connectivity changed: the dispatcher may pop for more destinations.
    pub wake_dispatcher: Notify,
    /// An outage began or the app asked for a probe.
    pub wake_prober: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent; ignore poisoning.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Ms since the Unix epoch of a monotonic instant (for events and status).
pub(crate) fn epoch_ms(at: Instant) -> i64 {
    let now = Instant::now();
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64;
    if at >= now {
        wall + (at - now).as_millis() as i64
    } else {
        wall - (now - at).as_millis() as i64
    }
}

/// A number in [0, 1) for probe jitter, without a random-number dependency:
/// std's per-process random hash keys, fed a counter.
pub(crate) fn jitter() -> f64 {
    use std::hash::{BuildHasher, RandomState};
    static STATE: std::sync::OnceLock<RandomState> = std::sync::OnceLock::new();
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let bits = STATE.get_or_init(RandomState::new).hash_one(n);
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

impl Shared {
    pub fn destinations(&self) -> MutexGuard<'_, Destinations> {
        lock(&self.destinations)
    }

    pub fn ready(&self) -> MutexGuard<'_, VecDeque<dispatch::Popped>> {
        lock(&self.ready)
    }

    pub fn emit(&self, event: &str, payload: Value) {
        (self.events)(event, payload);
    }

    pub fn probe_policy(&self) -> ProbePolicy {
        ProbePolicy {
            initial: self.config.probe_initial(),
            max: self.config.probe_max(),
        }
    }

    pub fn last_progress(&self) -> Instant {
        lock(&self.liveness).progress
    }

    pub fn set_stalled(&self, stalled: Stalled) {
        let mut live = lock(&self.liveness);
        live.stalled = Some(stalled);
        // The fresh dispatcher gets a whole window before the next verdict.
        live.progress = Instant::now();
    }

    pub fn progressed(&self) {
        let mut live = lock(&self.liveness);
        live.progress = Instant::now();
        live.stalled = None;
    }

    /// Runs `change` on the table and emits `destination-online` if it made
    /// `origin` dispatchable again.
    pub fn change<T>(&self, origin: &str, change: impl FnOnce(&mut Destinations) -> T) -> T {
        let (was, result, now) = {
            let mut table = self.destinations();
            let all = table.all_app_offline;
            let was = table.entry(origin).reach(all);
            let result = change(&mut table);
            let all = table.all_app_offline;
            (was, result, table.entry(origin).reach(all))
        };
        if was != Reach::Online && now == Reach::Online {
            self.emit(events::DESTINATION_ONLINE, json!({ "destination": origin }));
            self.wake_dispatcher.notify_one();
        }
        result
    }

    /// A network-class failure: the destination is unreachable until a probe answers.
    pub fn went_offline(&self, origin: &str, error: &str) {
        let policy = self.probe_policy();
        let first =
            self.destinations()
                .went_offline(origin, error, Instant::now(), policy, jitter());
        if let Some(next_probe) = first {
            log::warn!("{origin} is unreachable ({error}); its requests wait");
            self.emit(
                events::DESTINATION_OFFLINE,
                json!({"destination": origin, "error": error, "nextProbeAt": epoch_ms(next_probe)}),
            );
            self.wake_prober.notify_one();
        }
    }
}

/// The running outbox of one queue. Dropping it stops its tasks.
pub(crate) struct Outbox {
    shared: Arc<Shared>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The dispatcher loop; the watchdog replaces it when it stalls.
    dispatcher: Arc<Mutex<Option<JoinHandle<()>>>>,
}

/// The HTTP client: rustls with the ring provider and the platform's
/// certificate verifier.
fn http_client(config: &OutboxConfig) -> Result<reqwest::Client> {
    use rustls_platform_verifier::BuilderVerifierExt;
    // Cargo unifies features: our `rustls-no-provider` reaches an app's own reqwest 0.13
    // too, whose `Client::new()` then needs a process-wide provider. Install ring as that
    // default unless the app (which installs its own first thing in `main`, before the
    // plugin starts) already has one.
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Err: another thread installed one meanwhile, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_error = |e: rustls::Error| crate::Error::Config(format!("outbox TLS setup: {e}"));
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_platform_verifier()
        .map_err(tls_error)?
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(config.timeout().min(Duration::from_secs(10)))
        .pool_max_idle_per_host(config.concurrency())
        .build()
        .map_err(|e| crate::Error::Config(format!("outbox HTTP client: {e}")))
}

impl Outbox {
    /// Sets the outbox up and, when enabled, starts its tasks on `runtime`.
    pub fn start(
        runtime: &tokio::runtime::Handle,
        supervisor: Arc<Supervisor>,
        config: OutboxConfig,
        hooks: OutboxHooks,
        events: OutboxEventSink,
    ) -> Result<Outbox> {
        let http = http_client(&config)?;
        let now = Instant::now();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let (completer, completing) = completer::Completer::start(
            runtime,
            supervisor.clone(),
            in_flight.clone(),
            completer::ROUNDS_PER_BATCH * config.concurrency(),
        );
        let shared = Arc::new(Shared {
            completer,
            supervisor,
            http,
            auth: AuthHeaders::new(hooks.auth),
            hook: hooks.classify,
            events,
            destinations: Mutex::default(),
            liveness: Mutex::new(Liveness {
                progress: now,
                stalled: None,
            }),
            ready: Mutex::default(),
            in_flight,
            wire_deadlines: wire_deadlines::WireDeadlines::default(),
            wake_dispatcher: Notify::new(),
            wake_prober: Notify::new(),
            config,
        });
        let outbox = Outbox {
            shared: shared.clone(),
            tasks: Mutex::default(),
            dispatcher: Arc::default(),
        };
        if shared.config.enabled {
            *lock(&outbox.dispatcher) = Some(runtime.spawn(dispatcher::run(shared.clone())));
            let prober = runtime.spawn(prober::run(shared.clone()));
            let restart = {
                let (runtime, slot, shared) =
                    (runtime.clone(), outbox.dispatcher.clone(), shared.clone());
                move || {
                    let fresh = runtime.spawn(dispatcher::run(shared.clone()));
                    if let Some(old) = lock(&slot).replace(fresh) {
                        old.abort();
                    }
                }
            };
            let watchdog = runtime.spawn(watchdog::run(shared.clone(), Box::new(restart)));
            lock(&outbox.tasks).extend([prober, watchdog]);
        }
        lock(&outbox.tasks).push(completing);
        Ok(outbox)
    }

    /// Stops every task; items in flight come back when their lease ends.
    pub fn stop(&self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
        if let Some(task) = lock(&self.dispatcher).take() {
            task.abort();
        }
    }

    pub fn set_online(&self, online: bool, destination: Option<&str>) -> Result<()> {
        let origin = destination.map(request::origin_of).transpose()?;
        let back =
            self.shared
                .destinations()
                .set_app_online(origin.as_deref(), online, Instant::now());
        for origin in back {
            self.shared
                .emit(events::DESTINATION_ONLINE, json!({ "destination": origin }));
        }
        self.shared.wake_dispatcher.notify_one();
        self.shared.wake_prober.notify_one();
        Ok(())
    }

    pub fn set_headers(&self, destination: &str, headers: BTreeMap<String, String>) -> Result<()> {
        let origin = request::origin_of(destination)?;
        // Checked now: a bad value would be left off every request (a token
        // with a stray newline: 401s and auth holds, no error to the app).
        request::header_map(&headers)?;
        self.shared.auth.set(&origin, headers);
        self.shared
            .change(&origin, |table| table.entry(&origin).auth_held = false);
        Ok(())
    }

    pub fn status(&self) -> OutboxStatus {
        let shared = &self.shared;
        let running = lock(&self.dispatcher)
            .as_ref()
            .is_some_and(|task| !task.is_finished());
        let table = shared.destinations();
        let destinations = table
            .sorted()
            .into_iter()
            .map(|(origin, d)| DestinationStatus {
                destination: origin.clone(),
                state: d.reach(table.all_app_offline),
                next_probe_at: d.outage.as_ref().map(|o| epoch_ms(o.next_probe)),
                last_error: d.last_error.clone(),
                in_flight: d.in_flight,
                counters: d.counters.clone(),
            })
            .collect();
        OutboxStatus {
            running,
            online: !table.all_app_offline,
            concurrency: shared.config.concurrency(),
            in_flight: shared.in_flight.load(Ordering::SeqCst),
            destinations,
            stalled: lock(&shared.liveness).stalled.clone(),
        }
    }

    pub fn health(&self) -> OutboxHealth {
        let status = self.status();
        OutboxHealth {
            running: status.running,
            stalled: status.stalled.map(|s| s.reason),
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.stop();
    }
}
