//! A named API in another tenant: the managed identity's token presented as
//! a client assertion to that tenant's token endpoint (a TLS stand-in here),
//! the exchanged token cached and single-flighted, and Entra's AADSTS
//! refusals diagnosed with both sides' values.

use crate::helpers::*;
use actix_web::{HttpResponse, web};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TENANT_B: &str = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d";
const FED_APP: &str = "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f";

/// What the token endpoint saw, and what it answers.
#[derive(Default)]
struct Login {
    exchanges: Vec<std::collections::HashMap<String, String>>,
    refuse: Option<u32>,
}

fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap()
}

/// Tenant B's `/{tenant}/oauth2/v2.0/token`, over TLS as the credential insists.
async fn login(state: Arc<Mutex<Login>>) -> (String, std::path::PathBuf) {
    devstack::tls::install_crypto_provider();
    let tls = devstack::tls::LocalTls::generate().unwrap();
    let dir = std::env::temp_dir().join(format!("federation-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let files = tls.write(&dir).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = actix_web::HttpServer::new(move || {
        let state = state.clone();
        actix_web::App::new().route(
            "/{tenant}/oauth2/v2.0/token",
            web::post().to(move |tenant: web::Path<String>, form: web::Form<std::collections::HashMap<String, String>>| {
                let state = state.clone();
                async move {
                    let mut login = state.lock().unwrap();
                    let form = form.into_inner();
                    login.exchanges.push(form.clone());
                    if let Some(code) = login.refuse {
                        let sub = claims_of(&form["client_assertion"])["sub"].as_str().unwrap_or_default().to_owned();
                        return HttpResponse::BadRequest().json(json!({
                            "error": "invalid_client",
                            "error_description": format!("AADSTS{code}: No matching federated identity record found for presented assertion subject '{sub}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. Trace ID: t Correlation ID: c Timestamp: 2026-12-02 10:00:00Z"),
                            "error_codes": [code],
                            "timestamp": "2026-12-02 10:00:00Z",
                            "trace_id": "6c1b8f2e-0000-0000-0000-000000000000",
                            "correlation_id": "c0ffee00-0000-0000-0000-000000000000",
                        }));
                    }
                    let token = jwt(json!({
                        "aud": "api://partner-api", "iss": format!("https://sts.windows.net/{tenant}/"),
                        "tid": tenant.as_str(), "appid": form["client_id"], "roles": ["Partner.Read"],
                        "exp": now() + 3600, "ver": "1.0"
                    }));
                    HttpResponse::Ok().json(json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}))
                }
            }),
        )
    })
    .disable_signals()
    .workers(1)
    .listen_rustls_0_23(listener, tls.server_config().unwrap())
    .unwrap()
    .run();
    tokio::spawn(server);
    (format!("https://127.0.0.1:{port}"), files.ca_cert)
}

async fn partner_app(refuse: Option<u32>) -> (TestApp, MockServer, Arc<Mutex<Login>>) {
    let state = Arc::new(Mutex::new(Login {
        refuse,
        ..Default::default()
    }));
    let (authority, ca) = login(state.clone()).await;
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/items/1"))
        .respond_with(|req: &Request| {
            let bearer = req.headers["authorization"]
                .to_str()
                .unwrap()
                .trim_start_matches("Bearer ");
            ResponseTemplate::new(200).set_body_json(json!({"tid_seen": claims_of(bearer)["tid"]}))
        })
        .mount(&api)
        .await;
    let base = format!("{}/v1", api.uri());
    let app = spawn_app_with(&[
        ("LOGIN_AUTHORITY", &authority),
        ("EXTRA_CA_CERT", ca.to_str().unwrap()),
        ("DOWNSTREAM_APIS__PARTNER__BASE_URL", &base),
        (
            "DOWNSTREAM_APIS__PARTNER__SCOPES",
            "api://partner-api/.default",
        ),
        ("DOWNSTREAM_APIS__PARTNER__ALLOWED_PATHS", "items/*"),
        ("DOWNSTREAM_APIS__PARTNER__CLIENT_ID", UA_CLIENT_ID),
        ("DOWNSTREAM_APIS__PARTNER__TENANT_ID", TENANT_B),
        ("DOWNSTREAM_APIS__PARTNER__FEDERATED_CLIENT_ID", FED_APP),
    ])
    .await;
    tokens_for_any_resource(&app.identity).await;
    (app, api, state)
}

#[tokio::test]
async fn a_partner_api_gets_a_token_from_its_tenant_once_for_a_burst() {
    let (app, _api, login) = partner_app(None).await;
    let calls = (0..6).map(|_| app.get("/api/downstream/partner/items/1"));
    for answer in futures::future::join_all(calls).await {
        assert_eq!(answer.status(), 200);
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["tid_seen"], TENANT_B, "the API got tenant B's token");
    }
    {
        let login = login.lock().unwrap();
        assert_eq!(login.exchanges.len(), 1, "one exchange for the burst");
        let form = &login.exchanges[0];
        assert_eq!(form["grant_type"], "client_credentials");
        assert_eq!(form["client_id"], FED_APP);
        assert_eq!(form["scope"], "api://partner-api/.default");
        assert_eq!(
            form["client_assertion_type"],
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        );
        assert_eq!(
            claims_of(&form["client_assertion"])["aud"],
            "api://AzureADTokenExchange"
        );
    }
    // The assertion was the user-assigned identity's.
    let sent = app.identity.received_requests().await.unwrap();
    assert!(sent.iter().any(|r| {
        r.url.query().unwrap_or_default().contains(UA_CLIENT_ID)
            && r.url
                .query()
                .unwrap_or_default()
                .contains("AzureADTokenExchange")
    }));

    let check: Value = app
        .get("/api/token?check=partner")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(check["assertion"]["aud"], "api://AzureADTokenExchange");
    assert_eq!(check["assertion"]["sub"], SYSTEM_OID);
    assert_eq!(check["principal"]["tid"], TENANT_B);
    assert_eq!(check["token"]["roles"][0], "Partner.Read");
    assert!(!check.to_string().contains("SIGNATURE-MUST-NOT-LEAK"));
}

#[tokio::test]
async fn a_refused_exchange_names_the_mismatch_and_is_remembered() {
    let (app, api, login) = partner_app(Some(700213)).await;
    let res = app.get("/api/downstream/partner/items/1").await;
    assert_eq!(res.status(), 502);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["type"], "TROUBLESHOOTING.md#fic-subject-mismatch",
        "{body}"
    );
    assert_eq!(body["stage"], "partner");
    assert_eq!(body["upstream_status"], 400);
    assert_eq!(body["diagnosis"]["upstream"]["code"], "AADSTS700213");
    let fix = body["diagnosis"]["fix"].as_str().unwrap();
    assert!(
        fix.contains(&format!("object id {SYSTEM_OID}")) && fix.contains(FED_APP),
        "{fix}"
    );
    assert!(!body.to_string().contains("SIGNATURE-MUST-NOT-LEAK"));
    // Within the failure memory, the next call is answered without an exchange.
    assert_eq!(
        app.get("/api/downstream/partner/items/1").await.status(),
        502
    );
    assert_eq!(login.lock().unwrap().exchanges.len(), 1);
    assert!(api.received_requests().await.unwrap().is_empty());
}
