//! What the handler shows of a token, worked out once per token.
//!
//! A token's claims never change, and a cached token is handed out thousands
//! of times a second. So its claims are decoded, and its JSON for replies and
//! spans is written, when the token is first seen; every later request for
//! the same token reuses them.

use super::claims::{authorization_claims, decode_claims};
use azure_core::credentials::AccessToken;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::hash::BuildHasher;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use time::format_description::well_known::Rfc3339;

/// A token's decoded claims and their renderings. Holds no part of the token
/// itself: the payload is readable by anyone who holds the token, and shown
/// by `/api/token` on purpose; the signature never is.
#[derive(Debug)]
pub struct TokenFacts {
    /// The payload's claims; `None` for an opaque (non-JWT) token.
    pub claims: Option<Map<String, Value>>,
    /// `claims` as JSON (`null` for an opaque token), ready to embed in a reply.
    pub claims_json: Box<RawValue>,
    /// The claims that decide authorization, as JSON: the spans' `app.token.claims`.
    pub authorization_json: String,
    /// `expires_on` as RFC 3339.
    pub expires_on: String,
    /// A reply built from these facts, kept with them (see [`TokenFacts::reply`]).
    replies: [std::sync::OnceLock<bytes::Bytes>; 2],
}

impl TokenFacts {
    pub fn of(token: &AccessToken) -> Self {
        let claims = decode_claims(token.token.secret());
        let claims_json = serde_json::value::to_raw_value(&claims).expect("claims serialize");
        let authorization = claims
            .as_ref()
            .map(authorization_claims)
            .unwrap_or_default();
        Self {
            authorization_json: serde_json::to_string(&authorization).unwrap_or_default(),
            claims_json,
            claims,
            expires_on: token.expires_on.format(&Rfc3339).unwrap_or_default(),
            replies: Default::default(),
        }
    }

    /// The reply a function renders from these facts, rendered on its first
    /// use and reused while the token lasts. `variant` tells the renderings
    /// apart (`/api/token` renders one for a fresh and one for a cached token).
    /// Facts are kept per resource and identity, so a rendering may use both.
    pub fn reply(&self, variant: bool, render: impl FnOnce() -> bytes::Bytes) -> bytes::Bytes {
        self.replies[usize::from(variant)]
            .get_or_init(render)
            .clone()
    }
}

/// The facts of the tokens handed out lately, by resource and identity. A
/// token refreshed (or replaced) for the same pair is decoded afresh.
pub struct FactsCache {
    /// Each entry keeps the token its facts are of: the token cache's own
    /// copy, shared, so telling it apart is a pointer comparison.
    entries: Mutex<Entries>,
    /// lru's own (foldhash, seeded per process): SipHash was most of a lookup.
    hasher: lru::DefaultHasher,
}

/// By a hash of (resource, identity): the token and its facts.
type Entries = lru::LruCache<u64, (Arc<AccessToken>, Arc<TokenFacts>)>;

/// Resources × identities a handler asks for: a few allow-listed resources,
/// and the identities callers name.
const CAPACITY: usize = 64;

impl Default for FactsCache {
    fn default() -> Self {
        Self {
            entries: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(CAPACITY).expect("non-zero"),
            )),
            hasher: Default::default(),
        }
    }
}

impl FactsCache {
    /// The facts of `token`, obtained for `resource` as `identity`: from the
    /// cache when this very token was seen before, else decoded now and
    /// remembered.
    pub fn facts(
        &self,
        resource: &str,
        identity: &(impl std::hash::Hash + ?Sized),
        token: &Arc<AccessToken>,
    ) -> Arc<TokenFacts> {
        let key = self.hasher.hash_one((resource, identity));
        if let Some((seen, facts)) = self.lock().get(&key)
            // The same cached token, or (from a chain that hands out copies,
            // as developer sign-in does) an equal one.
            && (Arc::ptr_eq(seen, token) || seen.token.secret() == token.token.secret())
        {
            return facts.clone();
        }
        // Decoded outside the lock: a burst of new tokens decodes in parallel.
        let facts = Arc::new(TokenFacts::of(token));
        self.lock().put(key, (token.clone(), facts.clone()));
        facts
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic elsewhere cannot leave an entry half-written: use it as is.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for FactsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FactsCache")
            .field("entries", &self.lock().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use time::OffsetDateTime;

    fn token(payload: &str) -> Arc<AccessToken> {
        let jwt = format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(payload)
        );
        Arc::new(AccessToken::new(
            jwt,
            OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000),
        ))
    }

    #[test]
    fn the_same_token_is_decoded_once_and_a_new_one_afresh() {
        let cache = FactsCache::default();
        let first = token(r#"{"aud":"https://vault.azure.net","roles":["A"],"iat":1}"#);
        let a = cache.facts(
            "https://vault.azure.net",
            "app_service:system_assigned",
            &first,
        );
        let b = cache.facts(
            "https://vault.azure.net",
            "app_service:system_assigned",
            &first,
        );
        assert!(Arc::ptr_eq(&a, &b), "a second request reuses the facts");
        // A copy of the same token (developer sign-in hands out copies) too.
        let copy = Arc::new((*first).clone());
        let copied = cache.facts(
            "https://vault.azure.net",
            "app_service:system_assigned",
            &copy,
        );
        assert!(Arc::ptr_eq(&a, &copied), "an equal token reuses the facts");
        assert_eq!(a.claims.as_ref().unwrap()["roles"][0], "A");
        assert_eq!(
            a.authorization_json,
            r#"{"aud":"https://vault.azure.net","roles":["A"]}"#
        );
        assert_eq!(a.expires_on, "2024-10-04T00:00:00Z");
        assert_eq!(a.reply(true, || "first".into()), "first");
        assert_eq!(b.reply(true, || "second".into()), "first", "rendered once");
        assert_eq!(b.reply(false, || "other".into()), "other");

        let refreshed = token(r#"{"aud":"https://vault.azure.net","roles":["A","B"],"iat":2}"#);
        let c = cache.facts(
            "https://vault.azure.net",
            "app_service:system_assigned",
            &refreshed,
        );
        assert!(!Arc::ptr_eq(&a, &c), "a refreshed token is decoded again");
        assert_eq!(c.claims.as_ref().unwrap()["roles"][1], "B");
    }

    #[test]
    fn opaque_tokens_have_no_claims_and_facts_hold_no_signature() {
        let opaque = Arc::new(AccessToken::new(
            "opaque-token-value",
            OffsetDateTime::UNIX_EPOCH,
        ));
        let facts = FactsCache::default().facts("r", "i", &opaque);
        assert!(facts.claims.is_none());
        assert_eq!(facts.claims_json.get(), "null");
        let jwt = token(r#"{"aud":"x"}"#);
        let facts = TokenFacts::of(&jwt);
        assert!(!format!("{facts:?}").contains("c2ln"), "no signature");
        assert!(!format!("{facts:?}").contains("opaque-token-value"));
    }
}
