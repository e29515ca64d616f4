//! Captures every log line at TRACE level (all crates) while tokens flow
//! through the handler, and proves no secret appears in them.
//! Its own test binary: it installs the process-wide subscriber.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use handler::configuration::{LogFormat, Settings, TelemetrySettings};
use handler::{Application, telemetry};
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use wiremock::matchers::query_param;
use wiremock::{Mock, MockServer, ResponseTemplate};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

const HEADER_SECRET: &str = "IDENTITY-HEADER-SECRET-0192";
const FUNCTION_KEY: &str = "FUNCTION-KEY-SECRET-7731";

#[tokio::test]
async fn no_token_header_or_key_in_trace_logs() {
    let capture = Capture::default();
    let settings = TelemetrySettings {
        format: LogFormat::Json,
        filter: "trace".into(),
    };
    tracing::subscriber::set_global_default(telemetry::subscriber(&settings, capture.clone()))
        .unwrap();
    handler::http_client::install_crypto_provider();

    let exp = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
    let payload =
        URL_SAFE_NO_PAD.encode(json!({"aud": "https://vault.azure.net", "exp": exp}).to_string());
    let token = format!("eyJhbGciOiJSUzI1NiJ9.{payload}.TOKEN-SIGNATURE-SECRET");

    let identity = MockServer::start().await;
    Mock::given(query_param("resource", "https://vault.azure.net"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": token, "expires_on": exp.to_string(),
            "resource": "https://vault.azure.net", "token_type": "Bearer"
        })))
        .mount(&identity)
        .await;
    // A failing endpoint that (wrongly) echoes a token in its error body.
    Mock::given(query_param("resource", "https://storage.azure.com"))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({
            "access_token": token, "expires_on": "x"
        })))
        .mount(&identity)
        .await;

    let env = HashMap::from([
        ("FUNCTIONS_CUSTOMHANDLER_PORT".to_string(), "0".to_string()),
        (
            "IDENTITY_ENDPOINT".to_string(),
            format!("{}/msi/token", identity.uri()),
        ),
        ("IDENTITY_HEADER".to_string(), HEADER_SECRET.to_string()),
        ("IDENTITY_MAX_RETRIES".to_string(), "1".to_string()),
    ]);
    let app = Application::build(Settings::from_sources(None, env).unwrap()).unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    tokio::spawn(app.run_until_stopped());
    tracing::debug!(provider = ?state.identity, "provider state");

    let client = reqwest::Client::new();
    for path in [
        format!("/api/token?resource=https://vault.azure.net&code={FUNCTION_KEY}"),
        format!("/api/token?resource=https://vault.azure.net&code={FUNCTION_KEY}"),
        format!("/api/token?resource=https://storage.azure.com&code={FUNCTION_KEY}"),
    ] {
        let body = client
            .get(format!("{base}{path}"))
            .header("x-functions-key", FUNCTION_KEY)
            .header(
                "X-Azure-Functions-InvocationId",
                "3f0c1a52-0d7e-4c53-9a4a-2f7c6f1a9b10",
            )
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!body.contains("TOKEN-SIGNATURE-SECRET") && !body.contains(&token));
    }

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("request completed"), "logs were captured");
    assert!(
        logs.contains("3f0c1a52-0d7e-4c53-9a4a-2f7c6f1a9b10"),
        "spans carry the invocation id"
    );
    assert!(logs.contains("retrying"), "the failure path was logged");
    for secret in [
        token.as_str(),
        "TOKEN-SIGNATURE-SECRET",
        payload.as_str(),
        HEADER_SECRET,
        FUNCTION_KEY,
    ] {
        assert!(!logs.contains(secret), "{secret} leaked into the logs");
    }
}
