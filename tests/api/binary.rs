//! The real `handler` binary: port variables, readiness, signals, startup errors.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// devstack's: a port no other server in this process can be handed first.
fn free_port() -> u16 {
    devstack::free_port().expect("a free loopback port")
}

fn start(env: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_handler"));
    cmd.env_clear()
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("handler starts")
}

async fn wait_ready(port: u16) {
    handler::http_client::install_crypto_provider();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if reqwest::get(format!("http://127.0.0.1:{port}/"))
            .await
            .is_ok()
        {
            return;
        }
        assert!(Instant::now() < deadline, "handler never answered GET /");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn terminate(child: &Child, signal: &str) {
    let ok = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[tokio::test]
async fn binds_customhandler_port_and_stops_cleanly_on_sigterm() {
    let port = free_port();
    let child = start(&[("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())]);
    wait_ready(port).await;
    terminate(&child, "-TERM");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(
        logs.contains("SIGTERM") && logs.contains("handler stopped"),
        "{logs}"
    );
    // Every stdout line is one JSON object.
    for line in logs.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect(line);
    }
    // The source choice is logged once, and says developer credentials are in use.
    assert_eq!(logs.matches("developer credentials").count(), 1, "{logs}");
}

#[tokio::test]
async fn falls_back_to_httpworker_port_and_stops_on_sigint() {
    let port = free_port();
    let child = start(&[("FUNCTIONS_HTTPWORKER_PORT", port.to_string())]);
    wait_ready(port).await;
    terminate(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[tokio::test]
async fn conflicting_selectors_stop_startup_with_a_clear_message() {
    let id = "5e29463d-71da-4fe0-8e69-999b57db23b0".to_string();
    let child = start(&[
        ("FUNCTIONS_CUSTOMHANDLER_PORT", free_port().to_string()),
        ("AZURE_CLIENT_ID", id.clone()),
        ("MANAGED_IDENTITY_RESOURCE_ID", "/subscriptions/s/resourceGroups/r/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u".into()),
    ]);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("AZURE_CLIENT_ID and MANAGED_IDENTITY_RESOURCE_ID"),
        "{err}"
    );
}

#[tokio::test]
async fn sigterm_flushes_the_spans_still_batched() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let collector = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&collector)
        .await;
    let port = free_port();
    let child = start(&[
        ("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.uri()),
        // Far longer than the test: only the flush on the way out can send it.
        ("OTEL_BSP_SCHEDULE_DELAY", "600000".into()),
    ]);
    wait_ready(port).await;
    let res = reqwest::get(format!("http://127.0.0.1:{port}/api/health"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(collector.received_requests().await.unwrap().is_empty());
    terminate(&child, "-TERM");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let sent = collector.received_requests().await.unwrap();
    assert_eq!(sent.len(), 1, "one batch, sent on the way out");
    assert!(String::from_utf8_lossy(&sent[0].body).contains("GET /api/health"));
}

#[tokio::test]
async fn an_unusable_exporter_setting_stops_startup_naming_it() {
    for (name, value) in [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
        (
            "APPLICATIONINSIGHTS_CONNECTION_STRING",
            "not a connection string",
        ),
        ("OTEL_BSP_SCHEDULE_DELAY", "soon"),
    ] {
        let child = start(&[
            ("FUNCTIONS_CUSTOMHANDLER_PORT", free_port().to_string()),
            (name, value.into()),
        ]);
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(name), "{name}: {err}");
    }
}
