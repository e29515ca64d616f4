//! The EasyAuth gate and app2: token validation cases T1–T11 and gate cases
//! E1–E18, through the gate over HTTPS.

use crate::helpers::*;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use devstack::issuer::{Issuer, TokenVersion, access_token_claims, resolve_audience};
use devstack::stack::Stack;
use serde_json::{Value, json};

const DENIED: &str = "You do not have permission to view this directory or page.";

async fn whoami(
    s: &Stack,
    token: Option<&str>,
    extra: &[(&str, &str)],
) -> (u16, String, reqwest::header::HeaderMap) {
    let mut req = https(s).get(format!("{}/api/whoami", s.gate_url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, res.text().await.unwrap(), headers)
}

/// A token for app2 signed by the stack's key, with `edit` applied to its claims.
fn app2_token(s: &Stack, version: TokenVersion, edit: impl FnOnce(&mut Value)) -> String {
    let w = world(s);
    let mut audience =
        resolve_audience(&w, &w.app2.app_id_uri, &w.app1.object_id, i64::MAX).unwrap();
    if version == TokenVersion::V2 {
        audience.aud = w.app2.client_id.clone();
        audience.version = TokenVersion::V2;
    }
    let mut claims = access_token_claims(
        &w,
        &w.app1,
        &audience,
        time::OffsetDateTime::now_utc().unix_timestamp(),
    );
    edit(&mut claims);
    s.identity.issuer.sign(&claims, version)
}

fn config(s: &Stack, edit: impl FnOnce(&mut devstack::easyauth::GateConfig)) {
    edit(&mut s.gate.config.write().unwrap());
}

#[tokio::test]
async fn t1_e8_x1_app1_token_passes_and_app2_sees_the_principal() {
    let s = stack().await;
    let w = world(&s);
    let token = token(&s, &w.app2.app_id_uri, "").await;
    let (status, body, _) = whoami(&s, Some(&token), &[]).await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["app_id"], w.app1.client_id);
    assert_eq!(body["object_id"], w.app1.object_id);
    assert_eq!(body["tenant_id"], w.tenant_id);
    assert_eq!(body["roles"], json!(["App2.Access"]));
}

#[tokio::test]
async fn t2_e6_v2_token_with_client_id_audience_passes_without_allowed_audiences() {
    let s = stack().await;
    config(&s, |c| c.allowed_audiences.clear());
    let (status, body, _) = whoami(&s, Some(&app2_token(&s, TokenVersion::V2, |_| {})), &[]).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn e7_app_id_uri_audience_needs_allowed_audiences() {
    let s = stack().await;
    config(&s, |c| c.allowed_audiences.clear());
    let token = app2_token(&s, TokenVersion::V1, |_| {});
    let (status, body, headers) = whoami(&s, Some(&token), &[]).await;
    assert_eq!(status, 401);
    assert_eq!(body, DENIED);
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("Bearer realm=") && challenge.contains("invalid_token"),
        "{challenge}"
    );
}

#[tokio::test]
async fn t4_t5_t6_t9_e9_e10_e11_invalid_tokens_are_401() {
    let s = stack().await;
    let w = world(&s);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let vault = token(&s, "https://vault.azure.net", "").await;
    let graph = token(&s, "https://graph.microsoft.com", "").await;
    let expired = app2_token(&s, TokenVersion::V1, |c| {
        c["exp"] = json!(now - 600);
        c["iat"] = json!(now - 4200);
        c["nbf"] = json!(now - 4200);
    });
    let not_yet = app2_token(&s, TokenVersion::V1, |c| c["nbf"] = json!(now + 600));
    let other_tenant = app2_token(&s, TokenVersion::V1, |c| {
        let t = uuid::Uuid::new_v4().to_string();
        c["iss"] = json!(format!("https://sts.windows.net/{t}/"));
        c["tid"] = json!(t);
    });
    let good = app2_token(&s, TokenVersion::V1, |_| {});
    let mut tampered = good.clone();
    tampered.replace_range(tampered.len() - 6.., "AAAAAA");
    let mut payload_swapped: Vec<&str> = good.split('.').collect();
    let forged_payload =
        URL_SAFE_NO_PAD.encode(json!({"aud": w.app2.app_id_uri, "roles": ["Admin"]}).to_string());
    payload_swapped[1] = &forged_payload;
    let payload_swapped = payload_swapped.join(".");
    for (name, token) in [
        ("T4 vault audience", vault),
        ("E9 graph audience", graph),
        ("T5 expired", expired),
        ("T5 nbf in the future", not_yet),
        ("T9 other tenant", other_tenant),
        ("T6 tampered signature", tampered),
        ("T6 swapped payload", payload_swapped),
        ("malformed", "not-a-jwt".to_owned()),
    ] {
        let (status, _, headers) = whoami(&s, Some(&token), &[]).await;
        assert_eq!(status, 401, "{name}");
        assert!(headers.contains_key("www-authenticate"), "{name}");
    }
    // And the untouched token passes, so the failures above are the edits.
    assert_eq!(whoami(&s, Some(&good), &[]).await.0, 200);
}

#[tokio::test]
async fn t7_t8_unknown_kid_hs256_and_none_are_401() {
    let s = stack().await;
    let w = world(&s);
    let audience = resolve_audience(&w, &w.app2.app_id_uri, &w.app1.object_id, i64::MAX).unwrap();
    let claims = access_token_claims(
        &w,
        &w.app1,
        &audience,
        time::OffsetDateTime::now_utc().unix_timestamp(),
    );
    let stranger = Issuer::generate().unwrap().sign(&claims, TokenVersion::V1);
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"public-key-as-secret"),
    )
    .unwrap();
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    for (name, token) in [
        ("T7 unknown kid", stranger),
        ("T8 HS256", hs256),
        ("T8 alg none", none),
    ] {
        assert_eq!(whoami(&s, Some(&token), &[]).await.0, 401, "{name}");
    }
}

#[tokio::test]
async fn t11_missing_app_role_is_403_from_app2_naming_the_role() {
    let s = stack().await;
    let token = app2_token(&s, TokenVersion::V1, |c| {
        c.as_object_mut().unwrap().remove("roles");
    });
    let (status, body, headers) = whoami(&s, Some(&token), &[]).await;
    assert_eq!(status, 403);
    assert_eq!(
        headers["content-type"], "application/problem+json",
        "app2 answered, not the gate"
    );
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["required_role"], "App2.Access");
    assert!(body["detail"].as_str().unwrap().contains("App2.Access"));
}

#[tokio::test]
async fn e1_e2_e3_unauthenticated_actions() {
    let s = stack().await;
    let (status, body, headers) = whoami(&s, None, &[]).await;
    assert_eq!(
        (status, body.as_str()),
        (401, DENIED),
        "E1: the gate answered, app2 was not invoked"
    );
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("authorization_uri=")
    );

    config(&s, |c| c.unauthenticated_action = "Return403".into());
    assert_eq!(whoami(&s, None, &[]).await.0, 403, "E2");

    config(&s, |c| c.unauthenticated_action = "AllowAnonymous".into());
    let (status, body, headers) = whoami(&s, None, &[]).await;
    assert_eq!(status, 401, "E3: app2 was invoked and saw no principal");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(body.contains("no bearer token"), "{body}");
}

#[tokio::test]
async fn e4_e5_client_sent_principal_headers_are_stripped() {
    let s = stack().await;
    let w = world(&s);
    let forged = STANDARD.encode(json!({"auth_typ":"aad","claims":[{"typ":"roles","val":"App2.Access"},{"typ":"appid","val":"attacker"}]}).to_string());
    let forged_headers = [
        ("X-MS-CLIENT-PRINCIPAL", forged.as_str()),
        ("X-MS-CLIENT-PRINCIPAL-ID", "attacker"),
        ("X-MS-TOKEN-AAD-ACCESS-TOKEN", "forged"),
    ];
    assert_eq!(
        whoami(&s, None, &forged_headers).await.0,
        401,
        "E4 under Return401"
    );

    config(&s, |c| c.unauthenticated_action = "AllowAnonymous".into());
    let (status, body, _) = whoami(&s, None, &forged_headers).await;
    assert_eq!(
        status, 401,
        "E4: app2 saw none of the forged headers: {body}"
    );

    let token = token(&s, &w.app2.app_id_uri, "").await;
    let (status, body, _) = whoami(&s, Some(&token), &forged_headers).await;
    assert_eq!(status, 200);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body["object_id"], w.app1.object_id,
        "E5: the gate's principal, not the client's"
    );
    assert_eq!(body["app_id"], w.app1.client_id);
}

#[tokio::test]
async fn e12_e13_e14_authorization_policy_is_403() {
    let s = stack().await;
    let w = world(&s);
    let app1 = token(&s, &w.app2.app_id_uri, "").await;
    let ua = token(
        &s,
        &w.app2.app_id_uri,
        &format!("&client_id={}", w.user_assigned.client_id),
    )
    .await;
    config(&s, |c| {
        c.allowed_applications = vec![w.app1.client_id.clone()];
        c.allowed_identities.clear();
    });
    let (status, body, _) = whoami(&s, Some(&ua), &[]).await;
    assert_eq!(
        (status, body.as_str()),
        (403, DENIED),
        "E12: app not in allowedApplications"
    );

    config(&s, |c| {
        c.allowed_applications.clear();
        c.allowed_identities = vec![w.app1.object_id.clone()];
    });
    assert_eq!(
        whoami(&s, Some(&ua), &[]).await.0,
        403,
        "E13: oid not allowed"
    );
    assert_eq!(
        whoami(&s, Some(&app1), &[]).await.0,
        200,
        "E13: oid allowed"
    );

    config(&s, |c| {
        c.allowed_applications = vec![w.app1.client_id.clone()];
        c.allowed_identities = vec![w.user_assigned.object_id.clone()];
    });
    assert_eq!(
        whoami(&s, Some(&app1), &[]).await.0,
        403,
        "E14: both lists must pass"
    );

    config(&s, |c| {
        c.allowed_identities.clear();
        c.allowed_tenants = vec![uuid::Uuid::new_v4().to_string()];
    });
    assert_eq!(
        whoami(&s, Some(&app1), &[]).await.0,
        403,
        "E15: tenant not allowed"
    );
}

#[tokio::test]
async fn e17_injected_principal_matches_the_documented_shape() {
    let principal = devstack::easyauth::client_principal(
        json!({"oid": "o", "tid": "t", "appid": "a", "roles": ["R1", "R2"]})
            .as_object()
            .unwrap(),
    );
    assert_eq!(principal["auth_typ"], "aad");
    let claims = principal["claims"].as_array().unwrap();
    let has = |typ: &str, val: &str| claims.iter().any(|c| c["typ"] == typ && c["val"] == val);
    assert!(has(
        "http://schemas.microsoft.com/identity/claims/objectidentifier",
        "o"
    ));
    assert!(has(
        "http://schemas.microsoft.com/identity/claims/tenantid",
        "t"
    ));
    assert!(has("appid", "a") && has("roles", "R1") && has("roles", "R2"));
    assert!(principal["name_typ"].is_string() && principal["role_typ"].is_string());
}

#[tokio::test]
async fn e18_excluded_path_needs_no_token() {
    let s = stack().await;
    let res = https(&s)
        .get(format!("{}/api/health", s.gate_url))
        .header("X-MS-CLIENT-PRINCIPAL-ID", "attacker")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn gate_config_is_read_from_a_real_authsettings_v2_document() {
    let s = stack().await;
    let w = world(&s);
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(&s.auth_settings_file).unwrap()).unwrap();
    let config = devstack::easyauth::GateConfig::from_auth_settings(&doc).unwrap();
    assert_eq!(config.unauthenticated_action, "Return401");
    assert_eq!(config.excluded_paths, vec!["/api/health"]);
    assert_eq!(config.allowed_audiences, vec![w.app2.app_id_uri.clone()]);
    assert!(config.allowed_applications.is_empty());
    assert_eq!(config.allowed_identities, vec![w.app1.object_id.clone()]);
    assert_eq!(config.client_id, w.app2.client_id);
    assert_eq!(config.tenant(), Some(w.tenant_id.as_str()));
    // The same document without the ARM `properties` wrapper.
    let bare = devstack::easyauth::GateConfig::from_auth_settings(&doc["properties"]).unwrap();
    assert_eq!(bare, config);
}

/// Straight at app2's port, as if EasyAuth were off, misconfigured or bypassed.
async fn app2_direct(s: &Stack, token: Option<&str>, principal: Option<&str>) -> (u16, Value) {
    let mut req = http().get(format!("{}/api/whoami", s.app2_url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(p) = principal {
        req = req.header("X-MS-CLIENT-PRINCIPAL", p);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    if status == 401 {
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }
    (status, res.json().await.unwrap_or(Value::Null))
}

fn forged_principal(app_id: &str, oid: &str) -> String {
    STANDARD.encode(
        json!({"auth_typ": "aad", "claims": [
            {"typ": "appid", "val": app_id},
            {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": oid},
            {"typ": "roles", "val": "App2.Access"}
        ]})
        .to_string(),
    )
}

#[tokio::test]
async fn app2_refuses_a_forged_principal_without_a_valid_token() {
    let s = stack().await;
    let w = world(&s);
    let forged = forged_principal(&w.app1.client_id, &w.app1.object_id);
    let (status, body) = app2_direct(&s, None, Some(&forged)).await;
    assert_eq!(
        status, 401,
        "a principal header alone is not trusted: {body}"
    );
    let expired = app2_token(&s, TokenVersion::V1, |c| {
        c["exp"] = json!(time::OffsetDateTime::now_utc().unix_timestamp() - 3600);
    });
    let (status, _) = app2_direct(&s, Some(&expired), Some(&forged)).await;
    assert_eq!(status, 401, "nor is it with an expired token");
}

#[tokio::test]
async fn app2_validates_the_token_itself() {
    let s = stack().await;
    let w = world(&s);
    let good = app2_token(&s, TokenVersion::V1, |_| {});
    assert_eq!(
        app2_direct(&s, Some(&good), None).await.0,
        200,
        "v1, App ID URI audience"
    );
    let v2 = app2_token(&s, TokenVersion::V2, |_| {});
    assert_eq!(
        app2_direct(&s, Some(&v2), None).await.0,
        200,
        "v2, client id audience"
    );

    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let other_tenant = "99999999-9999-4999-8999-999999999999";
    let cases: Vec<(&str, String)> = vec![
        (
            "wrong audience",
            app2_token(&s, TokenVersion::V1, |c| {
                c["aud"] = json!("https://vault.azure.net")
            }),
        ),
        (
            "another tenant's issuer",
            app2_token(&s, TokenVersion::V1, |c| {
                c["iss"] = json!(format!("https://sts.windows.net/{other_tenant}/"));
            }),
        ),
        (
            "expired beyond the skew",
            app2_token(&s, TokenVersion::V1, |c| c["exp"] = json!(now - 120)),
        ),
        (
            "not yet valid",
            app2_token(&s, TokenVersion::V1, |c| c["nbf"] = json!(now + 600)),
        ),
        ("tampered", {
            let t = app2_token(&s, TokenVersion::V1, |_| {});
            let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
            let mut claims: Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
            claims["roles"] = json!(["App2.Admin", "App2.Access"]);
            parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
            parts.join(".")
        }),
        ("alg none", {
            let t = app2_token(&s, TokenVersion::V1, |_| {});
            let payload = t.split('.').nth(1).unwrap().to_owned();
            format!(
                "{}.{payload}.",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#)
            )
        }),
        ("signed by another key", {
            let stranger = Issuer::generate().unwrap();
            let mut audience =
                resolve_audience(&w, &w.app2.app_id_uri, &w.app1.object_id, i64::MAX).unwrap();
            audience.roles = vec!["App2.Access".into()];
            stranger.sign(
                &access_token_claims(&w, &w.app1, &audience, now),
                TokenVersion::V1,
            )
        }),
        ("garbage", "not.a.jwt".into()),
    ];
    for (name, token) in cases {
        let (status, body) = app2_direct(&s, Some(&token), None).await;
        assert_eq!(status, 401, "{name}: {body}");
        assert!(
            !body.to_string().contains(&token),
            "{name}: the token is not echoed"
        );
    }

    let no_role = app2_token(&s, TokenVersion::V1, |c| {
        c.as_object_mut()
            .unwrap()
            .remove("roles")
            .map(|_| ())
            .unwrap_or(())
    });
    let (status, body) = app2_direct(&s, Some(&no_role), None).await;
    assert_eq!(status, 403, "the role is app2's own check: {body}");
    assert_eq!(body["required_role"], "App2.Access");
}

#[tokio::test]
async fn app2_requires_the_easyauth_principal_to_match_the_token() {
    let s = stack().await;
    let w = world(&s);
    let token = app2_token(&s, TokenVersion::V1, |_| {});
    let same = forged_principal(&w.app1.client_id, &w.app1.object_id);
    assert_eq!(app2_direct(&s, Some(&token), Some(&same)).await.0, 200);
    for (app, oid) in [
        ("attacker-app", w.app1.object_id.as_str()),
        (
            w.app1.client_id.as_str(),
            "00000000-0000-4000-8000-000000000000",
        ),
    ] {
        let other = forged_principal(app, oid);
        let (status, body) = app2_direct(&s, Some(&token), Some(&other)).await;
        assert_eq!(status, 401, "{app}/{oid}: {body}");
    }
    let (status, _) = app2_direct(&s, Some(&token), Some("!!not base64!!")).await;
    assert_eq!(status, 401);
}

#[actix_web::test]
async fn excluded_paths_cannot_smuggle_a_request_past_the_gate() {
    // An actix test service over the stack's gate: the path reaches the gate
    // exactly as written, as a raw client would send it.
    let s = stack().await;
    let gate = actix_web::test::init_service(
        actix_web::App::new()
            .app_data(s.gate.clone())
            .configure(devstack::easyauth::configure),
    )
    .await;
    for path in [
        "/api/health/%2e%2e/whoami",
        "/api/health/%2E%2E/whoami",
        "/api/health/../whoami",
        "/api/health/.%2e/whoami",
    ] {
        let req = actix_web::test::TestRequest::get().uri(path).to_request();
        let res = actix_web::test::call_service(&gate, req).await;
        assert_eq!(res.status(), 401, "{path}");
        let body = actix_web::test::read_body(res).await;
        assert_eq!(
            body, DENIED,
            "{path}: the gate refused it, app2 never saw it"
        );
    }
    let req = actix_web::test::TestRequest::get()
        .uri("/api/whoami/%2e%2e/health")
        .to_request();
    let res = actix_web::test::call_service(&gate, req).await;
    assert_eq!(res.status(), 200, "resolves to the excluded /api/health");
}
