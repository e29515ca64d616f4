//! A cold burst: the first callers of a validator that holds no keys yet all
//! wait for the one JWKS fetch, and a failed fetch says so (issue 22).

use crate::helpers::*;
use actix_web::{App, HttpResponse, HttpServer, web};
use devstack::issuer::{TokenVersion, access_token_claims, resolve_audience};
use devstack::validate::{Rejection, TokenValidator};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const BURST: usize = 64;

/// Sends `BURST` requests at once; returns every status.
async fn burst(requests: impl Fn() -> reqwest::RequestBuilder) -> Vec<u16> {
    let sends = (0..BURST).map(|_| {
        let request = requests();
        async move { request.send().await.unwrap().status().as_u16() }
    });
    futures_util::future::join_all(sends).await
}

#[tokio::test]
async fn a_cold_gate_app2_and_vault_accept_a_burst_of_valid_tokens() {
    let s = stack().await;
    let w = world(&s);
    let app2 = token(&s, &w.app2.app_id_uri, "").await;
    let vault = token(&s, "https://vault.azure.net", "").await;
    let client = https(&s);

    let whoami = burst(|| {
        client
            .get(format!("{}/api/whoami", s.gate_url))
            .bearer_auth(&app2)
    })
    .await;
    assert!(
        whoami.iter().all(|&status| status == 200),
        "gate + app2: {whoami:?}"
    );

    let secrets = burst(|| {
        client
            .get(format!(
                "{}/secrets/app1-demo-secret/?api-version=2025-07-01",
                s.keyvault_url
            ))
            .bearer_auth(&vault)
    })
    .await;
    assert!(
        secrets.iter().all(|&status| status == 200),
        "vault: {secrets:?}"
    );
}

/// An issuer in front of the stack's keys that answers after a pause (or
/// with 500), and counts how often its discovery document is fetched.
async fn slow_issuer(jwks: serde_json::Value, fail: bool) -> (String, Arc<AtomicUsize>) {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counted = fetches.clone();
    let server = HttpServer::new(move || {
        let (counted, jwks) = (counted.clone(), jwks.clone());
        App::new()
            .route(
                "/{tenant}/.well-known/openid-configuration",
                web::get().to(move |req: actix_web::HttpRequest| {
                    let counted = counted.clone();
                    async move {
                        counted.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        if fail {
                            return HttpResponse::InternalServerError().finish();
                        }
                        let host = req.connection_info().host().to_owned();
                        HttpResponse::Ok()
                            .json(serde_json::json!({"jwks_uri": format!("http://{host}/keys")}))
                    }
                }),
            )
            .route(
                "/keys",
                web::get().to(move || {
                    let jwks = jwks.clone();
                    async move { HttpResponse::Ok().json(jwks) }
                }),
            )
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let url = format!("http://127.0.0.1:{}", server.addrs()[0].port());
    tokio::spawn(server.run());
    (url, fetches)
}

/// A cold validator of the stack's tenant, over a slow issuer serving the
/// stack's keys (or failing, with `fail`), and its count of fetches.
async fn slow_validator(
    s: &devstack::stack::Stack,
    fail: bool,
) -> (TokenValidator, Arc<AtomicUsize>) {
    let tenant = world(s).tenant_id;
    let jwks = s
        .identity
        .issuer
        .jwks(&devstack::issuer::v1_issuer(&tenant));
    let (authority, fetches) = slow_issuer(jwks, fail).await;
    (TokenValidator::new(authority, tenant), fetches)
}

/// app1's claims for app2, as the issuer would put them in a token now.
fn app2_claims(s: &devstack::stack::Stack) -> serde_json::Value {
    let w = world(s);
    let audience = resolve_audience(&w, &w.app2.app_id_uri, &w.app1.object_id, i64::MAX).unwrap();
    access_token_claims(
        &w,
        &w.app1,
        &audience,
        time::OffsetDateTime::now_utc().unix_timestamp(),
    )
}

fn app2_token_and_audiences(s: &devstack::stack::Stack) -> (String, Vec<String>, Vec<String>) {
    let w = world(s);
    let token = s.identity.issuer.sign(&app2_claims(s), TokenVersion::V1);
    let issuers = vec![devstack::issuer::v1_issuer(&w.tenant_id)];
    (token, vec![w.app2.app_id_uri.clone()], issuers)
}

#[tokio::test]
async fn callers_during_the_first_fetch_wait_for_it_and_share_it() {
    let s = stack().await;
    let (validator, fetches) = slow_validator(&s, false).await;
    let (token, audiences, issuers) = app2_token_and_audiences(&s);

    let outcomes = futures_util::future::join_all(
        (0..BURST).map(|_| validator.validate(&token, &audiences, &issuers)),
    )
    .await;
    for outcome in &outcomes {
        assert!(outcome.is_ok(), "{outcome:?}");
    }
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "one fetch for the whole burst"
    );
}

#[tokio::test]
async fn a_failed_fetch_is_remembered_and_reported_as_one() {
    let s = stack().await;
    let (validator, fetches) = slow_validator(&s, true).await;
    let (token, audiences, issuers) = app2_token_and_audiences(&s);

    let outcomes = futures_util::future::join_all(
        (0..BURST).map(|_| validator.validate(&token, &audiences, &issuers)),
    )
    .await;
    for outcome in &outcomes {
        assert!(
            matches!(outcome, Err(Rejection::Keys(_))),
            "a failed fetch, not an unknown key: {outcome:?}"
        );
    }
    let again = validator.validate(&token, &audiences, &issuers).await;
    let Err(Rejection::Keys(text)) = &again else {
        panic!("{again:?}");
    };
    assert!(text.contains("next is allowed in"), "{text}");
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "remembered: no new fetch"
    );
}

#[tokio::test]
async fn an_unknown_kid_after_a_successful_fetch_is_refused_without_refetching() {
    let s = stack().await;
    let (validator, fetches) = slow_validator(&s, false).await;
    let (token, audiences, issuers) = app2_token_and_audiences(&s);
    validator
        .validate(&token, &audiences, &issuers)
        .await
        .unwrap();

    let stranger = devstack::issuer::Issuer::generate().unwrap();
    let foreign = stranger.sign(&app2_claims(&s), TokenVersion::V1);
    for _ in 0..10 {
        let outcome = validator.validate(&foreign, &audiences, &issuers).await;
        assert!(
            matches!(outcome, Err(Rejection::UnknownKid(_))),
            "{outcome:?}"
        );
    }
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "keys fetched moments ago are not fetched again for an unknown kid"
    );
}
