//! The identity endpoint and issuer: spec cases I4–I22 from the server side,
//! the token claim sets, discovery, fault injection, and app1's own provider
//! against it (X1).

use crate::helpers::*;
use serde_json::{Value, json};

#[tokio::test]
async fn i4_system_assigned_token_has_entra_v1_claims() {
    let s = stack().await;
    let w = world(&s);
    let (status, body) = identity_get(
        &s,
        "api-version=2019-08-01&resource=https://vault.azure.net",
        Some(&s.identity.identity_header),
    )
    .await;
    assert_eq!(status, 200);
    // Shape the SDKs need: digit-string expires_on, token_type and resource present.
    assert!(
        body["expires_on"]
            .as_str()
            .unwrap()
            .bytes()
            .all(|b| b.is_ascii_digit())
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["resource"], "https://vault.azure.net");
    assert_eq!(body["client_id"], w.app1.client_id);
    assert!(body.get("expires_in").is_none(), "expires_in is IMDS-only");

    let c = claims(body["access_token"].as_str().unwrap());
    assert_eq!(c["aud"], "https://vault.azure.net");
    assert_eq!(
        c["iss"],
        format!("https://sts.windows.net/{}/", w.tenant_id)
    );
    assert_eq!(c["appid"], w.app1.client_id);
    assert_eq!(c["appidacr"], "2");
    assert_eq!(c["oid"], w.app1.object_id);
    assert_eq!(c["sub"], c["oid"]);
    assert_eq!(c["tid"], w.tenant_id);
    assert_eq!(c["idtyp"], "app");
    assert_eq!(c["ver"], "1.0");
    assert_eq!(c["xms_mirid"], w.app1.resource_id);
    assert_eq!(
        c["exp"].as_i64().unwrap().to_string(),
        body["expires_on"].as_str().unwrap()
    );
    assert!(c["nbf"].as_i64().unwrap() <= c["iat"].as_i64().unwrap() + 1);
    assert!(c.get("roles").is_none(), "no app roles on the vault");
}

#[tokio::test]
async fn i5_selectors_pick_the_user_assigned_identity() {
    let s = stack().await;
    let w = world(&s);
    let ua = &w.user_assigned;
    let rid = url::form_urlencoded::byte_serialize(ua.resource_id.as_bytes()).collect::<String>();
    for selector in [
        format!("&client_id={}", ua.client_id),
        format!("&object_id={}", ua.object_id),
        format!("&principal_id={}", ua.object_id),
        format!("&mi_res_id={rid}"),
    ] {
        let c = claims(&token(&s, "https://storage.azure.com/", &selector).await);
        assert_eq!(c["oid"], ua.object_id, "{selector}");
        assert_eq!(c["xms_mirid"], ua.resource_id);
        assert_eq!(
            c["aud"], "https://storage.azure.com/",
            "a trailing slash is kept"
        );
    }
}

#[tokio::test]
async fn unknown_or_ambiguous_selector_is_the_platform_400() {
    let s = stack().await;
    let hdr = s.identity.identity_header.clone();
    for query in [
        "api-version=2019-08-01&resource=https://vault.azure.net&client_id=00000000-0000-0000-0000-000000000000".to_string(),
        format!("api-version=2019-08-01&resource=r&client_id={}&object_id={}", world(&s).app1.client_id, world(&s).app1.object_id),
        "api-version=2019-08-01&resource=r&msi_res_id=/subscriptions/x".to_string(),
    ] {
        let (status, body) = identity_get(&s, &query, Some(&hdr)).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(body["statusCode"], 400);
        assert_eq!(body["message"], "Unable to load the proper Managed Identity.");
        assert!(body["correlationId"].as_str().unwrap().len() == 36);
        assert!(body.get("access_token").is_none());
    }
}

#[tokio::test]
async fn i7_legacy_protocol_uses_secret_header_and_clientid() {
    let s = stack().await;
    let w = world(&s);
    let url = format!(
        "{}/MSI/token/?api-version=2017-09-01&resource=https://vault.azure.net&clientid={}",
        s.identity_url, w.user_assigned.client_id
    );
    let ok: Value = http()
        .get(&url)
        .header("secret", &s.identity.msi_secret)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        claims(ok["access_token"].as_str().unwrap())["oid"],
        w.user_assigned.object_id
    );
    let wrong = http()
        .get(&url)
        .header("secret", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 400);
    // The 2019 header is not the 2017 one.
    let other = http()
        .get(&url)
        .header("X-IDENTITY-HEADER", &s.identity.identity_header)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 400);
}

#[tokio::test]
async fn i20_resource_may_be_percent_encoded_or_plain() {
    let s = stack().await;
    let hdr = s.identity.identity_header.clone();
    let (_, plain) = identity_get(
        &s,
        "api-version=2019-08-01&resource=https://vault.azure.net",
        Some(&hdr),
    )
    .await;
    let (_, encoded) = identity_get(
        &s,
        "api-version=2019-08-01&resource=https%3A%2F%2Fvault.azure.net",
        Some(&hdr),
    )
    .await;
    assert_eq!(plain["resource"], encoded["resource"]);
    assert_eq!(
        claims(encoded["access_token"].as_str().unwrap())["aud"],
        "https://vault.azure.net"
    );
}

#[tokio::test]
async fn i21_missing_or_wrong_header_gets_no_token() {
    let s = stack().await;
    for header in [None, Some("wrong")] {
        let (status, body) = identity_get(
            &s,
            "api-version=2019-08-01&resource=https://vault.azure.net",
            header,
        )
        .await;
        assert_eq!(status, 400);
        assert!(body.get("access_token").is_none());
        assert_eq!(body["statusCode"], 400);
    }
}

#[tokio::test]
async fn unsupported_api_version_is_refused() {
    let s = stack().await;
    let (status, body) = identity_get(
        &s,
        "api-version=2017-09-01&resource=r",
        Some(&s.identity.identity_header),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("UnsupportedApiVersion")
    );
}

#[tokio::test]
async fn i22_imds_requires_metadata_header_and_returns_expires_in() {
    let s = stack().await;
    let url = format!(
        "{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/",
        s.identity_url
    );
    let no_header = http().get(&url).send().await.unwrap();
    assert_eq!(no_header.status(), 400);
    let body: Value = no_header.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": "bad_request_102", "error_description": "Required metadata header not specified"})
    );
    let ok: Value = http()
        .get(&url)
        .header("Metadata", "true")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ok["expires_in"], "3600");
    assert!(ok["access_token"].is_string());
}

#[tokio::test]
async fn app2_tokens_carry_assigned_roles_and_follow_the_token_version() {
    let s = stack().await;
    let w = world(&s);
    // v1 (default): aud is the requested App ID URI; roles from the assignment.
    let c = claims(&token(&s, &w.app2.app_id_uri, "").await);
    assert_eq!(c["aud"], w.app2.app_id_uri);
    assert_eq!(c["roles"], json!(["App2.Access"]));
    // The user-assigned identity holds nothing.
    let ua = claims(
        &token(
            &s,
            &w.app2.app_id_uri,
            &format!("&client_id={}", w.user_assigned.client_id),
        )
        .await,
    );
    assert!(ua.get("roles").is_none());

    // accessTokenAcceptedVersion = 2: aud is the client id, v2 issuer, azp.
    s.world.write().unwrap().app2.token_version = 2;
    let c = claims(&token(&s, &w.app2.app_id_uri, "").await);
    assert_eq!(c["aud"], w.app2.client_id);
    assert_eq!(
        c["iss"],
        format!("https://login.microsoftonline.com/{}/v2.0", w.tenant_id)
    );
    assert_eq!(c["azp"], w.app1.client_id);
    assert_eq!(c["ver"], "2.0");
    assert!(c.get("appid").is_none());
}

#[tokio::test]
async fn unknown_resource_is_aadsts500011() {
    let s = stack().await;
    let (status, body) = identity_get(
        &s,
        "api-version=2019-08-01&resource=api://not-registered",
        Some(&s.identity.identity_header),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS500011"),
        "{body}"
    );
}

#[tokio::test]
async fn discovery_and_jwks_match_the_tokens() {
    let s = stack().await;
    let w = world(&s);
    let token = token(&s, "https://vault.azure.net", "").await;
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    for (path, issuer) in [
        ("", format!("https://sts.windows.net/{}/", w.tenant_id)),
        (
            "/v2.0",
            format!("https://login.microsoftonline.com/{}/v2.0", w.tenant_id),
        ),
    ] {
        let meta: Value = http()
            .get(format!(
                "{}/{}{path}/.well-known/openid-configuration",
                s.identity_url, w.tenant_id
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(meta["issuer"], issuer);
        let jwks: Value = http()
            .get(meta["jwks_uri"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let key = &jwks["keys"][0];
        assert_eq!(key["kid"], header.kid.clone().unwrap());
        assert_eq!(
            (key["kty"].as_str(), key["use"].as_str(), key["e"].as_str()),
            (Some("RSA"), Some("sig"), Some("AQAB"))
        );
        assert_eq!(key["issuer"], issuer);
    }
    let other = http()
        .get(format!(
            "{}/{}/.well-known/openid-configuration",
            s.identity_url,
            uuid::Uuid::new_v4()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 400);
}

#[tokio::test]
async fn faults_fail_n_times_then_recover() {
    let s = stack().await;
    let admin = format!("{}/admin/faults", s.identity_url);
    let res = http()
        .post(&admin)
        .json(&json!({"resource": "https://vault.azure.net", "fail_times": 2, "status": 503, "retry_after": 1}))
        .send().await.unwrap();
    assert_eq!(res.status(), 204);
    let hdr = s.identity.identity_header.clone();
    let url = format!(
        "{}/msi/token?api-version=2019-08-01&resource=https://vault.azure.net",
        s.identity_url
    );
    for _ in 0..2 {
        let r = http()
            .get(&url)
            .header("X-IDENTITY-HEADER", &hdr)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
    }
    assert_eq!(
        http()
            .get(&url)
            .header("X-IDENTITY-HEADER", &hdr)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Other resources were never affected.
    let recorded = recorded_requests(&s).await;
    let statuses: Vec<u64> = recorded
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![503, 503, 200]);
    assert!(
        !recorded.to_string().contains(&hdr),
        "the request log keeps no header values"
    );
}

#[tokio::test]
async fn faults_can_delay_and_send_garbage_in_sequence() {
    let s = stack().await;
    http()
        .post(format!("{}/admin/faults", s.identity_url))
        .json(&json!({"steps": [
            {"status": 200, "garbage": true},
            {"status": 200, "delay_ms": 300}
        ]}))
        .send()
        .await
        .unwrap();
    let url = format!(
        "{}/msi/token?api-version=2019-08-01&resource=r",
        s.identity_url
    );
    let hdr = s.identity.identity_header.clone();
    let garbage = http()
        .get(&url)
        .header("X-IDENTITY-HEADER", &hdr)
        .send()
        .await
        .unwrap();
    assert!(garbage.text().await.unwrap().starts_with("<html>"));
    let started = std::time::Instant::now();
    http()
        .get(&url)
        .header("X-IDENTITY-HEADER", &hdr)
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
}

/// X1: app1's own token provider against the stand-in.
#[tokio::test]
async fn x1_handler_provider_gets_an_app2_token() {
    use azure_core::credentials::{Secret, TokenCredential};
    use handler::identity::*;
    let s = stack().await;
    let w = world(&s);
    handler::http_client::install_crypto_provider();
    let provider = IdentityProvider::new(
        IdentityConfig {
            identity_endpoint: Some(format!("{}/msi/token", s.identity_url)),
            identity_header: Some(Secret::from(s.identity.identity_header.clone())),
            ..Default::default()
        },
        std::sync::Arc::new(handler::http_client::build()),
    );
    let t = provider
        .get_token(&[&format!("{}/.default", w.app2.app_id_uri)], None)
        .await
        .unwrap();
    let c = claims(t.token.secret());
    assert_eq!(c["aud"], w.app2.app_id_uri);
    assert_eq!(c["appid"], w.app1.client_id);
    let recorded = recorded_requests(&s).await;
    assert_eq!(recorded[0]["query"]["resource"], w.app2.app_id_uri);
}

#[tokio::test]
async fn the_request_log_is_bounded() {
    let s = stack().await;
    let n = devstack::identity_endpoint::MAX_RECORDED_REQUESTS + 50;
    let client = http();
    for i in 0..n {
        // A wrong header: answered at once, logged all the same.
        let res = client
            .get(format!(
                "{}/msi/token?api-version=2019-08-01&resource=https://vault.azure.net&i={i}",
                s.identity_url
            ))
            .header("X-IDENTITY-HEADER", "wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400);
    }
    let recorded = recorded_requests(&s).await;
    let log = recorded.as_array().unwrap();
    assert_eq!(
        log.len(),
        devstack::identity_endpoint::MAX_RECORDED_REQUESTS
    );
    // The newest are kept.
    assert_eq!(log.last().unwrap()["query"]["i"], (n - 1).to_string());
}
