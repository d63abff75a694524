//! The plugin's one error type.
//!
//! Every error reaches TypeScript as an object `{kind, code, message, data}`
//! (not the bare string the official plugins send), so an app can tell
//! `CapacityExceeded` from `ItemNotFound` without parsing messages:
//!
//! - errors the sidecar answered with keep their JSON-RPC `code`, and their
//!   `kind` is the sidecar's `data.kind` (docs/protocol.md §5), or the name of the
//!   standard JSON-RPC code (`InvalidParams`, `MethodNotFound`, …);
//! - errors raised on this side (the sidecar died, a call timed out, …) have
//!   `code: null` and a `kind` of their own, listed in [`Error::kind`].
//!
//! [`SIDECAR_KINDS`] and [`LOCAL_KINDS`] list every kind; a test checks them
//! against the sidecar's Python sources and the TypeScript `ErrorKind`.
//!
//! Over 400 lines with its tests on purpose: the error type, its kinds, its
//! messages and its wire shape are one table, read (and tested) together;
//! the code itself is under 300 lines.

use std::{sync::Arc, time::Duration};

use serde::{ser::SerializeStruct, Serialize, Serializer};
use serde_json::{json, Value};

pub type Result<T> = std::result::Result<T, Error>;

/// A JSON-RPC error object as the sidecar sent it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, Serialize)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// How a sidecar process ended: the payload of `sync-queue://sidecar-exited`,
/// and what every call that was in flight at that moment fails with
/// ([`Error::SidecarExited`], [`Error::SidecarFailed`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarExited {
    /// Exit code, when the process exited by itself.
    pub code: Option<i32>,
    /// Signal number, when a signal ended it (unix).
    pub signal: Option<i32>,
    /// The last lines the sidecar wrote to stderr, oldest first.
    pub stderr_tail: String,
    /// Whether the plugin will start it again: false after a requested stop,
    /// and after an exit status a restart cannot fix (2 to 5, see
    /// [`Error::SidecarFailed`]).
    pub restarting: bool,
    /// Delay before the restart, when `restarting`.
    pub restart_in_ms: Option<u64>,
}

impl std::fmt::Display for SidecarExited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exit status {code}")?,
            (None, Some(signal)) => write!(f, "killed by signal {signal}")?,
            (None, None) => write!(f, "unknown exit status")?,
        }
        if !self.stderr_tail.is_empty() {
            write!(f, "; stderr ends with:\n{}", self.stderr_tail)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The sidecar answered the call with an error object.
    #[error("{}", .0.message)]
    Rpc(RpcError),
    /// The sidecar process ended while the call was in flight, or before it
    /// became ready. It is restarted after the backoff delay.
    #[error("the sync-queue sidecar stopped unexpectedly ({0})")]
    SidecarExited(SidecarExited),
    /// The sidecar exited with a status that says a restart cannot help (the
    /// sidecar's exit-code table): 2 its command line, config file or key was
    /// refused (kind `Config`); 3 another process owns the data directory
    /// (kind `Locked`); 4 the data on disk cannot be read: corrupt, or a wrong
    /// or missing key (kind `DataUnreadable`); 5 the data directory cannot be
    /// used (kind `DataDirUnusable`). The plugin does not restart it: every
    /// call fails with this error until the app starts the plugin again.
    #[error("{}", fatal_message(.0))]
    SidecarFailed(SidecarExited),
    /// The sidecar was stopped on purpose (app exit or `shutdown`), so it takes
    /// no more calls. The same kind as the sidecar's own `ShuttingDown` (-32003)
    /// for a request it reads while it stops, but raised here (`code: null`).
    #[error("the sync-queue sidecar has been stopped and takes no more calls")]
    ShuttingDown,
    /// No reply within the call's time limit. The request may still be applied
    /// by the sidecar; its late reply is dropped.
    #[error("`{method}` got no reply from the sync-queue sidecar within {} ms", .timeout.as_millis())]
    Timeout { method: String, timeout: Duration },
    /// The sidecar did not announce `ready` in time after it was started.
    #[error("the sync-queue sidecar did not become ready within {} ms", .0.as_millis())]
    ReadyTimeout(Duration),
    /// The sidecar program could not be started at all.
    #[error("could not start the sync-queue sidecar `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The plugin configuration is unusable.
    #[error("invalid sync-queue plugin configuration: {0}")]
    Config(String),
    /// The sidecar sent something this plugin cannot understand as a reply.
    #[error("unexpected reply from the sync-queue sidecar: {0}")]
    Protocol(String),
    /// Reading or writing the sidecar's pipes failed.
    #[error("talking to the sync-queue sidecar failed: {0}")]
    Io(#[source] Arc<std::io::Error>),
    /// A value could not be encoded or decoded as JSON.
    #[error(transparent)]
    Json(Arc<serde_json::Error>),
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Json(Arc::new(e))
    }
}

/// The kinds of the errors the sidecar answers with (`data.kind`,
/// docs/protocol.md §5): its queue errors, its protocol errors (`MessageTooLarge`,
/// `NestingTooDeep` and `BatchTooLarge` are `InvalidRequest`s, code -32600),
/// and `RpcError` for a code without a `data.kind` that is not a standard one.
pub const SIDECAR_KINDS: &[&str] = &[
    "CapacityExceeded",
    "ItemNotFound",
    "ShuttingDown",
    "Locked",
    "DuplicateItem",
    "PersistenceError",
    "DataDirUnusable",
    "EncryptionError",
    "CompressionError",
    "InvalidState",
    "ParseError",
    "InvalidRequest",
    "MessageTooLarge",
    "NestingTooDeep",
    "BatchTooLarge",
    "MethodNotFound",
    "InvalidParams",
    "InternalError",
    "RpcError",
];

/// The kinds of the errors raised on this side (`code: null`). `Locked` and
/// `Config` are also what a sidecar that exited with status 3 or 2 reports.
pub const LOCAL_KINDS: &[&str] = &[
    "SidecarExited",
    "Locked",
    "DataUnreadable",
    "DataDirUnusable",
    "ShuttingDown",
    "Timeout",
    "ReadyTimeout",
    "Spawn",
    "Config",
    "Protocol",
    "Io",
    "Json",
];

/// Whether a sidecar that exited with `code` would only fail the same way
/// again if restarted (see [`Error::SidecarFailed`]).
pub(crate) fn is_fatal_exit(code: Option<i32>) -> bool {
    matches!(code, Some(2..=5))
}

fn fatal_message(info: &SidecarExited) -> String {
    let what = match info.code {
        Some(2) => "the sync-queue sidecar refused its command line, config file or key",
        Some(3) => {
            "the sync-queue data directory is in use by another process (Locked): \
             is another instance of the app running?"
        }
        Some(4) => {
            "the sync-queue data cannot be read (corrupt, or a wrong or missing key); \
             nothing was changed"
        }
        Some(5) => "the sync-queue data directory cannot be used",
        _ => "the sync-queue sidecar cannot start",
    };
    format!("{what}; the sidecar is not restarted until the app starts the plugin again ({info})")
}

impl Error {
    /// The error for a sidecar that ended on its own with `info`:
    /// [`Error::SidecarFailed`] for the exit statuses a restart cannot fix,
    /// else [`Error::SidecarExited`].
    pub(crate) fn from_exit(info: SidecarExited) -> Error {
        if is_fatal_exit(info.code) {
            Error::SidecarFailed(info)
        } else {
            Error::SidecarExited(info)
        }
    }

    /// The kind TypeScript sees (one of [`SIDECAR_KINDS`] or [`LOCAL_KINDS`]).
    /// For sidecar errors this is `data.kind`, e.g. `CapacityExceeded`,
    /// `ItemNotFound`, `InvalidState`, `MessageTooLarge`, `NestingTooDeep`,
    /// `BatchTooLarge`; for the standard JSON-RPC codes without one
    /// `ParseError`, `InvalidRequest`, `MethodNotFound`, `InvalidParams`,
    /// `InternalError` (or `RpcError` for any other code).
    /// Local kinds: `SidecarExited`, `ShuttingDown`, `Timeout`, `ReadyTimeout`,
    /// `Spawn`, `Config`, `Protocol`, `Io`, `Json`, and for
    /// [`Error::SidecarFailed`] `Config` (exit status 2), `Locked` (3),
    /// `DataUnreadable` (4) or `DataDirUnusable` (5).
    pub fn kind(&self) -> &str {
        match self {
            Error::Rpc(e) => e
                .data
                .as_ref()
                .and_then(|d| d.get("kind"))
                .and_then(Value::as_str)
                .unwrap_or(match e.code {
                    -32700 => "ParseError",
                    -32600 => "InvalidRequest",
                    -32601 => "MethodNotFound",
                    -32602 => "InvalidParams",
                    -32603 => "InternalError",
                    _ => "RpcError",
                }),
            Error::SidecarExited(_) => "SidecarExited",
            Error::SidecarFailed(info) => match info.code {
                Some(2) => "Config",
                Some(3) => "Locked",
                Some(4) => "DataUnreadable",
                Some(5) => "DataDirUnusable",
                _ => "SidecarExited",
            },
            Error::ShuttingDown => "ShuttingDown",
            Error::Timeout { .. } => "Timeout",
            Error::ReadyTimeout(_) => "ReadyTimeout",
            Error::Spawn { .. } => "Spawn",
            Error::Config(_) => "Config",
            Error::Protocol(_) => "Protocol",
            Error::Io(_) => "Io",
            Error::Json(_) => "Json",
        }
    }

    /// The JSON-RPC error code, for errors the sidecar sent.
    pub fn code(&self) -> Option<i64> {
        match self {
            Error::Rpc(e) => Some(e.code),
            _ => None,
        }
    }

    /// Structured details: the sidecar's `data`, or what this side knows.
    pub fn data(&self) -> Option<Value> {
        match self {
            Error::Rpc(e) => e.data.clone(),
            Error::SidecarExited(info) | Error::SidecarFailed(info) => {
                serde_json::to_value(info).ok()
            }
            Error::Timeout { method, timeout } => {
                Some(json!({ "method": method, "timeoutMs": timeout.as_millis() as u64 }))
            }
            Error::ReadyTimeout(t) => Some(json!({ "timeoutMs": t.as_millis() as u64 })),
            Error::Spawn { program, .. } => Some(json!({ "program": program })),
            _ => None,
        }
    }
}

impl Serialize for Error {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Error", 4)?;
        st.serialize_field("kind", self.kind())?;
        st.serialize_field("code", &self.code())?;
        st.serialize_field("message", &self.to_string())?;
        st.serialize_field("data", &self.data())?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_errors_keep_kind_and_code() {
        let e = Error::Rpc(RpcError {
            code: -32001,
            message: "the queue is full (10 items)".into(),
            data: Some(json!({"kind": "CapacityExceeded", "max": 10})),
        });
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({
                "kind": "CapacityExceeded",
                "code": -32001,
                "message": "the queue is full (10 items)",
                "data": {"kind": "CapacityExceeded", "max": 10}
            })
        );
    }

    #[test]
    fn standard_codes_get_a_kind() {
        let e = Error::Rpc(RpcError {
            code: -32602,
            message: "bad".into(),
            data: None,
        });
        assert_eq!(e.kind(), "InvalidParams");
        let e = Error::Rpc(RpcError {
            code: -1,
            message: "?".into(),
            data: None,
        });
        assert_eq!(e.kind(), "RpcError");
    }

    #[test]
    fn local_errors_have_null_code_and_useful_data() {
        let e = Error::SidecarExited(SidecarExited {
            code: None,
            signal: Some(9),
            stderr_tail: "Traceback…".into(),
            restarting: false,
            restart_in_ms: None,
        });
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["kind"], "SidecarExited");
        assert_eq!(v["code"], Value::Null);
        assert_eq!(v["data"]["signal"], 9);
        assert_eq!(v["data"]["stderrTail"], "Traceback…");
        assert!(v["message"].as_str().unwrap().contains("signal 9"));
        assert!(v["message"].as_str().unwrap().contains("Traceback…"));
    }

    #[test]
    fn fatal_exit_statuses_have_their_own_kinds() {
        let exit = |code| SidecarExited {
            code: Some(code),
            signal: None,
            stderr_tail: "sync-queue-sidecar: Locked: owned by pid 7".into(),
            restarting: false,
            restart_in_ms: None,
        };
        for (code, kind) in [
            (2, "Config"),
            (3, "Locked"),
            (4, "DataUnreadable"),
            (5, "DataDirUnusable"),
        ] {
            let e = Error::from_exit(exit(code));
            assert!(matches!(e, Error::SidecarFailed(_)), "{e:?}");
            let v = serde_json::to_value(&e).unwrap();
            assert_eq!(v["kind"], kind);
            assert_eq!(v["code"], Value::Null);
            assert_eq!(v["data"]["code"], code);
            let message = v["message"].as_str().unwrap();
            assert!(message.contains("not restarted"), "{message}");
            assert!(message.contains("owned by pid 7"), "{message}");
            assert!(LOCAL_KINDS.contains(&kind));
        }
        for code in [0, 1, 6, 137] {
            let e = Error::from_exit(exit(code));
            assert_eq!(e.kind(), "SidecarExited", "exit status {code}");
        }
        assert_eq!(
            Error::from_exit(SidecarExited {
                code: None,
                signal: Some(9),
                stderr_tail: String::new(),
                restarting: false,
                restart_in_ms: None,
            })
            .kind(),
            "SidecarExited"
        );
    }

    #[test]
    fn every_local_kind_is_listed() {
        let info = SidecarExited {
            code: Some(1),
            signal: None,
            stderr_tail: String::new(),
            restarting: false,
            restart_in_ms: None,
        };
        let io = || Arc::new(std::io::Error::other("x"));
        let json = Arc::new(serde_json::from_str::<Value>("{").unwrap_err());
        let errors = [
            Error::SidecarExited(info.clone()),
            Error::ShuttingDown,
            Error::Timeout {
                method: "pop".into(),
                timeout: Duration::from_secs(1),
            },
            Error::ReadyTimeout(Duration::from_secs(1)),
            Error::Spawn {
                program: "x".into(),
                source: io(),
            },
            Error::Config("x".into()),
            Error::Protocol("x".into()),
            Error::Io(io()),
            Error::Json(json),
        ];
        for e in &errors {
            assert!(
                LOCAL_KINDS.contains(&e.kind()),
                "{} is not listed",
                e.kind()
            );
        }
        let rpc = |code| {
            Error::Rpc(RpcError {
                code,
                message: "x".into(),
                data: None,
            })
        };
        for code in [-32700, -32600, -32601, -32602, -32603, -1] {
            let e = rpc(code);
            assert!(
                SIDECAR_KINDS.contains(&e.kind()),
                "{} is not listed",
                e.kind()
            );
        }
    }
}
