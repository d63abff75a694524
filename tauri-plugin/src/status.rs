//! The `status` command: what the sidecar's events have said so far, for a
//! frontend that starts listening after they were emitted (a listener
//! registered after `ready` never sees it).
//!
//! [`Recorder`] sits between the supervisor and the app's event sink and keeps
//! the last `ready` and `sidecar-exited` payloads. It records an event before
//! the app emits it, so a frontend that hears an event and then asks `status`
//! finds that event in the answer.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;

use crate::{
    error::Error,
    error::SidecarExited,
    supervisor::{EventSink, SupervisorEvent},
};

/// Where the supervised sidecar is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SidecarState {
    /// The first start is under way: calls wait for `ready`.
    Starting,
    /// It announced `ready` and answers calls.
    Ready,
    /// It exited and is started again after a delay: calls wait.
    Restarting,
    /// It exited with a status a restart cannot fix: every call fails with
    /// [`SidecarStatus::failure`] until the app starts the plugin again.
    Failed,
    /// Stopped on request (`shutdown`, or the app exiting): calls fail.
    Stopped,
}

/// The answer of `status`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarStatus {
    pub state: SidecarState,
    /// The params of the last `sync-queue://ready` (those of the running
    /// sidecar when `state` is `ready`), or `None` if it never got there.
    pub ready: Option<Value>,
    /// The payload of the last `sync-queue://sidecar-exited`, if any.
    pub last_exit: Option<SidecarExited>,
    /// Why, when `state` is `failed`: the error every call fails with.
    pub failure: Option<Error>,
}

#[derive(Debug)]
struct Seen {
    state: SidecarState,
    ready: Option<Value>,
    last_exit: Option<SidecarExited>,
}

/// Keeps what the events said; shared by the sink and [`crate::SyncQueue`].
#[derive(Debug)]
pub(crate) struct Recorder(Mutex<Seen>);

impl Recorder {
    pub(crate) fn new() -> Arc<Recorder> {
        Arc::new(Recorder(Mutex::new(Seen {
            state: SidecarState::Starting,
            ready: None,
            last_exit: None,
        })))
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `sink`, recording each event before passing it on.
    pub(crate) fn wrap(self: &Arc<Self>, sink: EventSink) -> EventSink {
        let recorder = self.clone();
        Arc::new(move |event| {
            recorder.record(&event);
            sink(event);
        })
    }

    fn record(&self, event: &SupervisorEvent) {
        let mut seen = self.seen();
        match event {
            SupervisorEvent::Ready(params) => {
                seen.state = SidecarState::Ready;
                seen.ready = Some(params.clone());
            }
            SupervisorEvent::Exited(exit) => {
                seen.state = if exit.restarting {
                    SidecarState::Restarting
                } else {
                    SidecarState::Stopped
                };
                seen.last_exit = Some(exit.clone());
            }
            SupervisorEvent::Notification(_) => {}
        }
    }

    /// A stop can end the supervisor while it waits to restart, with no
    /// exit event to say so.
    pub(crate) fn stopped(&self) {
        self.seen().state = SidecarState::Stopped;
    }

    /// `failure` is the supervisor's (`SyncQueue::failure`): a sidecar that
    /// cannot be restarted ends with an exit event like a stop's.
    pub(crate) fn status(&self, failure: Option<Error>) -> SidecarStatus {
        let seen = self.seen();
        let state = match failure {
            Some(_) => SidecarState::Failed,
            None => seen.state,
        };
        SidecarStatus {
            state,
            ready: seen.ready.clone(),
            last_exit: seen.last_exit.clone(),
            failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn exit(restarting: bool) -> SupervisorEvent {
        SupervisorEvent::Exited(SidecarExited {
            code: Some(1),
            signal: None,
            stderr_tail: "boom".into(),
            restarting,
            restart_in_ms: restarting.then_some(250),
        })
    }

    #[test]
    fn the_state_follows_the_events_and_keeps_their_payloads() {
        let recorder = Recorder::new();
        let forwarded = Arc::new(Mutex::new(0));
        let count = forwarded.clone();
        let sink = recorder.wrap(Arc::new(move |_| *count.lock().unwrap() += 1));
        assert_eq!(recorder.status(None).state, SidecarState::Starting);
        assert_eq!(recorder.status(None).ready, None);

        sink(SupervisorEvent::Ready(json!({"protocol": 1})));
        let status = recorder.status(None);
        assert_eq!(status.state, SidecarState::Ready);
        assert_eq!(status.ready, Some(json!({"protocol": 1})));
        assert_eq!(status.last_exit, None);

        sink(exit(true));
        let status = recorder.status(None);
        assert_eq!(status.state, SidecarState::Restarting);
        assert_eq!(status.ready, Some(json!({"protocol": 1})), "the last one");
        assert_eq!(status.last_exit.map(|e| e.restart_in_ms), Some(Some(250)));

        sink(SupervisorEvent::Ready(json!({"protocol": 2})));
        assert_eq!(recorder.status(None).ready, Some(json!({"protocol": 2})));
        sink(exit(false));
        assert_eq!(recorder.status(None).state, SidecarState::Stopped);
        assert_eq!(*forwarded.lock().unwrap(), 4, "every event is passed on");
    }

    #[test]
    fn a_failure_wins_and_a_stop_without_an_exit_is_stopped() {
        let recorder = Recorder::new();
        let sink = recorder.wrap(Arc::new(|_| {}));
        sink(exit(false));
        let failure = Error::Config("refused".into());
        let status = recorder.status(Some(failure));
        assert_eq!(status.state, SidecarState::Failed);
        assert_eq!(
            status.failure.map(|e| e.kind().to_owned()),
            Some("Config".into())
        );

        let recorder = Recorder::new();
        recorder.wrap(Arc::new(|_| {}))(exit(true));
        recorder.stopped();
        assert_eq!(recorder.status(None).state, SidecarState::Stopped);
    }
}
