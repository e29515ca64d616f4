use devstack::stack::{Stack, StackOptions};
use serde_json::Value;
use std::path::PathBuf;

/// The workspace root (Azurite is cached in `<root>/.devstack/cache`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "devstack-test-{name}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A stack without Azurite (fast); `with_azurite` for storage tests.
pub async fn stack() -> Stack {
    start(false, |_| {}).await
}

pub async fn start(azurite: bool, edit: impl FnOnce(&mut StackOptions)) -> Stack {
    let mut options = StackOptions::new(temp_dir("stack"));
    options.azurite = azurite;
    options.cache_dir = Some(workspace_root().join(".devstack/cache"));
    edit(&mut options);
    Stack::start(options).await.expect("devstack starts")
}

/// A client that trusts devstack's CA.
pub fn https(stack: &Stack) -> reqwest::Client {
    devstack::tls::install_crypto_provider();
    reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(stack.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap()
}

pub fn http() -> reqwest::Client {
    devstack::tls::install_crypto_provider();
    reqwest::Client::new()
}

/// GET on the 2019 endpoint; returns (status, body).
pub async fn identity_get(stack: &Stack, query: &str, header: Option<&str>) -> (u16, Value) {
    let mut req = http().get(format!("{}/msi/token?{query}", stack.identity_url));
    if let Some(h) = header {
        req = req.header("X-IDENTITY-HEADER", h);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// A token for `resource` from the 2019 endpoint, with an optional selector query.
pub async fn token(stack: &Stack, resource: &str, selector: &str) -> String {
    let query = format!(
        "api-version=2019-08-01&resource={}{selector}",
        url::form_urlencoded::byte_serialize(resource.as_bytes()).collect::<String>()
    );
    let (status, body) = identity_get(stack, &query, Some(&stack.identity.identity_header)).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// Unverified claims (tests only).
pub fn claims(token: &str) -> Value {
    Value::Object(devstack::validate::unverified_claims(token).unwrap())
}

pub fn world(stack: &Stack) -> devstack::world::World {
    stack.world.read().unwrap().clone()
}

/// The identity endpoint's request log.
pub async fn recorded_requests(stack: &Stack) -> Value {
    http()
        .get(format!("{}/admin/requests", stack.identity_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
