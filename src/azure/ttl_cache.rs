//! A small TTL cache with single-flight fetches, for secrets.
//!
//! Microsoft's Key Vault guidance: cache secrets in memory and re-read them
//! only when the copy is stale or stops working. Concurrent misses of one key
//! make one request; different keys never wait for each other.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

struct Slot<V> {
    value: Mutex<Option<(Instant, Arc<V>)>>,
    fetch: tokio::sync::Mutex<()>,
}

impl<V> Default for Slot<V> {
    fn default() -> Self {
        Self {
            value: Mutex::new(None),
            fetch: tokio::sync::Mutex::new(()),
        }
    }
}

pub struct TtlCache<K, V> {
    ttl: Duration,
    slots: Mutex<HashMap<K, Arc<Slot<V>>>>,
}

/// Entries kept before stale ones are pruned (keys come from request paths).
const MAX_ENTRIES: usize = 1024;

impl<K: Eq + Hash + Clone, V> TtlCache<K, V> {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The cached value if younger than the TTL, else the result of `fetch`
    /// (at most one running per key). Errors are not cached.
    pub async fn get_or_fetch<E, F, Fut>(&self, key: &K, fetch: F) -> Result<(Arc<V>, bool), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let slot = self.slot(key);
        if let Some(v) = self.fresh(&slot) {
            return Ok((v, true));
        }
        let _guard = slot.fetch.lock().await;
        if let Some(v) = self.fresh(&slot) {
            return Ok((v, true));
        }
        let value = Arc::new(fetch().await?);
        if !self.ttl.is_zero() {
            *slot.value.lock().expect("cache slot poisoned") =
                Some((Instant::now(), value.clone()));
        }
        Ok((value, false))
    }

    /// Forgets `key` (e.g. after the upstream answered 401 or 403).
    pub fn invalidate(&self, key: &K) {
        self.slots.lock().expect("cache poisoned").remove(key);
    }

    fn fresh(&self, slot: &Slot<V>) -> Option<Arc<V>> {
        let value = slot.value.lock().expect("cache slot poisoned");
        value
            .as_ref()
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    fn slot(&self, key: &K) -> Arc<Slot<V>> {
        let mut slots = self.slots.lock().expect("cache poisoned");
        if !slots.contains_key(key) && slots.len() >= MAX_ENTRIES {
            slots.retain(|_, s| Arc::strong_count(s) > 1 || self.fresh(s).is_some());
        }
        slots.entry(key.clone()).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn caches_for_the_ttl_then_refetches() {
        let cache = TtlCache::<&str, u32>::new(Duration::from_secs(60));
        let calls = AtomicU32::new(0);
        let fetch = || async { Ok::<_, ()>(calls.fetch_add(1, Ordering::SeqCst)) };
        assert_eq!(
            cache.get_or_fetch(&"k", fetch).await.unwrap(),
            (Arc::new(0), false)
        );
        assert_eq!(
            cache.get_or_fetch(&"k", fetch).await.unwrap(),
            (Arc::new(0), true)
        );
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(
            cache.get_or_fetch(&"k", fetch).await.unwrap(),
            (Arc::new(1), false)
        );
        cache.invalidate(&"k");
        assert!(!cache.get_or_fetch(&"k", fetch).await.unwrap().1);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_misses_fetch_once() {
        let cache = Arc::new(TtlCache::<&str, u32>::new(Duration::from_secs(60)));
        let calls = Arc::new(AtomicU32::new(0));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (cache, calls) = (cache.clone(), calls.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_fetch(&"k", || async {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            Ok::<_, ()>(calls.fetch_add(1, Ordering::SeqCst))
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn errors_and_zero_ttl_cache_nothing() {
        let cache = TtlCache::<&str, u32>::new(Duration::ZERO);
        assert!(
            cache
                .get_or_fetch(&"k", || async { Err::<u32, _>("x") })
                .await
                .is_err()
        );
        cache
            .get_or_fetch(&"k", || async { Ok::<_, ()>(1) })
            .await
            .unwrap();
        assert!(
            !cache
                .get_or_fetch(&"k", || async { Ok::<_, ()>(2) })
                .await
                .unwrap()
                .1
        );
    }
}
