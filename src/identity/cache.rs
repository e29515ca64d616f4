//! A token cache with single-flight fetches and proactive refresh.
//!
//! * One entry per key (resource + identity). Each entry has its own fetch lock,
//!   so a slow fetch for one resource never blocks callers of another.
//! * Cold or expired key: callers queue on the entry's lock and the first one
//!   fetches; the rest find the fresh token when the lock is theirs.
//! * Refresh is proactive: at half-life for tokens of 2 h or more, otherwise
//!   5 minutes before expiry. While one caller refreshes, the others keep being
//!   served the still-valid token, and if the refresh fails the valid token is
//!   served anyway (as azure_core's bearer policy does since azure-sdk-for-rust#2611).
//!
//! Deadlines are kept on tokio's clock, so tests drive them with `tokio::time::pause`.

use azure_core::credentials::AccessToken;
use lru::LruCache;
use std::future::Future;
use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::time::Instant;

/// Tokens at least this long-lived are refreshed at half-life.
const HALF_LIFE_THRESHOLD: Duration = Duration::from_secs(2 * 3600);
/// Shorter tokens are refreshed this long before they expire.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// A token this close to expiry is not handed out even when a refresh failed:
/// it could expire in flight.
const MIN_REMAINING: Duration = Duration::from_secs(30);
/// At most this many keys are kept; the least recently used one goes first.
/// Keys can come from callers, so the bound is hard, and each lookup is O(1).
pub const MAX_ENTRIES: NonZeroUsize = NonZeroUsize::new(256).unwrap();

/// Whether a returned token came from the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    Cached,
    Fetched,
}

#[derive(Clone)]
struct Cached {
    token: AccessToken,
    refresh_at: Instant,
    usable_until: Instant,
}

#[derive(Default)]
struct Entry {
    current: Mutex<Option<Cached>>,
    fetch: tokio::sync::Mutex<()>,
}

impl Entry {
    fn current(&self) -> Option<Cached> {
        self.current.lock().expect("token entry poisoned").clone()
    }
}

/// See the module docs.
pub struct TokenCache<K: Eq + Hash> {
    entries: Mutex<LruCache<K, Arc<Entry>>>,
}

impl<K: Eq + Hash + Clone> Default for TokenCache<K> {
    fn default() -> Self {
        Self::with_capacity(MAX_ENTRIES)
    }
}

impl<K: Eq + Hash + Clone> TokenCache<K> {
    /// A cache that keeps at most `capacity` keys.
    pub fn with_capacity(capacity: NonZeroUsize) -> Self {
        Self {
            entries: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// Returns a cached token, or runs `fetch` (at most once at a time per key).
    pub async fn get_or_fetch<E, F, Fut>(
        &self,
        key: &K,
        fetch: F,
    ) -> Result<(AccessToken, Freshness), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<AccessToken, E>>,
        E: std::fmt::Display,
    {
        let entry = self.entry(key);

        if let Some(cached) = entry.current() {
            let now = Instant::now();
            if now < cached.refresh_at {
                return Ok((cached.token, Freshness::Cached));
            }
            if now < cached.usable_until {
                // Due for refresh but still valid: one caller refreshes, nobody waits.
                let Ok(_guard) = entry.fetch.try_lock() else {
                    return Ok((cached.token, Freshness::Cached));
                };
                return match fetch().await {
                    Ok(token) => Ok((Self::store(&entry, token), Freshness::Fetched)),
                    Err(err) => {
                        tracing::warn!(error = %err, "token refresh failed; serving the cached token, which is still valid");
                        Ok((cached.token, Freshness::Cached))
                    }
                };
            }
        }

        let _guard = entry.fetch.lock().await;
        // Another caller may have fetched while we queued.
        if let Some(cached) = entry.current().filter(|c| Instant::now() < c.refresh_at) {
            return Ok((cached.token, Freshness::Cached));
        }
        let token = fetch().await?;
        Ok((Self::store(&entry, token), Freshness::Fetched))
    }

    /// The key's entry, marked most recently used. A new key evicts the least
    /// recently used one; a caller still holding an evicted entry finishes
    /// with it undisturbed.
    fn entry(&self, key: &K) -> Arc<Entry> {
        let mut entries = self.entries.lock().expect("token cache poisoned");
        entries
            .get_or_insert(key.clone(), || Arc::new(Entry::default()))
            .clone()
    }

    fn store(entry: &Entry, token: AccessToken) -> AccessToken {
        let (refresh_in, usable_for) = schedule(&token, OffsetDateTime::now_utc());
        let now = Instant::now();
        *entry.current.lock().expect("token entry poisoned") = Some(Cached {
            token: token.clone(),
            refresh_at: now + refresh_in,
            usable_until: now + usable_for,
        });
        token
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().expect("token cache poisoned").len()
    }
}

/// When to refresh a token and how long it may be served, measured from now.
fn schedule(token: &AccessToken, now: OffsetDateTime) -> (Duration, Duration) {
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
    use std::sync::atomic::{AtomicU32, Ordering};

    fn token(name: &str, lifetime_secs: i64) -> AccessToken {
        AccessToken::new(
            name.to_owned(),
            OffsetDateTime::now_utc() + time::Duration::seconds(lifetime_secs),
        )
    }

    #[test]
    fn refresh_schedule() {
        let now = OffsetDateTime::now_utc();
        let at = |secs| AccessToken::new("t", now + time::Duration::seconds(secs));
        assert_eq!(schedule(&at(7300), now).0, Duration::from_secs(3650));
        assert_eq!(schedule(&at(3600), now).0, Duration::from_secs(3300));
        assert_eq!(schedule(&at(250), now).0, Duration::ZERO);
        assert_eq!(schedule(&at(-10), now), (Duration::ZERO, Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn serves_from_cache_until_refresh_time() {
        let cache = TokenCache::<&str>::default();
        let calls = AtomicU32::new(0);
        let fetch = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(token("t", 3600))
        };
        assert_eq!(
            cache.get_or_fetch(&"k", fetch).await.unwrap().1,
            Freshness::Fetched
        );
        assert_eq!(
            cache.get_or_fetch(&"k", fetch).await.unwrap().1,
            Freshness::Cached
        );
        tokio::time::advance(Duration::from_secs(3299)).await;
        assert_eq!(
            cache.get_or_fetch(&"k", fetch).await.unwrap().1,
            Freshness::Cached
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            cache.get_or_fetch(&"k", fetch).await.unwrap().1,
            Freshness::Fetched
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_fetch_caches_nothing() {
        let cache = TokenCache::<&str>::default();
        let err = cache
            .get_or_fetch(&"k", || async { Err::<AccessToken, _>("boom".to_string()) })
            .await;
        assert!(err.is_err());
        let ok = cache
            .get_or_fetch(&"k", || async { Ok::<_, String>(token("t", 3600)) })
            .await
            .unwrap();
        assert_eq!(ok.1, Freshness::Fetched);
    }

    #[tokio::test(start_paused = true)]
    async fn one_key_refreshing_does_not_block_another() {
        let cache = Arc::new(TokenCache::<&str>::default());
        let slow = {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .get_or_fetch(&"slow", || async {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        Ok::<_, String>(token("s", 3600))
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        let started = Instant::now();
        cache
            .get_or_fetch(&"fast", || async { Ok::<_, String>(token("f", 3600)) })
            .await
            .unwrap();
        assert_eq!(Instant::now(), started, "fast key waited for the slow one");
        slow.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn ten_thousand_keys_stay_bounded_and_hot_keys_stay_cached() {
        let cache = TokenCache::<String>::default();
        let fetches = AtomicU32::new(0);
        let fetch = || async {
            fetches.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(token("t", 3600))
        };
        let hot = "https://vault.azure.net".to_string();
        cache.get_or_fetch(&hot, fetch).await.unwrap();
        for i in 0..10_000 {
            cache
                .get_or_fetch(&format!("https://attacker.example/{i}"), fetch)
                .await
                .unwrap();
            if i % 100 == 0 {
                // The app's own key is used all the time, so it stays.
                let (_, freshness) = cache.get_or_fetch(&hot, fetch).await.unwrap();
                assert_eq!(freshness, Freshness::Cached, "hot key evicted at {i}");
            }
            assert!(cache.len() <= MAX_ENTRIES.get(), "unbounded at {i}");
        }
        assert_eq!(cache.len(), MAX_ENTRIES.get());
        // One fetch for the hot key, one per cold key: the hot key never refetched.
        assert_eq!(fetches.load(Ordering::SeqCst), 10_001);
        assert_eq!(
            cache.get_or_fetch(&hot, fetch).await.unwrap().1,
            Freshness::Cached
        );
    }
}
