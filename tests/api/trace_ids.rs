//! Trace context at the default settings: no exporter, so app1 builds no
//! spans, yet the caller's trace still reaches every hop.

use crate::helpers::*;
use wiremock::matchers::{method, query_param};
use wiremock::{Mock, ResponseTemplate};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// The `traceparent` the identity endpoint got for `resource`.
async fn sent_for(app: &TestApp, resource: &str) -> String {
    let requests = app.identity.received_requests().await.unwrap();
    let request = requests
        .iter()
        .find(|r| {
            r.url
                .query_pairs()
                .any(|(k, v)| k == "resource" && v == resource)
        })
        .unwrap_or_else(|| panic!("no request for {resource}"));
    request.headers["traceparent"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn without_an_exporter_the_callers_trace_still_reaches_the_identity_endpoint() {
    let app = spawn_app().await;
    for resource in ["https://vault.azure.net", "https://storage.azure.com"] {
        Mock::given(method("GET"))
            .and(query_param("resource", resource))
            .respond_with(ResponseTemplate::new(200).set_body_json(token_body(resource, 3600)))
            .mount(&app.identity)
            .await;
    }

    // A caller's trace is continued: its trace id, a span id of app1's own.
    let res = app
        .client
        .get(format!(
            "{}/api/token?resource=https://vault.azure.net",
            app.address
        ))
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let sent = sent_for(&app, "https://vault.azure.net").await;
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts.len(), 4, "{sent}");
    assert_eq!(parts[1], TRACE_ID, "the caller's trace");
    assert_ne!(parts[2], CALLER_SPAN, "app1's own span id");
    assert_eq!(parts[3], "01", "the caller's flags");

    // Without one, a trace starts here, and the next hop still gets it.
    let res = app
        .get("/api/token?resource=https://storage.azure.com")
        .await;
    assert_eq!(res.status(), 200);
    let fresh = sent_for(&app, "https://storage.azure.com").await;
    assert!(fresh.starts_with("00-") && fresh.len() == 55, "{fresh}");
    assert!(!fresh.contains(TRACE_ID));
}

/// The Azure SDK's own requests continue the trace too: with no exporter its
/// spans are no-ops that carry the invocation's context onto each request.
#[tokio::test]
async fn without_an_exporter_key_vault_requests_carry_the_callers_trace() {
    use actix_web::{HttpRequest, HttpResponse, web};
    use std::sync::{Arc, Mutex};
    devstack::tls::install_crypto_provider();
    let tls = devstack::tls::LocalTls::generate().unwrap();
    let dir = std::env::temp_dir().join(format!("trace-ids-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let files = tls.write(&dir).unwrap();

    // A vault that asks for a token first (as Key Vault does), then answers,
    // and remembers each request's traceparent.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let vault = actix_web::HttpServer::new(move || {
        let record = record.clone();
        actix_web::App::new().default_service(web::to(move |req: HttpRequest| {
            let record = record.clone();
            async move {
                let header = |name| {
                    req.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                record
                    .lock()
                    .unwrap()
                    .push(header("traceparent").unwrap_or_default());
                if header("authorization").is_none() {
                    return HttpResponse::Unauthorized()
                        .insert_header((
                            "WWW-Authenticate",
                            r#"Bearer authorization="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000", resource="https://vault.azure.net""#,
                        ))
                        .finish();
                }
                HttpResponse::Ok().json(serde_json::json!({
                    "value": "not-shown",
                    "id": format!("https://127.0.0.1:{port}/secrets/app1-demo-secret/0123456789abcdef0123456789abcdef"),
                    "attributes": {"enabled": true}
                }))
            }
        }))
    })
    .disable_signals()
    .workers(1)
    .listen_rustls_0_23(listener, tls.server_config().unwrap())
    .unwrap()
    .run();
    let vault_handle = vault.handle();
    tokio::spawn(vault);

    let app = spawn_app_with(&[
        ("KEYVAULT_URL", &format!("https://127.0.0.1:{port}")),
        ("KEYVAULT_SKIP_CHALLENGE_RESOURCE_CHECK", "true"),
        ("EXTRA_CA_CERT", files.ca_cert.to_str().unwrap()),
    ])
    .await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(token_body("https://vault.azure.net", 3600)),
        )
        .mount(&app.identity)
        .await;

    let res = app
        .client
        .get(format!("{}/api/secrets/app1-demo-secret", app.address))
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .send()
        .await
        .unwrap();
    let status = res.status();
    assert_eq!(status, 200, "{}", res.text().await.unwrap());
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        2,
        "the challenge, then the authorized call: {seen:?}"
    );
    for sent in &seen {
        assert!(sent.starts_with(&format!("00-{TRACE_ID}-")), "{sent:?}");
        assert!(!sent.contains(CALLER_SPAN), "app1's span id: {sent}");
    }
    vault_handle.stop(false).await;
    let _ = std::fs::remove_dir_all(&dir);
}
