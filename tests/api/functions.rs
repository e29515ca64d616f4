//! `/`, `/api/health` and `/api/token` through a running handler.

use crate::helpers::*;
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

async fn problem(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "errors are problem documents"
    );
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn readiness_probe_answers_without_outbound_calls() {
    let app = spawn_app().await;
    assert_eq!(app.get("/").await.status(), 200);
    assert!(app.identity.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn health_reports_version_and_source() {
    let app = spawn_app().await;
    let body: Value = app.get("/api/health").await.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["identity_source"], "app_service");
    assert!(app.identity.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn unknown_routes_are_problem_404s() {
    let app = spawn_app().await;
    let (status, body) = problem(app.get("/api/nope").await).await;
    assert_eq!(status, 404);
    assert_eq!(body["stage"], "request");
    assert!(body["detail"].as_str().unwrap().contains("/api/nope"));
}

#[tokio::test]
async fn token_shows_claims_but_never_the_token() {
    let app = spawn_app().await;
    let body = token_body("https://vault.azure.net", 3600);
    let raw_token = body["access_token"].as_str().unwrap().to_owned();
    Mock::given(method("GET"))
        .and(path("/msi/token"))
        .and(query_param("resource", "https://vault.azure.net"))
        .and(query_param("api-version", "2019-08-01"))
        .and(header("X-IDENTITY-HEADER", IDENTITY_HEADER))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .expect(1)
        .mount(&app.identity)
        .await;

    let first = app
        .get("/api/token?scope=https://vault.azure.net/.default&code=fnkey")
        .await;
    assert_eq!(first.status(), 200);
    let text = first.text().await.unwrap();
    assert!(!text.contains(&raw_token) && !text.contains("SIGNATURE-MUST-NOT-LEAK"));
    let json: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["resource"], "https://vault.azure.net");
    assert_eq!(json["cached"], false);
    assert_eq!(
        json["identity"],
        json!({"source": "app_service", "selector": "system_assigned"})
    );
    assert_eq!(json["claims"]["aud"], "https://vault.azure.net");
    assert_eq!(json["claims"]["roles"], json!(["App2.Access"]));
    assert!(json["expires_on"].as_str().unwrap().ends_with('Z'));

    let second: Value = app
        .get("/api/token?resource=https://vault.azure.net")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        second["cached"], true,
        "second call is served from the cache"
    );
    // The cached answer (no future waits for it) is the fresh one's twin.
    let mut expected = json.clone();
    expected["cached"] = json!(true);
    assert_eq!(second, expected);
}

#[tokio::test]
async fn token_refuses_repeated_and_conflicting_parameters() {
    let app = spawn_app().await;
    let id = "00000000-0000-0000-0000-0000000000aa";
    for (query, says) in [
        (
            "resource=https://vault.azure.net&resource=https://storage.azure.com".to_owned(),
            "query parameter resource is given more than once",
        ),
        (
            "resource=https://vault.azure.net&scope=https://vault.azure.net/.default".to_owned(),
            "give exactly one of ?resource=",
        ),
        (
            format!("resource=https://vault.azure.net&client_id={id}&object_id={id}"),
            "give at most one of client_id, object_id and mi_res_id",
        ),
        (
            "check=keyvault&check=storage".to_owned(),
            "query parameter check is given more than once",
        ),
        (
            "check=keyvault&resource=https://vault.azure.net".to_owned(),
            "check= names its own resource",
        ),
    ] {
        let (status, body) = problem(app.get(&format!("/api/token?{query}")).await).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains(says),
            "{query}: {body}"
        );
    }
    assert!(app.identity.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn token_mints_only_for_allowed_resources_and_sends_nothing_otherwise() {
    let app = spawn_app().await;
    for resource in [
        "https://management.azure.com",
        "https://database.windows.net",
        "https://myaccount.blob.core.windows.net",
        "https://vault.azure.net.evil.example",
        "api://someone-else",
    ] {
        let (status, body) =
            problem(app.get(&format!("/api/token?resource={resource}")).await).await;
        assert_eq!(status, 403, "{resource}: {body}");
        assert_eq!(body["type"], "TROUBLESHOOTING.md#resource-not-allowed");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("TOKEN_ALLOWED_RESOURCES")
        );
    }
    assert!(
        app.identity.received_requests().await.unwrap().is_empty(),
        "no identity call for a refused resource"
    );
}

#[tokio::test]
async fn case_variants_share_one_cache_entry() {
    let app = spawn_app().await;
    Mock::given(query_param("api-version", "2019-08-01"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(token_body("https://storage.azure.com", 3600)),
        )
        .expect(1)
        .mount(&app.identity)
        .await;
    let host = "storage.azure.com";
    for i in 0..1500u32 {
        // Flip the case of the scheme and host by the bits of i, and sometimes add a slash.
        let flipped: String = format!("https://{host}")
            .chars()
            .enumerate()
            .map(|(n, c)| {
                if i >> (n % 24) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        let resource = if i % 2 == 0 {
            format!("{flipped}/")
        } else {
            flipped
        };
        let response = app.get(&format!("/api/token?resource={resource}")).await;
        assert_eq!(response.status(), 200, "{resource}");
    }
    // One identity call (the mock's expect(1)) for 1,500 variants of one resource.
}

#[tokio::test]
async fn token_for_a_user_assigned_identity() {
    let app = spawn_app().await;
    Mock::given(query_param("client_id", UA_CLIENT_ID))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body("api://app2", 3600)))
        .expect(1)
        .mount(&app.identity)
        .await;
    let body: Value = app
        .get(&format!(
            "/api/token?resource=api://app2&client_id={UA_CLIENT_ID}"
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["identity"],
        json!({"source": "app_service", "selector": "client_id", "id": UA_CLIENT_ID})
    );
}

#[tokio::test]
async fn bad_token_parameters_are_400_problems_and_send_nothing() {
    let app = spawn_app().await;
    for query in [
        "",
        "?resource=a&scope=b/.default",
        "?resource=",
        "?resource=https://vault.azure.net%0Aevil",
        "?scope=/.default",
        "?resource=r&client_id=not-a-guid",
        &format!("?resource=r&client_id={UA_CLIENT_ID}&object_id={UA_CLIENT_ID}"),
        "?resource=r&mi_res_id=/subscriptions/x",
        "?resource=a&resource=b",
    ] {
        let (status, body) = problem(app.get(&format!("/api/token{query}")).await).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["stage"], "request", "{query}");
        assert!(
            body["type"]
                .as_str()
                .unwrap()
                .starts_with("TROUBLESHOOTING.md#")
        );
    }
    assert!(app.identity.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn identity_400_is_a_502_with_the_platform_message() {
    let app = spawn_app().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "statusCode": 400,
            "message": "Unable to load the proper Managed Identity.",
            "correlationId": "7f1f3c8e-0000-4000-8000-000000000001"
        })))
        .expect(1)
        .mount(&app.identity)
        .await;
    let (status, body) = problem(
        app.get(&format!(
            "/api/token?resource=https://vault.azure.net&client_id={UA_CLIENT_ID}"
        ))
        .await,
    )
    .await;
    assert_eq!(status, 502);
    assert_eq!(body["stage"], "identity");
    assert_eq!(body["upstream_status"], 400);
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("Unable to load the proper Managed Identity."),
        "{detail}"
    );
    assert!(
        detail.contains("7f1f3c8e-0000-4000-8000-000000000001"),
        "{detail}"
    );
    // Diagnosed: which selector was in force, and how to fix it.
    assert_eq!(body["type"], "TROUBLESHOOTING.md#identity-not-attached");
    let diagnosis = &body["diagnosis"];
    let cause = diagnosis["cause"].as_str().unwrap();
    assert!(
        cause.contains(&format!("the request's client_id parameter={UA_CLIENT_ID}")),
        "{cause}"
    );
    assert!(
        diagnosis["fix"]
            .as_str()
            .unwrap()
            .contains("az functionapp identity assign")
    );
    assert_eq!(diagnosis["principal"]["selector"], "client_id");
    assert_eq!(diagnosis["upstream"]["status"], 400);
    assert!(diagnosis["token"].is_null(), "no token was obtained");
    assert_eq!(body["hint"], diagnosis["fix"]);
}

#[tokio::test]
async fn identity_throttling_is_a_503() {
    let app = spawn_app().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "0"))
        .expect(2) // first try + IDENTITY_MAX_RETRIES=1
        .mount(&app.identity)
        .await;
    let (status, body) = problem(
        app.get("/api/token?resource=https://storage.azure.com")
            .await,
    )
    .await;
    assert_eq!(status, 503);
    assert_eq!(body["stage"], "identity");
    assert_eq!(body["upstream_status"], 429);
}

#[tokio::test]
async fn unconfigured_identity_names_the_missing_setting() {
    let app = spawn_app_with(&[("IDENTITY_HEADER", "")]).await;
    let (status, body) =
        problem(app.get("/api/token?resource=https://vault.azure.net").await).await;
    assert_eq!(status, 503);
    assert!(
        body["detail"].as_str().unwrap().contains("IDENTITY_HEADER"),
        "{body}"
    );
    assert_eq!(
        body["type"], "TROUBLESHOOTING.md#identity-not-configured",
        "{body}"
    );
}

/// Sends a request exactly as written (clients normalise `..` away).
async fn raw(app: &TestApp, request_line: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let port = app.address.rsplit(':').next().unwrap();
    let mut stream = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    stream
        .write_all(format!("{request_line} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx").as_bytes())
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, text)
}

#[tokio::test]
async fn traversal_and_bad_names_are_400_even_when_unconfigured() {
    let app = spawn_app().await;
    for line in [
        "PUT /api/blobs/okay/a/../b",
        "PUT /api/blobs/okay/./b",
        "GET /api/blobs/Bad_Container",
        "GET /api/secrets/bad_name",
        "GET /api/secrets/ok/not-a-version",
        "GET /api/app2/../../etc",
    ] {
        let (status, text) = raw(&app, line).await;
        assert_eq!(status, 400, "{line}: {text}");
        assert!(text.contains("application/problem+json"), "{line}");
    }
}

#[tokio::test]
async fn unconfigured_functions_name_the_missing_setting() {
    let app = spawn_app().await;
    for (path, setting) in [
        ("/api/secrets/app1-demo-secret", "KEYVAULT_URL"),
        ("/api/blobs/app1-data", "STORAGE_ACCOUNT_URL"),
        ("/api/app2/api/whoami", "APP2_BASE_URL"),
    ] {
        let (status, body) = problem(app.get(path).await).await;
        assert_eq!(status, 503, "{path}");
        assert!(
            body["detail"].as_str().unwrap().contains(setting),
            "{path}: {body}"
        );
        assert_eq!(body["type"], "TROUBLESHOOTING.md#not-configured");
    }
}

#[tokio::test]
async fn payload_mode_envelope_reaches_the_same_function() {
    let app = spawn_app().await;
    let envelope = json!({
        "Data": {"req": {"Url": "http://localhost:7071/api/health", "Method": "GET", "Query": {}, "Headers": {}, "Params": {}}},
        "Metadata": {}
    });
    let res = app
        .client
        .post(format!("{}/health", app.address))
        .json(&envelope)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["Outputs"]["res"]["statusCode"], 200);
    let inner: Value =
        serde_json::from_str(body["Outputs"]["res"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(inner["status"], "ok");
    assert!(body["Logs"].as_array().is_some());

    // A bad request inside a good envelope is a 400 the client will see.
    let bad = json!({"Data": {"req": {"Method": "GET", "Params": {"name": "bad_name"}}}});
    let body: Value = app
        .client
        .post(format!("{}/secrets", app.address))
        .json(&bad)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["Outputs"]["res"]["statusCode"], 400);

    // An unreadable envelope is an HTTP 400 problem.
    let res = app
        .client
        .post(format!("{}/health", app.address))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // An unknown function is a 404.
    let res = app
        .client
        .post(format!("{}/nosuchfunction", app.address))
        .json(&envelope)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn a_selector_the_environment_cannot_use_is_a_503_naming_the_setting() {
    // A developer machine (no managed identity) with AZURE_CLIENT_ID set: the
    // handler finds this at startup instead of blaming every caller with a 400.
    let env = std::collections::HashMap::from([
        ("FUNCTIONS_CUSTOMHANDLER_PORT".to_string(), "0".to_string()),
        (
            "AZURE_CLIENT_ID".to_string(),
            "11111111-2222-3333-4444-555555555555".to_string(),
        ),
    ]);
    let settings = handler::configuration::Settings::from_sources(None, env).unwrap();
    let app = handler::Application::build(settings).unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    let res = reqwest::get(format!(
        "{address}/api/token?resource=https://vault.azure.net"
    ))
    .await
    .unwrap();
    let (status, body) = problem(res).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["type"], "TROUBLESHOOTING.md#not-configured");
    assert!(
        body["detail"].as_str().unwrap().contains("AZURE_CLIENT_ID"),
        "{body}"
    );
    handle.stop(false).await;
}

#[tokio::test]
async fn startup_errors_say_what_went_wrong() {
    use handler::startup::StartupError;
    let settings = |pairs: &[(&str, &str)]| {
        let env = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        handler::configuration::Settings::from_sources(None, env).unwrap()
    };
    // An unreadable CA file is a CA problem, not "could not bind".
    let err = handler::Application::build(settings(&[
        ("FUNCTIONS_CUSTOMHANDLER_PORT", "0"),
        ("EXTRA_CA_CERT", "/nonexistent/ca.pem"),
    ]))
    .err()
    .unwrap();
    assert!(matches!(err, StartupError::HttpClient(_)), "{err}");
    assert!(err.to_string().contains("EXTRA_CA_CERT"), "{err}");
    // A taken port is a bind error naming the port.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let err = handler::Application::build(settings(&[("FUNCTIONS_CUSTOMHANDLER_PORT", &port)]))
        .err()
        .unwrap();
    assert!(matches!(err, StartupError::Bind { .. }), "{err}");
    assert!(err.to_string().contains(&port), "{err}");
}
