//! What a response means for its item: done, try again later, or dead.
//!
//! Defaults: 2xx and a final 3xx complete; 408, 429 and 5xx retry (after
//! `Retry-After` when the server gives one); 401 holds the destination for
//! new credentials; any other 4xx is dead at once, with the status and a
//! bounded excerpt of the body. A request's `retryStatuses`/`deadStatuses`
//! win over the app's hook ([`ClassifyHook`]), which wins over the defaults.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use reqwest::header::{HeaderMap, RETRY_AFTER};

/// How the app's hook classes a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The effect is done: complete the item.
    Success,
    /// Try again later (counts an attempt; `Retry-After` is honoured).
    Retry,
    /// Never retry: the dead letters at once.
    Dead,
}

/// `(status, headers, body) -> Some(class)` to override the defaults, `None`
/// to keep them. Set with [`crate::Builder::classify`].
pub type ClassifyHook = Arc<dyn Fn(u16, &HeaderMap, &[u8]) -> Option<Class> + Send + Sync>;

/// What the dispatcher does with a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Complete,
    Retry {
        error: String,
        after: Option<Duration>,
    },
    Dead {
        error: String,
    },
    /// 401: hold the destination until new headers come; the attempt is not charged.
    AuthRequired,
}

/// The per-request lists of the item's spec.
pub(crate) struct Overrides<'a> {
    pub retry: &'a [u16],
    pub dead: &'a [u16],
}

pub(crate) fn classify(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    overrides: &Overrides<'_>,
    hook: Option<&ClassifyHook>,
    excerpt_bytes: usize,
    now: SystemTime,
) -> Verdict {
    let class = if overrides.dead.contains(&status) {
        Some(Class::Dead)
    } else if overrides.retry.contains(&status) {
        Some(Class::Retry)
    } else {
        hook.and_then(|hook| hook(status, headers, body))
    };
    let error = || format!("HTTP {status}: {}", excerpt(body, excerpt_bytes));
    let retry = || Verdict::Retry {
        error: error(),
        after: retry_after(headers, now),
    };
    match class {
        Some(Class::Success) => Verdict::Complete,
        Some(Class::Retry) => retry(),
        Some(Class::Dead) => Verdict::Dead { error: error() },
        None => match status {
            200..=399 => Verdict::Complete,
            401 => Verdict::AuthRequired,
            408 | 429 | 500..=599 => retry(),
            _ => Verdict::Dead { error: error() },
        },
    }
}

/// `Retry-After` as delay-seconds or an HTTP-date (RFC 9110 §10.2.3); a
/// date in the past means now.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// At most `limit` bytes of `body` as text, cut at a character boundary,
/// whitespace folded, `…` when cut.
pub(crate) fn excerpt(body: &[u8], limit: usize) -> String {
    let cut = body.len() > limit;
    let text = String::from_utf8_lossy(&body[..body.len().min(limit)]);
    // A multi-byte character split by the cut decodes as U+FFFD: drop it.
    let text = if cut {
        text.trim_end_matches('\u{FFFD}')
    } else {
        &text
    };
    let folded: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if cut {
        format!("{folded}…")
    } else {
        folded
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    const NONE: Overrides<'static> = Overrides {
        retry: &[],
        dead: &[],
    };

    fn verdict(status: u16, headers: &HeaderMap, overrides: &Overrides<'_>) -> Verdict {
        classify(
            status,
            headers,
            b"oops",
            overrides,
            None,
            1024,
            SystemTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn default_classes() {
        let h = HeaderMap::new();
        for status in [200, 201, 204, 304] {
            assert_eq!(verdict(status, &h, &NONE), Verdict::Complete, "{status}");
        }
        for status in [408, 429, 500, 503, 599] {
            assert!(
                matches!(verdict(status, &h, &NONE), Verdict::Retry { .. }),
                "{status}"
            );
        }
        for status in [400, 403, 404, 409, 422] {
            assert_eq!(
                verdict(status, &h, &NONE),
                Verdict::Dead {
                    error: format!("HTTP {status}: oops")
                }
            );
        }
        assert_eq!(verdict(401, &h, &NONE), Verdict::AuthRequired);
    }

    #[test]
    fn request_lists_win_over_the_hook_which_wins_over_defaults() {
        let h = HeaderMap::new();
        let hook: ClassifyHook = Arc::new(|status, _, body| match status {
            409 if body == b"oops" => Some(Class::Success),
            500 => Some(Class::Dead),
            _ => None,
        });
        let with = |status, overrides: &Overrides<'_>| {
            classify(
                status,
                &h,
                b"oops",
                overrides,
                Some(&hook),
                1024,
                SystemTime::UNIX_EPOCH,
            )
        };
        assert_eq!(with(409, &NONE), Verdict::Complete);
        assert!(matches!(with(500, &NONE), Verdict::Dead { .. }));
        assert!(matches!(with(503, &NONE), Verdict::Retry { .. }));
        let lists = Overrides {
            retry: &[404],
            dead: &[500, 503],
        };
        assert!(matches!(with(404, &lists), Verdict::Retry { .. }));
        assert!(matches!(with(503, &lists), Verdict::Dead { .. }));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, now), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        // 784111777 is Sun, 06 Nov 1994 08:49:37 GMT.
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:47 GMT"),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(10)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:00 GMT"),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
        let v = classify(429, &h, b"", &NONE, None, 10, now);
        assert!(matches!(v, Verdict::Retry { after: None, .. }));
    }

    #[test]
    fn excerpts_are_bounded_and_cut_on_characters() {
        assert_eq!(excerpt(b"  a\n b  ", 100), "a b");
        assert_eq!(excerpt(b"abcdef", 3), "abc…");
        assert_eq!(excerpt("é".repeat(3).as_bytes(), 3), "é…");
        assert_eq!(excerpt(b"", 3), "");
    }
}
