//! Cache, single-flight, refresh and retry timing, on a paused tokio clock with
//! an in-process endpoint (real sockets and paused timers do not mix).

use app_service_identity::*;
use async_trait::async_trait;
use serde_json::json;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// One scripted answer: after `delay`, a status with headers and body.
#[derive(Clone)]
struct Reply {
    delay: Duration,
    status: u16,
    retry_after: Option<&'static str>,
    lifetime: i64,
}

fn ok(lifetime: i64) -> Reply {
    Reply {
        delay: Duration::ZERO,
        status: 200,
        retry_after: None,
        lifetime,
    }
}
fn status(status: u16) -> Reply {
    Reply {
        delay: Duration::ZERO,
        status,
        retry_after: None,
        lifetime: 0,
    }
}

/// Plays replies in order (the last one repeats) and records when each request came.
#[derive(Debug, Default)]
struct Scripted {
    replies: Mutex<VecDeque<ReplyDbg>>,
    calls: Mutex<Vec<(Instant, String)>>,
}
#[derive(Debug)]
struct ReplyDbg(#[allow(dead_code)] u16, Reply);
impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.status)
    }
}

impl Scripted {
    fn new(replies: Vec<Reply>) -> Arc<Self> {
        Arc::new(Self {
            replies: Mutex::new(replies.into_iter().map(|r| ReplyDbg(r.status, r)).collect()),
            calls: Mutex::default(),
        })
    }
    fn calls(&self) -> Vec<Instant> {
        self.calls.lock().unwrap().iter().map(|(t, _)| *t).collect()
    }
    fn set(&self, replies: Vec<Reply>) {
        *self.replies.lock().unwrap() =
            replies.into_iter().map(|r| ReplyDbg(r.status, r)).collect();
    }
}

#[async_trait]
impl IdentityTransport for Scripted {
    async fn send(&self, request: &EndpointRequest) -> Result<EndpointResponse, String> {
        self.calls
            .lock()
            .unwrap()
            .push((Instant::now(), request.url.to_string()));
        let reply = {
            let mut q = self.replies.lock().unwrap();
            if q.len() > 1 {
                q.pop_front().unwrap().1
            } else {
                q.front().unwrap().1.clone()
            }
        };
        tokio::time::sleep(reply.delay).await;
        let exp = time::OffsetDateTime::now_utc().unix_timestamp() + reply.lifetime;
        let body = if reply.status == 200 {
            json!({"access_token": format!("tok-{}", self.calls.lock().unwrap().len()),
                   "expires_on": exp.to_string(), "resource": "r", "token_type": "Bearer"})
        } else {
            json!({"statusCode": reply.status, "message": "scripted failure", "correlationId": "c"})
        };
        Ok(EndpointResponse {
            status: reply.status,
            retry_after: reply.retry_after.map(str::to_owned),
            body: body.to_string().into_bytes(),
        })
    }
}

fn retry() -> RetryOptions {
    RetryOptions {
        max_retries: 3,
        initial_delay: Duration::from_millis(800),
        max_delay: Duration::from_secs(8),
        attempt_timeout: Duration::from_secs(10),
        deadline: Duration::from_secs(30),
    }
}

fn options(transport: Arc<Scripted>, retry: RetryOptions) -> ManagedIdentityCredentialOptions {
    let mut o = ManagedIdentityCredentialOptions::default();
    o.environment = Environment::from_vars([
        ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token"),
        ("IDENTITY_HEADER", "h"),
    ]);
    o.retry = Some(retry);
    o.transport = Some(transport);
    o.cache = CacheScope::Credential;
    o
}

/// A credential without failure memory (the tests of it turn it on).
fn provider_with(transport: Arc<Scripted>, retry: RetryOptions) -> Arc<ManagedIdentityCredential> {
    let mut o = options(transport, retry);
    o.failure_memory = Duration::ZERO;
    ManagedIdentityCredential::new(o).unwrap()
}

fn gaps(calls: &[Instant]) -> Vec<f64> {
    calls
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn i13_four_500s_give_four_requests_with_growing_delays() {
    let endpoint = Scripted::new(vec![status(500)]);
    let p = provider_with(endpoint.clone(), retry());
    let err = p.token("r", None).await.unwrap_err();
    assert_eq!(err.upstream_status(), Some(500));
    assert!(err.to_string().contains("scripted failure"), "{err}");
    assert!(err.to_string().contains("after 4 attempts"), "{err}");
    let g = gaps(&endpoint.calls());
    assert_eq!(g.len(), 3);
    // 0.8 s, 1.6 s, 3.2 s, each ±20 % jitter.
    for (gap, base) in g.iter().zip([0.8, 1.6, 3.2]) {
        assert!(
            *gap >= base * 0.8 - 1e-6 && *gap <= base * 1.2 + 1e-6,
            "{g:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn i15_retry_after_is_honoured() {
    let mut throttled = status(429);
    throttled.retry_after = Some("5");
    let endpoint = Scripted::new(vec![throttled, ok(3600)]);
    let p = provider_with(endpoint.clone(), retry());
    p.token("r", None).await.unwrap();
    let g = gaps(&endpoint.calls());
    assert!(g[0] >= 5.0, "second request after Retry-After: {g:?}");
}

#[tokio::test(start_paused = true)]
async fn retry_after_beyond_the_deadline_gives_up_at_once() {
    let mut throttled = status(429);
    throttled.retry_after = Some("120");
    let endpoint = Scripted::new(vec![throttled]);
    let p = provider_with(endpoint.clone(), retry());
    let started = Instant::now();
    let err = p.token("r", None).await.unwrap_err();
    assert!(
        matches!(err, IdentityError::DeadlineExceeded { .. }),
        "{err}"
    );
    assert!(err.is_temporary());
    assert_eq!(err.upstream_status(), Some(429));
    assert_eq!(endpoint.calls().len(), 1);
    assert_eq!(Instant::now(), started, "no pointless wait");
}

#[tokio::test(start_paused = true)]
async fn slow_attempts_time_out_and_the_deadline_bounds_the_call() {
    let mut slow = ok(3600);
    slow.delay = Duration::from_secs(60);
    let endpoint = Scripted::new(vec![slow]);
    let options = RetryOptions {
        attempt_timeout: Duration::from_secs(2),
        deadline: Duration::from_secs(7),
        ..retry()
    };
    let p = provider_with(endpoint.clone(), options);
    let started = Instant::now();
    let err = p.token("r", None).await.unwrap_err();
    assert!(err.to_string().contains("no response within"), "{err}");
    assert!(
        Instant::now() - started <= Duration::from_secs(7),
        "deadline respected"
    );
}

#[tokio::test(start_paused = true)]
async fn i17_single_flight_under_100_concurrent_callers() {
    let mut slow = ok(3600);
    slow.delay = Duration::from_millis(500);
    let endpoint = Scripted::new(vec![slow]);
    let p = provider_with(endpoint.clone(), retry());
    let callers: Vec<_> = (0..100)
        .map(|_| {
            let p = p.clone();
            tokio::spawn(async move { p.token("https://vault.azure.net", None).await })
        })
        .collect();
    let mut tokens = Vec::new();
    for c in callers {
        tokens.push(c.await.unwrap().unwrap().token.token.secret().to_owned());
    }
    assert_eq!(endpoint.calls().len(), 1, "exactly one endpoint call");
    assert!(tokens.iter().all(|t| t == &tokens[0]));
}

#[tokio::test(start_paused = true)]
async fn different_keys_fetch_independently() {
    let mut slow = ok(3600);
    slow.delay = Duration::from_secs(20);
    let slow_endpoint = Scripted::new(vec![slow]);
    let p = provider_with(slow_endpoint.clone(), retry());
    let blocked = {
        let p = p.clone();
        tokio::spawn(async move { p.token("slow-resource", None).await })
    };
    tokio::task::yield_now().await;
    slow_endpoint.set(vec![ok(3600)]);
    let started = Instant::now();
    p.token("other-resource", None).await.unwrap();
    assert!(
        Instant::now() - started < Duration::from_secs(1),
        "not blocked by the slow key"
    );
    blocked.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn i18_short_lived_tokens_are_fetched_every_time() {
    let endpoint = Scripted::new(vec![ok(250)]);
    let p = provider_with(endpoint.clone(), retry());
    for _ in 0..3 {
        assert!(!p.token("r", None).await.unwrap().cached);
    }
    assert_eq!(endpoint.calls().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn i19_half_life_refresh_and_stale_on_failure() {
    let endpoint = Scripted::new(vec![ok(7300)]);
    let p = provider_with(endpoint.clone(), retry());
    let first = p.token("r", None).await.unwrap();
    tokio::time::advance(Duration::from_secs(3640)).await;
    assert!(
        p.token("r", None).await.unwrap().cached,
        "before half-life: cached"
    );
    assert_eq!(endpoint.calls().len(), 1);

    // Past half-life the refresh fails (400 is final): the valid token is served.
    endpoint.set(vec![status(400)]);
    tokio::time::advance(Duration::from_secs(20)).await;
    let stale = p.token("r", None).await.unwrap();
    assert_eq!(endpoint.calls().len(), 2, "a refresh was attempted");
    assert!(stale.cached);
    assert_eq!(stale.token.token.secret(), first.token.token.secret());

    // Once the endpoint recovers, the next call refreshes.
    endpoint.set(vec![ok(7300)]);
    let fresh = p.token("r", None).await.unwrap();
    assert!(!fresh.cached);
    assert_ne!(fresh.token.token.secret(), first.token.token.secret());
}

#[tokio::test(start_paused = true)]
async fn expired_token_is_never_served_when_refresh_fails() {
    let endpoint = Scripted::new(vec![ok(600)]);
    let p = provider_with(endpoint.clone(), retry());
    p.token("r", None).await.unwrap();
    endpoint.set(vec![status(400)]);
    tokio::time::advance(Duration::from_secs(700)).await;
    assert!(p.token("r", None).await.is_err());
}

/// A credential with the default failure memory (5 s).
fn remembering(transport: Arc<Scripted>) -> Arc<ManagedIdentityCredential> {
    ManagedIdentityCredential::new(options(transport, retry())).unwrap()
}

#[tokio::test(start_paused = true)]
async fn failing_endpoint_n_callers_one_retry_sequence_all_within_the_deadline() {
    let endpoint = Scripted::new(vec![status(500)]);
    let p = provider_with(endpoint.clone(), retry());
    let started = Instant::now();
    let callers: Vec<_> = (0..64)
        .map(|i| {
            let p = p.clone();
            tokio::spawn(async move {
                // Arrivals spread over the first second.
                tokio::time::sleep(Duration::from_millis(i * 15)).await;
                let t = Instant::now();
                let result = p.token("https://vault.azure.net", None).await;
                (result, Instant::now() - t)
            })
        })
        .collect();
    for c in callers {
        let (result, waited) = c.await.unwrap();
        let err = result.unwrap_err();
        assert_eq!(err.upstream_status(), Some(500), "{err}");
        assert!(waited <= retry().deadline, "a caller waited {waited:?}");
    }
    assert_eq!(
        endpoint.calls().len() as u32,
        retry().max_retries + 1,
        "one retry sequence for all 64 callers"
    );
    assert!(Instant::now() - started <= retry().deadline + Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_failure_is_remembered_for_a_few_seconds_and_says_when_to_retry() {
    let endpoint = Scripted::new(vec![status(400)]);
    let p = remembering(endpoint.clone());
    p.token("r", None).await.unwrap_err();
    assert_eq!(endpoint.calls().len(), 1);
    tokio::time::advance(Duration::from_secs(2)).await;
    let err = p.token("r", None).await.unwrap_err();
    match &err {
        IdentityError::RecentFailure { retry_in, last } => {
            assert_eq!(*retry_in, DEFAULT_FAILURE_MEMORY - Duration::from_secs(2));
            assert_eq!(last.upstream_status(), Some(400));
        }
        other => panic!("{other}"),
    }
    assert!(
        err.to_string().contains("no new attempt for 3.0 s"),
        "{err}"
    );
    assert_eq!(
        err.kind(),
        ErrorKind::IdentityNotFound,
        "the remembered error's kind"
    );
    assert_eq!(endpoint.calls().len(), 1, "no call inside the window");
    // After the window, the next request goes out.
    endpoint.set(vec![ok(3600)]);
    tokio::time::advance(Duration::from_secs(3)).await;
    assert!(!p.token("r", None).await.unwrap().cached);
    assert_eq!(endpoint.calls().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_longer_retry_after_extends_the_memory() {
    let mut throttled = status(429);
    throttled.retry_after = Some("120");
    let endpoint = Scripted::new(vec![throttled]);
    let p = remembering(endpoint.clone());
    p.token("r", None).await.unwrap_err();
    tokio::time::advance(Duration::from_secs(60)).await;
    match p.token("r", None).await.unwrap_err() {
        IdentityError::RecentFailure { retry_in, .. } => {
            assert_eq!(retry_in, Duration::from_secs(60))
        }
        other => panic!("{other}"),
    }
    assert_eq!(endpoint.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_valid_cached_token_is_served_through_the_memory() {
    let endpoint = Scripted::new(vec![ok(7300)]);
    let p = remembering(endpoint.clone());
    let first = p.token("r", None).await.unwrap();
    endpoint.set(vec![status(400)]);
    tokio::time::advance(Duration::from_secs(3700)).await; // past half-life
    for _ in 0..5 {
        let t = p.token("r", None).await.unwrap();
        assert_eq!(t.token.token.secret(), first.token.token.secret());
    }
    assert_eq!(
        endpoint.calls().len(),
        2,
        "one refresh attempt, then remembered"
    );
}

#[tokio::test(start_paused = true)]
async fn imds_410_is_retried_for_at_least_70_seconds() {
    let endpoint = Scripted::new(vec![status(410)]);
    let mut o = options(endpoint.clone(), RetryOptions::imds());
    o.source = ManagedIdentitySource::Imds;
    o.environment = Environment::from_vars::<String, String>([]);
    o.failure_memory = Duration::ZERO;
    let p = ManagedIdentityCredential::new(o).unwrap();
    let started = Instant::now();
    let err = p.token("r", None).await.unwrap_err();
    let calls = endpoint.calls();
    let span = *calls.last().unwrap() - calls[0];
    assert!(
        span >= Duration::from_secs(70),
        "410s retried for only {span:?}"
    );
    assert!(
        calls.len() as u32 > RetryOptions::imds().max_retries + 1,
        "{}",
        calls.len()
    );
    assert_eq!(err.upstream_status(), Some(410));
    assert!(Instant::now() - started < Duration::from_secs(120));

    // A 410 that clears within the window yields a token.
    let endpoint = Scripted::new(vec![
        status(410),
        status(410),
        status(410),
        status(410),
        status(410),
        status(410),
        ok(3600),
    ]);
    let mut o = options(endpoint.clone(), RetryOptions::imds());
    o.source = ManagedIdentitySource::Imds;
    o.environment = Environment::from_vars::<String, String>([]);
    let p = ManagedIdentityCredential::new(o).unwrap();
    p.token("r", None).await.unwrap();
    assert_eq!(endpoint.calls().len(), 7);
}

#[tokio::test(start_paused = true)]
async fn credentials_with_equivalent_options_share_the_process_cache() {
    let endpoint = Scripted::new(vec![ok(3600)]);
    let build = || {
        let mut o = options(endpoint.clone(), retry());
        // A URL no other test uses: the process cache is shared by the whole binary.
        o.environment = Environment::from_vars([
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/shared-cache-test"),
            ("IDENTITY_HEADER", "h"),
        ]);
        o.cache = CacheScope::Process;
        ManagedIdentityCredential::new(o).unwrap()
    };
    let (a, b) = (build(), build());
    a.token("https://vault.azure.net", None).await.unwrap();
    let from_b = b.token("HTTPS://vault.azure.net/", None).await.unwrap();
    assert!(
        from_b.cached,
        "the second instance used the first one's token"
    );
    assert_eq!(endpoint.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn cached_token_is_what_token_serves_without_waiting() {
    let endpoint = Scripted::new(vec![ok(7300)]);
    let p = remembering(endpoint.clone());
    let vault = "https://vault.azure.net";
    assert!(p.cached_token(vault, None).is_none(), "nothing fetched yet");
    let fetched = p.token(vault, None).await.unwrap();
    // Any variant Entra treats as the same resource, as `token` would.
    let cached = p.cached_token("HTTPS://Vault.Azure.NET/", None).unwrap();
    assert!(cached.cached);
    assert!(Arc::ptr_eq(&cached.token, &fetched.token), "no copy");
    assert_eq!(cached.identity, fetched.identity);
    let other = UserAssignedId::parse("client_id", "00000000-0000-0000-0000-0000000000aa").unwrap();
    assert!(
        p.cached_token(vault, Some(&other)).is_none(),
        "another identity"
    );
    tokio::time::advance(Duration::from_secs(3700)).await; // past half-life
    assert!(
        p.cached_token(vault, None).is_none(),
        "a refresh is due: only `token` starts it"
    );
    assert!(!p.token(vault, None).await.unwrap().cached, "refreshed");
    assert_eq!(endpoint.calls().len(), 2);
    assert!(p.cached_token(vault, None).is_some());
}
