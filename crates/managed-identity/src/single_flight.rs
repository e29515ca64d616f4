//! An async single-flight cache with a bounded LRU of keys and a short memory
//! of failures. The token cache is one; apps can use it for anything fetched
//! from a service (the handler caches Key Vault secrets with it).
//!
//! * **One fetch per key at a time, whether it succeeds or fails.** The first
//!   caller of a cold or stale key starts the fetch on its own task; every
//!   caller that arrives meanwhile awaits that same attempt and gets its
//!   result, error included. N callers against a failing service cost one
//!   retry sequence, not N.
//! * **Proactive refresh.** A value is fetched again after `refresh_in`, but
//!   served until `usable_for` has passed: while a refresh runs, or if it
//!   fails, callers keep getting the still-usable value.
//! * **A memory of failures.** After a failed fetch, the key fails fast with
//!   the same error for `remember_for` (set per failure, e.g. from
//!   `Retry-After`), making no call; a still-usable value is served instead.
//! * **Bounded.** At most `capacity` keys; the least recently used goes first,
//!   and every lookup is O(1).
//!
//! Times are on tokio's clock, so tests drive them with `tokio::time::pause`.

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use lru::LruCache;
use std::future::Future;
use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// A freshly fetched value and how long to keep it.
#[derive(Debug, Clone)]
pub struct Fresh<V> {
    /// The value.
    pub value: V,
    /// Fetch again once this much time has passed.
    pub refresh_in: Duration,
    /// Serve it (while refreshing, or when a refresh fails) until then.
    pub usable_for: Duration,
}

/// A failed fetch and how long to remember it.
#[derive(Debug, Clone)]
pub struct Failed<E> {
    /// The error every caller of this attempt gets.
    pub error: E,
    /// Answer with this error, without fetching, for this long.
    pub remember_for: Duration,
}

/// Where a returned value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Served {
    /// From the cache, without waiting for a fetch.
    Cached,
    /// From a fetch this call started or joined.
    Fetched,
}

/// Why no value could be returned.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Miss<E> {
    /// The fetch this call started or joined failed.
    Failed(E),
    /// A fetch failed recently; no new one is allowed for `retry_in`.
    Remembered {
        /// The remembered error.
        error: E,
        /// How long until the next fetch is allowed.
        retry_in: Duration,
    },
}

impl<E> Miss<E> {
    /// The error, whether the fetch just failed or failed moments ago.
    pub fn into_error(self) -> E {
        match self {
            Miss::Failed(error) | Miss::Remembered { error, .. } => error,
        }
    }
}

type Attempt<V, E> = Shared<BoxFuture<'static, Result<Fresh<V>, Failed<E>>>>;

struct Stored<V> {
    value: V,
    refresh_at: Instant,
    usable_until: Instant,
}

struct State<V, E> {
    stored: Option<Stored<V>>,
    failure: Option<(E, Instant)>,
    attempt: Option<Attempt<V, E>>,
}

struct Slot<V, E> {
    state: Mutex<State<V, E>>,
}

impl<V, E> Default for Slot<V, E> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                stored: None,
                failure: None,
                attempt: None,
            }),
        }
    }
}

/// See the module docs.
pub struct SingleFlightCache<K: Hash + Eq, V, E> {
    slots: Mutex<LruCache<K, Arc<Slot<V, E>>>>,
}

/// What a lookup decided while holding the slot's lock.
enum Step<V, E> {
    Done(V),
    Remembered(E, Duration),
    Await {
        attempt: Attempt<V, E>,
        fallback: Option<V>,
    },
}

impl<K, V, E> SingleFlightCache<K, V, E>
where
    K: Hash + Eq + Clone,
    V: Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    /// A cache of at most `capacity` keys.
    pub fn new(capacity: NonZeroUsize) -> Self {
        Self {
            slots: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// The key's value: cached if fresh, else from the one fetch in flight for
    /// the key (started with `fetch` if there is none).
    pub async fn get<F, Fut>(&self, key: &K, fetch: F) -> Result<(V, Served), Miss<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fresh<V>, Failed<E>>> + Send + 'static,
    {
        self.get_if(key, |_| true, fetch).await
    }

    /// Like [`get`](Self::get), but a stored value counts only if `accept`
    /// says it serves this caller; otherwise the caller joins the fetch in
    /// flight or starts one. A JWKS cache uses it: a key set without the
    /// token's `kid` is fetched again, once, however many callers need it.
    pub async fn get_if<A, F, Fut>(
        &self,
        key: &K,
        accept: A,
        fetch: F,
    ) -> Result<(V, Served), Miss<E>>
    where
        A: Fn(&V) -> bool,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fresh<V>, Failed<E>>> + Send + 'static,
    {
        let slot = self.slot(key);
        let step = {
            let mut state = slot.state.lock().expect("cache slot poisoned");
            let now = Instant::now();
            let usable = state
                .stored
                .as_ref()
                .filter(|s| now < s.usable_until && accept(&s.value))
                .map(|s| s.value.clone());
            match &state.stored {
                Some(s) if now < s.refresh_at && accept(&s.value) => Step::Done(s.value.clone()),
                _ => match (&state.failure, &state.attempt) {
                    (Some((error, until)), _) if now < *until => match usable {
                        Some(v) => Step::Done(v),
                        None => Step::Remembered(error.clone(), *until - now),
                    },
                    // A refresh is running: serve the usable value, or join it.
                    (_, Some(attempt)) => match usable {
                        Some(v) => Step::Done(v),
                        None => Step::Await {
                            attempt: attempt.clone(),
                            fallback: None,
                        },
                    },
                    (_, None) => {
                        let attempt = start(Arc::downgrade(&slot), fetch());
                        state.attempt = Some(attempt.clone());
                        Step::Await {
                            attempt,
                            fallback: usable,
                        }
                    }
                },
            }
        };
        match step {
            Step::Done(v) => Ok((v, Served::Cached)),
            Step::Remembered(error, retry_in) => Err(Miss::Remembered { error, retry_in }),
            Step::Await { attempt, fallback } => match (attempt.await, fallback) {
                (Ok(fresh), _) => Ok((fresh.value, Served::Fetched)),
                // The refresh failed, but the value it was replacing is still good.
                (Err(_), Some(v)) => Ok((v, Served::Cached)),
                (Err(failed), None) => Err(Miss::Failed(failed.error)),
            },
        }
    }

    /// The key's stored value while it needs no refresh: what [`get`](Self::get)
    /// would serve at once. `None` means only "call `get`" (nothing stored,
    /// or a refresh is due, or a failure is remembered).
    pub fn fresh<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        // Both locks at once, slots first: nothing takes the slots' lock
        // while holding a slot's, so this cannot deadlock.
        let mut slots = self.slots.lock().expect("cache poisoned");
        let state = slots.get(key)?.state.lock().expect("cache slot poisoned");
        let stored = state.stored.as_ref()?;
        (Instant::now() < stored.refresh_at).then(|| stored.value.clone())
    }

    /// Forgets `key`'s value and remembered failure (e.g. after the service
    /// said the value no longer works). A fetch in flight still completes.
    pub fn invalidate(&self, key: &K) {
        self.slots.lock().expect("cache poisoned").pop(key);
    }

    /// How many keys are held (at most the capacity).
    pub fn len(&self) -> usize {
        self.slots.lock().expect("cache poisoned").len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key's slot, marked most recently used; a new key may evict the least
    /// recently used one (its callers finish with it undisturbed).
    fn slot(&self, key: &K) -> Arc<Slot<V, E>> {
        let mut slots = self.slots.lock().expect("cache poisoned");
        // A hit clones no key.
        if let Some(slot) = slots.get(key) {
            return slot.clone();
        }
        let slot = Arc::new(Slot::default());
        slots.put(key.clone(), slot.clone());
        slot
    }
}

/// Runs `fetch` on its own task, so it completes (and fills the slot) even if
/// every caller waiting for it goes away, and records the outcome.
fn start<V, E>(
    slot: std::sync::Weak<Slot<V, E>>,
    fetch: impl Future<Output = Result<Fresh<V>, Failed<E>>> + Send + 'static,
) -> Attempt<V, E>
where
    V: Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    // The fetch runs in the span (and OpenTelemetry context) of the caller
    // that started it, so its logs and any client span it opens belong to
    // that caller's trace.
    let span = tracing::Span::current();
    let context = opentelemetry::Context::current();
    let task = tokio::spawn(tracing::Instrument::instrument(
        async move {
            let outcome = opentelemetry::context::FutureExt::with_context(fetch, context).await;
            if let Some(slot) = slot.upgrade() {
                let mut state = slot.state.lock().expect("cache slot poisoned");
                let now = Instant::now();
                match &outcome {
                    Ok(fresh) => {
                        state.stored = Some(Stored {
                            value: fresh.value.clone(),
                            refresh_at: now + fresh.refresh_in,
                            usable_until: now + fresh.usable_for,
                        });
                        state.failure = None;
                    }
                    Err(failed) if !failed.remember_for.is_zero() => {
                        state.failure = Some((failed.error.clone(), now + failed.remember_for));
                    }
                    Err(_) => {}
                }
                state.attempt = None;
            }
            outcome
        },
        span,
    ));
    async move {
        match task.await {
            Ok(outcome) => outcome,
            // The fetch panicked: re-raise in every waiting caller.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    .boxed()
    .shared()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn cache() -> SingleFlightCache<&'static str, u32, String> {
        SingleFlightCache::new(NonZeroUsize::new(8).unwrap())
    }

    fn fresh(value: u32, secs: u64) -> Result<Fresh<u32>, Failed<String>> {
        Ok(Fresh {
            value,
            refresh_in: Duration::from_secs(secs / 2),
            usable_for: Duration::from_secs(secs),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_failing_attempt() {
        let c = Arc::new(cache());
        let calls = Arc::new(AtomicU32::new(0));
        let mut tasks = vec![];
        for _ in 0..50 {
            let (c, calls) = (c.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                c.get(&"k", move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    Err::<Fresh<u32>, _>(Failed {
                        error: "down".to_string(),
                        remember_for: Duration::from_secs(5),
                    })
                })
                .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), Err(Miss::Failed("down".into())));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn fresh_serves_only_what_get_would_serve_at_once() {
        let c = cache();
        assert_eq!(c.fresh(&"k"), None, "nothing stored");
        let failing = || async {
            Err::<Fresh<u32>, _>(Failed {
                error: "down".to_string(),
                remember_for: Duration::from_secs(5),
            })
        };
        assert!(c.get(&"k", failing).await.is_err());
        assert_eq!(c.fresh(&"k"), None, "a remembered failure is not a value");
        tokio::time::advance(Duration::from_secs(5)).await;
        c.get(&"k", || async { fresh(3, 100) }).await.unwrap();
        assert_eq!(c.fresh(&"k"), Some(3));
        assert_eq!(c.fresh(&"other"), None);
        tokio::time::advance(Duration::from_secs(50)).await;
        // Due for refresh: still usable, but only `get` may start the refresh.
        assert_eq!(c.fresh(&"k"), None);
        assert_eq!(
            c.get(&"k", || async { fresh(4, 100) }).await,
            Ok((4, Served::Fetched))
        );
        assert_eq!(c.fresh(&"k"), Some(4));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_remembered_then_retried() {
        let c = cache();
        let failing = || async {
            Err::<Fresh<u32>, _>(Failed {
                error: "down".to_string(),
                remember_for: Duration::from_secs(5),
            })
        };
        assert!(matches!(c.get(&"k", failing).await, Err(Miss::Failed(_))));
        tokio::time::advance(Duration::from_secs(2)).await;
        let called = AtomicU32::new(0);
        let counted = || {
            called.fetch_add(1, Ordering::SeqCst);
            async { fresh(1, 100) }
        };
        match c.get(&"k", counted).await {
            Err(Miss::Remembered { error, retry_in }) => {
                assert_eq!(error, "down");
                assert_eq!(retry_in, Duration::from_secs(3));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            called.load(Ordering::SeqCst),
            0,
            "no call inside the window"
        );
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(
            c.get(&"k", || async { fresh(7, 100) }).await,
            Ok((7, Served::Fetched))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_usable_value_outlives_a_failed_refresh_and_the_memory() {
        let c = cache();
        c.get(&"k", || async { fresh(1, 100) }).await.unwrap();
        tokio::time::advance(Duration::from_secs(60)).await; // due for refresh
        let failing = || async {
            Err::<Fresh<u32>, _>(Failed {
                error: "down".to_string(),
                remember_for: Duration::from_secs(5),
            })
        };
        assert_eq!(c.get(&"k", failing).await, Ok((1, Served::Cached)));
        assert_eq!(
            c.get(&"k", failing).await,
            Ok((1, Served::Cached)),
            "remembered, served"
        );
        tokio::time::advance(Duration::from_secs(50)).await; // past usable_for
        assert!(matches!(c.get(&"k", failing).await, Err(Miss::Failed(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn the_fetch_completes_when_its_caller_goes_away() {
        let c = Arc::new(cache());
        let c2 = c.clone();
        let caller = tokio::spawn(async move {
            c2.get(&"k", || async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                fresh(9, 100)
            })
            .await
        });
        tokio::task::yield_now().await;
        caller.abort();
        tokio::time::advance(Duration::from_secs(2)).await;
        tokio::task::yield_now().await;
        assert_eq!(
            c.get(&"k", || async { fresh(0, 100) }).await,
            Ok((9, Served::Cached))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_value_refused_by_accept_is_fetched_again_once_for_every_caller() {
        let c = Arc::new(cache());
        c.get(&"k", || async { fresh(1, 100) }).await.unwrap();
        let calls = Arc::new(AtomicU32::new(0));
        let mut tasks = vec![];
        for _ in 0..20 {
            let (c, calls) = (c.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                c.get_if(
                    &"k",
                    |v| *v >= 2,
                    move || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        fresh(2, 100)
                    },
                )
                .await
            }));
        }
        for t in tasks {
            assert_eq!(
                t.await.unwrap().unwrap().0,
                2,
                "every caller waits for the new value"
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(
            c.get_if(&"k", |v| *v >= 2, || async { fresh(3, 100) })
                .await,
            Ok((2, Served::Cached)),
            "the new value is accepted without a fetch"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_key_count_is_bounded() {
        let c = cache();
        for k in ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"] {
            c.get(&k, || async { fresh(1, 100) }).await.unwrap();
        }
        assert_eq!(c.len(), 8);
        c.invalidate(&"j");
        assert_eq!(c.len(), 7);
    }
}
