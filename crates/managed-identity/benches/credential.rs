//! Figures for the credential (`cargo bench -p app-service-identity`): the cost
//! of a cache hit, single-flight for 1,000 cold callers, 64 callers against a
//! failing endpoint, and the failure memory. Prints a table; asserts nothing.
//!
//! The endpoint is an in-process fake with a fixed latency, so the figures are
//! the credential's own, not the network's.

use app_service_identity::{
    CacheScope, EndpointRequest, EndpointResponse, Environment, IdentityTransport,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, RetryOptions,
};
use async_trait::async_trait;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Answers every request after `latency` with `status` (a token on 200).
#[derive(Debug)]
struct Endpoint {
    status: u16,
    latency: Duration,
    calls: AtomicU32,
}

#[async_trait]
impl IdentityTransport for Endpoint {
    async fn send(&self, _request: &EndpointRequest) -> Result<EndpointResponse, String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.latency).await;
        let exp = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
        let body = if self.status == 200 {
            format!(
                r#"{{"access_token":"eyJ0.eyJ0.sig","expires_on":"{exp}","token_type":"Bearer"}}"#
            )
        } else {
            r#"{"statusCode":500,"message":"scripted failure"}"#.to_owned()
        };
        Ok(EndpointResponse {
            status: self.status,
            retry_after: None,
            body: body.into_bytes(),
        })
    }
}

fn credential(status: u16, cache: CacheScope) -> (Arc<ManagedIdentityCredential>, Arc<Endpoint>) {
    let endpoint = Arc::new(Endpoint {
        status,
        latency: Duration::from_millis(2),
        calls: AtomicU32::new(0),
    });
    let mut options = ManagedIdentityCredentialOptions::default();
    options.environment = Environment::from_vars([
        (
            "IDENTITY_ENDPOINT",
            format!("http://127.0.0.1:1/bench-{status}"),
        ),
        ("IDENTITY_HEADER", "h".to_owned()),
    ]);
    options.transport = Some(endpoint.clone());
    options.cache = cache;
    options.retry = Some(RetryOptions::app_service());
    (ManagedIdentityCredential::new(options).unwrap(), endpoint)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("{:<58} {:>14} {:>14}", "benchmark", "result", "wall time");

    // 1. A cache hit.
    let (c, _) = credential(200, CacheScope::Credential);
    c.token("https://vault.azure.net", None).await.unwrap();
    let n = 500_000;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(c.token("https://vault.azure.net", None).await.unwrap());
    }
    let per = t.elapsed().as_secs_f64() / n as f64;
    println!(
        "{:<58} {:>10.0} ns {:>11.2} M/s",
        "cache hit (one task)",
        per * 1e9,
        1e-6 / per
    );

    // 2. 1,000 concurrent cold callers.
    let (c, endpoint) = credential(200, CacheScope::Credential);
    let t = Instant::now();
    let callers: Vec<_> = (0..1000)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.token("api://cold", None).await })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap().unwrap();
    }
    println!(
        "{:<58} {:>11} {:>2} {:>11.1} ms",
        "1,000 concurrent cold callers → endpoint calls",
        endpoint.calls.load(Ordering::SeqCst),
        "",
        t.elapsed().as_secs_f64() * 1e3
    );

    // 3. 64 callers against an endpoint that answers 500 to everything
    //    (default retries: 3, backing off ~0.8, 1.6, 3.2 s).
    let (c, endpoint) = credential(500, CacheScope::Credential);
    let callers: Vec<_> = (0..64)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let failed = c.token("https://vault.azure.net", None).await.is_err();
                (failed, started.elapsed())
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for caller in callers {
        let (failed, waited) = caller.await.unwrap();
        assert!(failed);
        slowest = slowest.max(waited);
    }
    println!(
        "{:<58} {:>11} {:>2} {:>11.1} s",
        "64 callers, failing endpoint → endpoint calls (slowest)",
        endpoint.calls.load(Ordering::SeqCst),
        "",
        slowest.as_secs_f64()
    );

    // 4. The failure memory: the same key, right after that failure.
    let before = endpoint.calls.load(Ordering::SeqCst);
    let t = Instant::now();
    for _ in 0..10_000 {
        assert!(c.token("https://vault.azure.net", None).await.is_err());
    }
    println!(
        "{:<58} {:>11} {:>2} {:>11.1} ms",
        "10,000 requests inside the failure memory → endpoint calls",
        endpoint.calls.load(Ordering::SeqCst) - before,
        "",
        t.elapsed().as_secs_f64() * 1e3
    );

    // 5. Two credentials with equivalent options share the process cache.
    let (a, endpoint_a) = credential(200, CacheScope::Process);
    let (b, endpoint_b) = credential(200, CacheScope::Process);
    a.token("https://storage.azure.com", None).await.unwrap();
    b.token("https://storage.azure.com", None).await.unwrap();
    println!(
        "{:<58} {:>11} {:>2} {:>14}",
        "two equivalent credentials, one resource → endpoint calls",
        endpoint_a.calls.load(Ordering::SeqCst) + endpoint_b.calls.load(Ordering::SeqCst),
        "",
        "-"
    );
}
