//! Headers applied at dispatch time, never stored with the items: those the
//! app sets per destination (`set_headers`) over those its provider returns.
//! A 401 holds the destination ([`super::connectivity`]); new headers for it
//! release the hold.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, RwLock},
};

/// `origin -> headers` for requests to that origin, e.g. a fresh bearer
/// token. Called for every dispatch; keep it cheap. Set with
/// [`crate::Builder::auth_headers`].
pub type AuthProvider = Arc<dyn Fn(&str) -> Option<BTreeMap<String, String>> + Send + Sync>;

#[derive(Default)]
pub(crate) struct AuthHeaders {
    set: RwLock<HashMap<String, BTreeMap<String, String>>>,
    provider: Option<AuthProvider>,
}

impl AuthHeaders {
    pub fn new(provider: Option<AuthProvider>) -> Self {
        AuthHeaders {
            set: RwLock::default(),
            provider,
        }
    }

    pub fn set(&self, origin: &str, headers: BTreeMap<String, String>) {
        self.set
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(origin.to_owned(), headers);
    }

    /// The provider's headers, then the set ones (which win). Names are
    /// lowercased: HTTP names are case-insensitive, so `Authorization` set by
    /// the app must replace the provider's `authorization`, not sit beside it.
    pub fn for_origin(&self, origin: &str) -> BTreeMap<String, String> {
        let provided = self
            .provider
            .as_ref()
            .and_then(|provider| provider(origin))
            .unwrap_or_default();
        let mut headers: BTreeMap<String, String> = provided
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        if let Some(set) = self
            .set
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(origin)
        {
            headers.extend(set.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())));
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_headers_win_over_the_provider_per_origin() {
        let provider: AuthProvider = Arc::new(|origin| {
            (origin == "http://a").then(|| {
                BTreeMap::from([
                    ("authorization".into(), "Bearer p".into()),
                    ("x-app".into(), "1".into()),
                ])
            })
        });
        let auth = AuthHeaders::new(Some(provider));
        assert_eq!(auth.for_origin("http://b"), BTreeMap::new());
        auth.set(
            "http://a",
            BTreeMap::from([("authorization".into(), "Bearer s".into())]),
        );
        let headers = auth.for_origin("http://a");
        assert_eq!(headers["authorization"], "Bearer s");
        assert_eq!(headers["x-app"], "1");
    }

    #[test]
    fn set_headers_win_whatever_the_case_of_their_names() {
        let provider: AuthProvider = Arc::new(|_| {
            Some(BTreeMap::from([(
                "authorization".into(),
                "Bearer p".into(),
            )]))
        });
        let auth = AuthHeaders::new(Some(provider));
        auth.set(
            "http://a",
            BTreeMap::from([("Authorization".into(), "Bearer s".into())]),
        );
        let headers = auth.for_origin("http://a");
        assert_eq!(
            headers,
            BTreeMap::from([("authorization".into(), "Bearer s".into())])
        );
    }
}
