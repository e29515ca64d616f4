//! Test harness: a fake identity endpoint, JWT builders and `spawn_app`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use handler::Application;
use handler::configuration::Settings;
use serde_json::{Value, json};
use std::collections::HashMap;
use wiremock::MockServer;

pub const IDENTITY_HEADER: &str = "test-identity-header-5b1f";
pub const UA_CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
pub const SYSTEM_OID: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

/// A JWT-shaped token with the given claims. The signature is a marker so
/// tests can check it never leaks.
pub fn jwt(claims: Value) -> String {
    format!(
        "{}.{}.SIGNATURE-MUST-NOT-LEAK",
        URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"RS256","kid":"k1"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A successful App Service response for `resource`, valid for `lifetime` seconds.
pub fn token_body(resource: &str, lifetime: i64) -> Value {
    let exp = now() + lifetime;
    json!({
        "access_token": jwt(json!({
            "aud": resource, "iss": "https://sts.windows.net/tid/", "appid": "app1-client",
            "oid": SYSTEM_OID, "sub": SYSTEM_OID, "tid": "tid", "idtyp": "app",
            "roles": ["App2.Access"], "exp": exp, "ver": "1.0"
        })),
        "expires_on": exp.to_string(),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": "app1-client"
    })
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub identity: MockServer,
    handle: actix_web::dev::ServerHandle,
}

impl TestApp {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{}", self.address, path))
            .send()
            .await
            .expect("request to handler")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        tokio::spawn(async move { handle.stop(false).await });
    }
}

/// Starts the handler on a free port against a fresh mock identity endpoint.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    handler::http_client::install_crypto_provider();
    let identity = MockServer::start().await;
    let mut env: HashMap<String, String> = HashMap::from([
        ("FUNCTIONS_CUSTOMHANDLER_PORT".into(), "0".into()),
        (
            "IDENTITY_ENDPOINT".into(),
            format!("{}/msi/token", identity.uri()),
        ),
        ("IDENTITY_HEADER".into(), IDENTITY_HEADER.into()),
        // An app2 audience, so TOKEN_ALLOWED_RESOURCES' default includes it.
        ("APP2_RESOURCE".into(), "api://app2".into()),
        // Short retries keep failure tests fast on real time.
        ("IDENTITY_MAX_RETRIES".into(), "1".into()),
        ("IDENTITY_DEADLINE_MS".into(), "5000".into()),
    ]);
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    let settings = Settings::from_sources(None, env).expect("valid test settings");
    let app = Application::build(settings).expect("handler binds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::new(),
        identity,
        handle,
    }
}

/// The identity endpoint answers for any resource it is asked for.
pub async fn tokens_for_any_resource(identity: &MockServer) {
    use wiremock::matchers::{method, path};
    wiremock::Mock::given(method("GET"))
        .and(path("/msi/token"))
        .respond_with(|req: &wiremock::Request| {
            let resource = req
                .url
                .query_pairs()
                .find(|(k, _)| k == "resource")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            wiremock::ResponseTemplate::new(200).set_body_json(token_body(&resource, 3600))
        })
        .mount(identity)
        .await;
}
