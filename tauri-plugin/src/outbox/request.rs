//! What an HTTP item is: the request the app enqueues ([`HttpRequest`]), the
//! payload stored with the item (`{"http": {...}}`, [`HttpSpec`]) and the
//! destination it is dispatched to (the URL's origin).
//!
//! Headers given here are stored with the item, on disk. Tokens belong in
//! `set_headers` or the auth provider, applied at dispatch time only.

use std::{collections::BTreeMap, time::Duration};

use base64::Engine as _;
use reqwest::{
    header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE},
    Method, Url,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::{
    error::{Error, Result, RpcError},
    models::{Priority, Unique},
};

/// An HTTP request to put in the outbox (`enqueue_request`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRequest {
    /// Default `POST`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// An `http` or `https` URL; its origin is the item's destination.
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// A string is sent as is; any other JSON value as `application/json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// Raw bytes, base64 (not with `body`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// Default: the outbox's `timeoutMs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Statuses to retry whatever the default classification says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_statuses: Option<Vec<u16>>,
    /// Statuses that send the item to the dead letters at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_statuses: Option<Vec<u16>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Stored `held`: not sent until `release(id)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<bool>,
    /// `{"key", "policy": "keep" | "replace" | "append"}`, passed to the engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique: Option<Unique>,
}

impl HttpRequest {
    /// A request with this method and URL and every other field left to defaults.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        HttpRequest {
            method: Some(method.into()),
            url: url.into(),
            ..Self::default()
        }
    }
}

/// The request as stored in the item's payload under `"http"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HttpSpec {
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_statuses: Vec<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dead_statuses: Vec<u16>,
}

/// A request ready for reqwest: everything parsed and checked.
pub(crate) struct Prepared {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Option<Vec<u8>>,
    pub timeout: Option<Duration>,
}

/// The error the sidecar gives bad params, raised here for a bad request
/// before anything is stored (kind `InvalidParams`).
pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Error {
    Error::Rpc(RpcError {
        code: -32602,
        message: message.into(),
        data: Some(json!({"kind": "InvalidParams", "field": field})),
    })
}

/// Headers as sent; a bad name or value is `InvalidParams` (dispatch would
/// otherwise have to leave it off).
pub(crate) fn header_map(headers: &BTreeMap<String, String>) -> Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid("headers", format!("headers: bad header name {name:?}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| invalid("headers", format!("headers: bad value for {name}")))?;
        map.append(name, value);
    }
    Ok(map)
}

/// The origin of an `http(s)` URL, e.g. `http://127.0.0.1:8080` (default
/// ports left out): the key of connectivity, auth and stats.
pub fn origin_of(url: &str) -> Result<String> {
    Ok(http_url(url)?.origin().ascii_serialization())
}

/// `url` parsed, if it is an `http(s)` URL with a host.
fn http_url(url: &str) -> Result<Url> {
    let parsed =
        Url::parse(url).map_err(|e| invalid("url", format!("url: not a URL ({e}): {url:?}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(invalid(
            "url",
            format!("url: expected an http or https URL, got {url:?}"),
        ));
    }
    Ok(parsed)
}

impl HttpSpec {
    /// Parses and checks everything dispatch needs, so a bad request is
    /// refused at enqueue time rather than dead at dispatch time.
    pub fn prepare(&self) -> Result<Prepared> {
        let method =
            Method::from_bytes(self.method.to_ascii_uppercase().as_bytes()).map_err(|_| {
                invalid(
                    "method",
                    format!("method: not an HTTP method: {:?}", self.method),
                )
            })?;
        let url = http_url(&self.url)?;
        let mut headers = header_map(&self.headers)?;
        let body = match (&self.body, &self.body_base64) {
            (Some(_), Some(_)) => {
                return Err(invalid("body", "give `body` or `bodyBase64`, not both"))
            }
            (None | Some(Value::Null), None) => None,
            (Some(Value::String(text)), None) => Some(text.clone().into_bytes()),
            (Some(json), None) => {
                if !headers.contains_key(CONTENT_TYPE) {
                    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                }
                Some(serde_json::to_vec(json)?)
            }
            (None, Some(b64)) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| invalid("bodyBase64", format!("bodyBase64: {e}")))?,
            ),
        };
        Ok(Prepared {
            method,
            url,
            headers,
            body,
            timeout: self.timeout_ms.map(Duration::from_millis),
        })
    }

    /// The spec of an item's payload, if it is an HTTP item.
    pub fn from_payload(payload: Value) -> Result<HttpSpec> {
        let http = match payload {
            Value::Object(mut fields) => fields.remove("http"),
            _ => None,
        }
        .ok_or_else(|| invalid("payload", "not an HTTP item: no `http` in its payload"))?;
        Ok(serde_json::from_value(http)?)
    }
}

/// The `push` params for a request, and its destination.
pub(crate) fn push_params(request: &HttpRequest) -> Result<(Value, String)> {
    let spec = HttpSpec {
        method: request
            .method
            .clone()
            .unwrap_or_else(|| "POST".into())
            .to_ascii_uppercase(),
        url: request.url.clone(),
        headers: request.headers.clone().unwrap_or_default(),
        body: request.body.clone().filter(|b| !b.is_null()),
        body_base64: request.body_base64.clone(),
        timeout_ms: request.timeout_ms,
        retry_statuses: request.retry_statuses.clone().unwrap_or_default(),
        dead_statuses: request.dead_statuses.clone().unwrap_or_default(),
    };
    spec.prepare()?;
    let destination = origin_of(&spec.url)?;
    if let Some(id) = &request.id {
        // The id is sent as the Idempotency-Key on every attempt: an id that is
        // no valid header value would go without it, and a retry could apply twice.
        if HeaderValue::from_str(id).is_err() {
            return Err(invalid(
                "id",
                format!(
                    "id: {id:?} cannot be sent as the Idempotency-Key header (it has a control character)"
                ),
            ));
        }
    }
    let mut params = Map::new();
    params.insert("payload".into(), json!({ "http": spec }));
    params.insert("destination".into(), Value::String(destination.clone()));
    let optional = [
        ("id", request.id.clone().map(Value::String)),
        ("priority", request.priority.map(|p| json!(p))),
        (
            "partitionKey",
            request.partition_key.clone().map(Value::String),
        ),
        ("maxRetries", request.max_retries.map(|n| json!(n))),
        ("ttlMs", request.ttl_ms.map(|n| json!(n))),
        ("delayMs", request.delay_ms.map(|n| json!(n))),
        (
            "correlationId",
            request.correlation_id.clone().map(Value::String),
        ),
        ("metadata", request.metadata.as_ref().map(|m| json!(m))),
        ("hold", request.hold.filter(|h| *h).map(Value::Bool)),
        ("unique", request.unique.as_ref().map(|u| json!(u))),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            params.insert(name.into(), value);
        }
    }
    Ok((Value::Object(params), destination))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_drop_paths_and_default_ports() {
        assert_eq!(
            origin_of("http://127.0.0.1:8080/a?b").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            origin_of("HTTPS://Example.com:443/x").unwrap(),
            "https://example.com"
        );
        for bad in ["ftp://h/x", "not a url", "file:///etc/passwd"] {
            let err = origin_of(bad).unwrap_err();
            assert_eq!(err.kind(), "InvalidParams", "{bad}");
        }
    }

    #[test]
    fn push_params_store_the_request_and_its_destination() {
        let mut request = HttpRequest::new("put", "http://h:1/x");
        request.body = Some(json!({"a": 1}));
        request.partition_key = Some("k".into());
        request.hold = Some(true);
        let (params, destination) = push_params(&request).unwrap();
        assert_eq!(destination, "http://h:1");
        assert_eq!(
            params,
            json!({
                "payload": {"http": {"method": "PUT", "url": "http://h:1/x", "headers": {},
                                     "body": {"a": 1}}},
                "destination": "http://h:1", "partitionKey": "k", "hold": true
            })
        );
    }

    #[test]
    fn bodies_json_text_and_base64() {
        let spec = |body: Option<Value>, b64: Option<&str>| HttpSpec {
            method: "POST".into(),
            url: "http://h/".into(),
            headers: BTreeMap::new(),
            body,
            body_base64: b64.map(str::to_owned),
            timeout_ms: None,
            retry_statuses: vec![],
            dead_statuses: vec![],
        };
        let json = spec(Some(json!([1])), None).prepare().unwrap();
        assert_eq!(json.body.as_deref(), Some(&b"[1]"[..]));
        assert_eq!(json.headers[CONTENT_TYPE], "application/json");
        let text = spec(Some(json!("hi")), None).prepare().unwrap();
        assert_eq!(text.body.as_deref(), Some(&b"hi"[..]));
        assert!(!text.headers.contains_key(CONTENT_TYPE));
        let raw = spec(None, Some("AAE=")).prepare().unwrap();
        assert_eq!(raw.body.as_deref(), Some(&[0u8, 1][..]));
        assert!(spec(Some(json!("x")), Some("AA==")).prepare().is_err());
        assert!(spec(None, Some("%%")).prepare().is_err());
    }

    #[test]
    fn bad_methods_and_headers_are_refused() {
        let mut request = HttpRequest::new("GE T", "http://h/");
        assert_eq!(push_params(&request).unwrap_err().kind(), "InvalidParams");
        request.method = None;
        request.headers = Some(BTreeMap::from([("bad name".into(), "v".into())]));
        assert_eq!(push_params(&request).unwrap_err().kind(), "InvalidParams");
    }

    #[test]
    fn ids_that_cannot_be_the_idempotency_key_are_refused() {
        let mut request = HttpRequest::new("POST", "http://h/");
        for bad in ["a\nb", "a\rb", "del\u{7f}", "nul\u{0}"] {
            request.id = Some(bad.into());
            let error = push_params(&request).unwrap_err();
            assert_eq!(error.kind(), "InvalidParams", "{bad:?}");
        }
        request.id = Some("note-7:v2".into());
        let (params, _) = push_params(&request).unwrap();
        assert_eq!(params["id"], "note-7:v2");
    }
}
