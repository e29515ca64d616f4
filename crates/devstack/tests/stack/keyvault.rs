//! The Key Vault stand-in: challenge, validation, RBAC, errors, and the
//! official Rust SDK's request shapes (trailing slash, any api-version).

use crate::helpers::*;
use devstack::stack::Stack;
use serde_json::{Value, json};

async fn kv(
    s: &Stack,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = https(s).request(method, format!("{}{path}", s.keyvault_url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, res.json().await.unwrap_or(Value::Null), headers)
}

#[tokio::test]
async fn x3_unauthenticated_request_gets_the_sdk_challenge() {
    let s = stack().await;
    let w = world(&s);
    // The SDK's probe: no Authorization, no body, on any path.
    for path in [
        "/secrets/app1-demo-secret/?api-version=2025-07-01",
        "/secrets/anything?api-version=7.0",
        "/whatever",
    ] {
        let (status, body, headers) = kv(&s, reqwest::Method::GET, path, None, None).await;
        assert_eq!(status, 401, "{path}");
        assert_eq!(
            headers["www-authenticate"],
            format!("Bearer authorization=\"https://login.microsoftonline.com/{}\", resource=\"https://vault.azure.net\"", w.tenant_id).as_str()
        );
        assert_eq!(body["error"]["code"], "Unauthorized");
    }
}

#[tokio::test]
async fn reads_seed_secret_latest_and_by_version() {
    let s = stack().await;
    let t = token(&s, "https://vault.azure.net", "").await;
    let (status, latest, _) = kv(
        &s,
        reqwest::Method::GET,
        "/secrets/app1-demo-secret/?api-version=2025-07-01",
        Some(&t),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(latest["value"], "devstack-demo-value-not-a-real-secret");
    assert_eq!(latest["contentType"], "text/plain");
    assert_eq!(latest["attributes"]["enabled"], true);
    let id = latest["id"].as_str().unwrap();
    let version = id.rsplit('/').next().unwrap();
    assert_eq!(version.len(), 32);
    assert!(id.starts_with("https://127.0.0.1:"));
    let (status, by_version, _) = kv(
        &s,
        reqwest::Method::GET,
        &format!("/secrets/APP1-DEMO-SECRET/{version}?api-version=7.4"),
        Some(&t),
        None,
    )
    .await;
    assert_eq!(status, 200, "names are case-insensitive, any api-version");
    assert_eq!(by_version["value"], latest["value"]);
    let (status, _, _) = kv(
        &s,
        reqwest::Method::GET,
        "/secrets/app1-demo-secret?api-version=2025-07-01",
        Some(&t),
        None,
    )
    .await;
    assert_eq!(status, 200, "no trailing slash works too");
}

#[tokio::test]
async fn missing_secret_and_bad_name() {
    let s = stack().await;
    let t = token(&s, "https://vault.azure.net", "").await;
    let (status, body, _) = kv(
        &s,
        reqwest::Method::GET,
        "/secrets/nope/?api-version=2025-07-01",
        Some(&t),
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "SecretNotFound");
    let (status, body, _) = kv(
        &s,
        reqwest::Method::GET,
        "/secrets/bad_name/?api-version=2025-07-01",
        Some(&t),
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "BadParameter");
}

#[tokio::test]
async fn rbac_secrets_user_may_read_but_not_write() {
    let s = stack().await;
    let w = world(&s);
    let t = token(&s, "https://vault.azure.net", "").await;
    let (status, body, _) = kv(
        &s,
        reqwest::Method::PUT,
        "/secrets/new-one?api-version=2025-07-01",
        Some(&t),
        Some(json!({"value": "v"})),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "Forbidden");
    assert_eq!(body["error"]["innererror"]["code"], "ForbiddenByRbac");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("oid={}", w.app1.object_id)),
        "{message}"
    );
    assert!(
        message.contains("Microsoft.KeyVault/vaults/secrets/setSecret/action"),
        "{message}"
    );
    assert!(message.contains("Caller is not authorized to perform action on resource."));

    // An officer may write; the new version becomes the latest.
    s.world.write().unwrap().vault_role_assignments.push((
        w.app1.object_id.clone(),
        devstack::world::VaultRole::SecretsOfficer,
    ));
    let (status, set, _) = kv(
        &s,
        reqwest::Method::PUT,
        "/secrets/new-one?api-version=2025-07-01",
        Some(&t),
        Some(json!({"value": "v2", "contentType": "text/plain"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(set["value"], "v2");
    let (_, list, _) = kv(
        &s,
        reqwest::Method::GET,
        "/secrets?api-version=2025-07-01",
        Some(&t),
        None,
    )
    .await;
    let names: Vec<&str> = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().rsplit('/').next().unwrap())
        .collect();
    assert!(
        names.contains(&"new-one") && names.contains(&"app1-demo-secret"),
        "{names:?}"
    );
    assert!(
        list["value"][0].get("value").is_none(),
        "list never returns values"
    );
}

#[tokio::test]
async fn user_assigned_identity_without_role_is_forbidden_by_rbac() {
    let s = stack().await;
    let w = world(&s);
    let t = token(
        &s,
        "https://vault.azure.net",
        &format!("&client_id={}", w.user_assigned.client_id),
    )
    .await;
    let (status, body, _) = kv(
        &s,
        reqwest::Method::GET,
        "/secrets/app1-demo-secret/?api-version=2025-07-01",
        Some(&t),
        None,
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&w.user_assigned.object_id)
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("getSecret/action")
    );
}

#[tokio::test]
async fn wrong_audience_or_bad_token_is_401_with_challenge() {
    let s = stack().await;
    let storage = token(&s, "https://storage.azure.com", "").await;
    let (status, body, headers) = kv(
        &s,
        reqwest::Method::GET,
        "/secrets/app1-demo-secret/",
        Some(&storage),
        None,
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("AKV10022")
    );
    assert!(headers.contains_key("www-authenticate"));
    let (status, _, _) = kv(
        &s,
        reqwest::Method::GET,
        "/secrets/app1-demo-secret/",
        Some("garbage"),
        None,
    )
    .await;
    assert_eq!(status, 401);
}
