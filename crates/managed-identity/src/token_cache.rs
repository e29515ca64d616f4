//! The token cache: a [`SingleFlightCache`] of access tokens, keyed by the
//! endpoint, the identity and the resource, with the refresh schedule.
//!
//! One cache serves the whole process (the Azure.Identity pattern,
//! Azure/azure-sdk-for-net#47896): credentials built from equivalent options
//! share entries, so separate instances never multiply endpoint calls.

use crate::IdentityError;
use crate::single_flight::SingleFlightCache;
use crate::user_assigned::UserAssignedId;
use azure_core::credentials::AccessToken;
use std::hash::BuildHasher;
use std::num::NonZeroUsize;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use time::OffsetDateTime;

/// Tokens at least this long-lived are refreshed at half-life.
const HALF_LIFE_THRESHOLD: Duration = Duration::from_secs(2 * 3600);
/// Shorter tokens are refreshed this long before they expire.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// A token this close to expiry is not handed out even when a refresh failed:
/// it could expire in flight.
const MIN_REMAINING: Duration = Duration::from_secs(30);

/// At most this many tokens are kept; the least recently used goes first.
/// Keys can come from callers, so the bound is hard, and each lookup is O(1).
pub const MAX_CACHED_TOKENS: NonZeroUsize = NonZeroUsize::new(256).unwrap();

/// What a token is cached under.
#[derive(Clone, Debug)]
pub(crate) struct TokenKey {
    /// The endpoint (source and URL): two endpoints never share a token.
    pub endpoint: EndpointKey,
    pub identity: Option<UserAssignedId>,
    /// The resource as Entra compares it ([`crate::normalize_resource`]).
    pub resource: String,
}

/// A [`TokenKey`]'s parts by reference: what a cache hit looks up with, so
/// it builds (and allocates) no key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct KeyRef<'a> {
    pub endpoint: &'a EndpointKey,
    pub identity: Option<&'a UserAssignedId>,
    pub resource: &'a str,
}

/// A key, owned or borrowed. An owned [`TokenKey`] borrows as
/// `dyn KeyParts` (the standard way to look a composite key up by
/// reference), and both hash and compare through [`KeyParts::parts`].
pub(crate) trait KeyParts {
    fn parts(&self) -> KeyRef<'_>;
}

impl KeyParts for TokenKey {
    fn parts(&self) -> KeyRef<'_> {
        KeyRef {
            endpoint: &self.endpoint,
            identity: self.identity.as_ref(),
            resource: &self.resource,
        }
    }
}

impl KeyRef<'_> {
    /// The key a new entry is stored under.
    pub fn to_owned_key(self) -> TokenKey {
        TokenKey {
            endpoint: self.endpoint.clone(),
            identity: self.identity.cloned(),
            resource: self.resource.to_owned(),
        }
    }
}

impl KeyParts for KeyRef<'_> {
    fn parts(&self) -> KeyRef<'_> {
        *self
    }
}

impl<'a> std::borrow::Borrow<dyn KeyParts + 'a> for TokenKey {
    fn borrow(&self) -> &(dyn KeyParts + 'a) {
        self
    }
}

impl std::hash::Hash for dyn KeyParts + '_ {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl PartialEq for dyn KeyParts + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn KeyParts + '_ {}

// The owned key hashes and compares as its borrowed form must (`Borrow`'s rule).
impl std::hash::Hash for TokenKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl PartialEq for TokenKey {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for TokenKey {}

/// A credential's source and endpoint URL, as part of a [`TokenKey`]:
/// compared in full, but hashed once, when the credential is built (not the
/// whole URL on every lookup).
#[derive(Clone, Debug)]
pub(crate) struct EndpointKey {
    text: Arc<str>,
    hash: u64,
}

impl EndpointKey {
    pub fn new(text: String) -> Self {
        // A fixed hasher: equal endpoints of separate credentials must hash alike.
        let hash =
            std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default().hash_one(&text);
        Self {
            text: text.into(),
            hash,
        }
    }
}

impl PartialEq for EndpointKey {
    fn eq(&self, other: &Self) -> bool {
        // One credential's key, or an equal one (and so an equal hash).
        Arc::ptr_eq(&self.text, &other.text) || self.text == other.text
    }
}

impl Eq for EndpointKey {}

impl std::hash::Hash for EndpointKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Tokens are kept shared: a cache hit hands out a reference, not a copy of the secret.
pub(crate) type TokenCache = SingleFlightCache<TokenKey, Arc<AccessToken>, IdentityError>;

/// The process-wide token cache.
pub(crate) fn shared() -> Arc<TokenCache> {
    static SHARED: OnceLock<Arc<TokenCache>> = OnceLock::new();
    SHARED
        .get_or_init(|| Arc::new(SingleFlightCache::new(MAX_CACHED_TOKENS)))
        .clone()
}

/// A cache of one credential's own (tests, benchmarks).
pub(crate) fn isolated() -> Arc<TokenCache> {
    Arc::new(SingleFlightCache::new(MAX_CACHED_TOKENS))
}

/// When to refresh a token and how long it may be served, measured from `now`:
/// at half-life for tokens of 2 h or more, else 5 minutes before expiry; never
/// served in its last 30 s.
pub(crate) fn schedule(token: &AccessToken, now: OffsetDateTime) -> (Duration, Duration) {
    let lifetime = Duration::try_from(token.expires_on - now).unwrap_or(Duration::ZERO);
    let refresh_in = if lifetime >= HALF_LIFE_THRESHOLD {
        lifetime / 2
    } else {
        lifetime.saturating_sub(REFRESH_MARGIN)
    };
    (refresh_in, lifetime.saturating_sub(MIN_REMAINING))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::single_flight::{Fresh, Served};
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn refresh_schedule() {
        let now = OffsetDateTime::now_utc();
        let at = |secs| AccessToken::new("t", now + time::Duration::seconds(secs));
        assert_eq!(schedule(&at(7300), now).0, Duration::from_secs(3650));
        assert_eq!(schedule(&at(3600), now).0, Duration::from_secs(3300));
        assert_eq!(schedule(&at(250), now).0, Duration::ZERO);
        assert_eq!(schedule(&at(-10), now), (Duration::ZERO, Duration::ZERO));
    }

    #[test]
    fn equal_endpoints_of_separate_credentials_are_one_key() {
        let hasher = lru::DefaultHasher::default();
        let hash = |k: &EndpointKey| hasher.hash_one(k);
        let (a, b) = (
            EndpointKey::new("e|x".into()),
            EndpointKey::new("e|x".into()),
        );
        assert_eq!(a, b);
        assert_eq!(hash(&a), hash(&b));
        assert_ne!(a, EndpointKey::new("e|y".into()));
    }

    #[test]
    fn a_key_by_reference_hashes_and_compares_as_the_owned_key() {
        let hasher = lru::DefaultHasher::default();
        let id =
            UserAssignedId::parse("client_id", "00000000-0000-0000-0000-0000000000aa").unwrap();
        let owned = TokenKey {
            identity: Some(id.clone()),
            ..key("https://vault.azure.net".into())
        };
        let borrowed = KeyRef {
            endpoint: &owned.endpoint,
            identity: Some(&id),
            resource: "https://vault.azure.net",
        };
        let as_parts = |k: &TokenKey| -> u64 { hasher.hash_one(k as &dyn KeyParts) };
        assert_eq!(hasher.hash_one(&owned), as_parts(&owned));
        assert_eq!(
            hasher.hash_one(&owned),
            hasher.hash_one(&borrowed as &dyn KeyParts)
        );
        assert!(&owned as &dyn KeyParts == &borrowed as &dyn KeyParts);
        let other = KeyRef {
            identity: None,
            ..borrowed
        };
        assert!(&owned as &dyn KeyParts != &other as &dyn KeyParts);
    }

    fn key(resource: String) -> TokenKey {
        TokenKey {
            endpoint: EndpointKey::new("test".into()),
            identity: None,
            resource,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ten_thousand_keys_stay_bounded_and_hot_keys_stay_cached() {
        let cache = isolated();
        let fetches = Arc::new(AtomicU32::new(0));
        let fetch = || {
            fetches.fetch_add(1, Ordering::SeqCst);
            async {
                Ok(Fresh {
                    value: Arc::new(AccessToken::new(
                        "t",
                        OffsetDateTime::now_utc() + time::Duration::hours(1),
                    )),
                    refresh_in: Duration::from_secs(3000),
                    usable_for: Duration::from_secs(3500),
                })
            }
        };
        let hot = key("https://vault.azure.net".into());
        cache.get(&hot, fetch).await.unwrap();
        for i in 0..10_000 {
            cache
                .get(&key(format!("https://attacker.example/{i}")), fetch)
                .await
                .unwrap();
            if i % 100 == 0 {
                // The app's own key is used all the time, so it stays.
                let (_, served) = cache.get(&hot, fetch).await.unwrap();
                assert_eq!(served, Served::Cached, "hot key evicted at {i}");
            }
            assert!(cache.len() <= MAX_CACHED_TOKENS.get(), "unbounded at {i}");
        }
        assert_eq!(cache.len(), MAX_CACHED_TOKENS.get());
        // One fetch for the hot key, one per cold key: the hot key never refetched.
        assert_eq!(fetches.load(Ordering::SeqCst), 10_001);
    }
}
