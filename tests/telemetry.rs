//! Logs and spans, from one handler run with the process-wide subscriber (so
//! this is its own test binary): every span and every log line is captured at
//! TRACE level while tokens flow, and
//! * no token, identity header or function key appears in either;
//! * a caller's `traceparent` is continued: the server span is its child, and
//!   the identity endpoint and app2 each receive a `traceparent` naming the
//!   client span that called them (the Azure SDK clients' own propagation is
//!   tested in `azure::trace_policy`; they insist on https);
//! * every log line written inside a request carries `trace_id` and `span_id`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use handler::configuration::{LogFormat, Settings, TelemetrySettings};
use handler::{Application, telemetry};
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use wiremock::matchers::{method, query_param};
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

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

/// The span ids in a `traceparent` a mock received.
fn received_parent(requests: &[wiremock::Request]) -> Vec<(String, String)> {
    requests
        .iter()
        .filter_map(|r| {
            r.headers
                .get("traceparent")?
                .to_str()
                .ok()
                .map(str::to_owned)
        })
        .map(|tp| {
            let parts: Vec<&str> = tp.split('-').collect();
            (parts[1].to_owned(), parts[2].to_owned())
        })
        .collect()
}

#[tokio::test]
async fn spans_and_logs_carry_the_trace_and_never_a_secret() {
    let capture = Capture::default();
    let settings = TelemetrySettings {
        format: LogFormat::Json,
        filter: "trace".into(),
    };
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let t = telemetry::Telemetry::with_provider("app1", provider);
    telemetry::install(&settings, &t, capture.clone());
    handler::http_client::install_crypto_provider();

    let exp = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
    let token_for = |aud: &str| {
        let payload = URL_SAFE_NO_PAD.encode(
            json!({"aud": aud, "exp": exp, "appid": "11111111-2222-3333-4444-555555555555", "roles": ["App2.Access"]})
                .to_string(),
        );
        (
            format!("eyJhbGciOiJSUzI1NiJ9.{payload}.TOKEN-SIGNATURE-SECRET"),
            payload,
        )
    };
    let (token, payload) = token_for("https://vault.azure.net");

    let identity = MockServer::start().await;
    for resource in [
        "https://vault.azure.net",
        "https://storage.azure.com",
        "api://app2",
    ] {
        let (token, _) = token_for(resource);
        Mock::given(query_param("resource", resource))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "access_token": token, "expires_on": exp.to_string(),
                "resource": resource, "token_type": "Bearer"
            })))
            .mount(&identity)
            .await;
    }
    // A failing endpoint that (wrongly) echoes a token in its error body.
    Mock::given(query_param("resource", "https://management.azure.com"))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({
            "access_token": token, "expires_on": "x"
        })))
        .mount(&identity)
        .await;
    let app2 = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "title": "missing role", "required_role": "App2.Access"
        })))
        .mount(&app2)
        .await;
    let env = HashMap::from([
        ("FUNCTIONS_CUSTOMHANDLER_PORT".to_string(), "0".to_string()),
        (
            "IDENTITY_ENDPOINT".to_string(),
            format!("{}/msi/token", identity.uri()),
        ),
        ("IDENTITY_HEADER".to_string(), HEADER_SECRET.to_string()),
        ("IDENTITY_MAX_RETRIES".to_string(), "1".to_string()),
        ("APP2_BASE_URL".to_string(), app2.uri()),
        ("APP2_RESOURCE".to_string(), "api://app2".to_string()),
        (
            "TOKEN_ALLOWED_RESOURCES".to_string(),
            "https://vault.azure.net,https://storage.azure.com,https://management.azure.com"
                .to_string(),
        ),
    ]);
    let app = Application::build(Settings::from_sources(None, env).unwrap()).unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    tokio::spawn(app.run_until_stopped());
    tracing::debug!(provider = ?state.identity, "provider state");

    let client = reqwest::Client::new();
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let mut bodies = String::new();
    for path in [
        "/api/token?resource=https://vault.azure.net",
        "/api/token?resource=https://vault.azure.net",
        "/api/token?resource=https://management.azure.com",
        "/api/app2/api/whoami",
    ] {
        let body = client
            .get(format!("{base}{path}&code={FUNCTION_KEY}").replacen("whoami&", "whoami?", 1))
            .header("x-functions-key", FUNCTION_KEY)
            .header("traceparent", &traceparent)
            .header("tracestate", "vendor=opaque")
            // As the host sends them in proxy mode: both ids, one GUID.
            .header(
                "X-Azure-Functions-InvocationId",
                "3f0c1a52-0d7e-4c53-9a4a-2f7c6f1a9b10",
            )
            .header("x-ms-invocation-id", "3f0c1a52-0d7e-4c53-9a4a-2f7c6f1a9b10")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        bodies.push_str(&body);
    }
    let _ = t.provider().force_flush();
    let spans = exporter.get_finished_spans().unwrap();

    // One server span per invocation, each a child of the caller's span.
    let servers: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.span_kind == SpanKind::Server)
        .collect();
    assert_eq!(
        servers.len(),
        4,
        "{:#?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    for s in &servers {
        assert_eq!(s.span_context.trace_id().to_string(), TRACE_ID);
        assert_eq!(s.parent_span_id.to_string(), CALLER_SPAN);
        assert_eq!(
            attr(s, "faas.invocation_id").as_deref(),
            Some("3f0c1a52-0d7e-4c53-9a4a-2f7c6f1a9b10")
        );
        assert!(attr(s, "http.response.status_code").is_some());
        assert_eq!(attr(s, "app.protocol").as_deref(), Some("proxy"));
    }
    assert!(servers.iter().any(|s| s.name == "GET /api/token"));
    // The failed app2 call: its server span names the problem and upstream status.
    let app2_server = servers
        .iter()
        .find(|s| s.name == "GET /api/app2/{path:.*}")
        .unwrap();
    assert_eq!(
        attr(app2_server, "app.upstream.status").as_deref(),
        Some("403")
    );
    assert!(
        attr(app2_server, "app.problem.type").is_some_and(|t| t.starts_with("app2")),
        "{app2_server:#?}"
    );
    assert!(matches!(app2_server.status, Status::Error { .. }));

    // Each outbound call is a client span in the same trace, and the callee got
    // a traceparent naming that span.
    let client_spans = |stage: &str| -> Vec<&SpanData> {
        spans
            .iter()
            .filter(|s| {
                s.span_kind == SpanKind::Client && attr(s, "app.stage").as_deref() == Some(stage)
            })
            .collect()
    };
    for (stage, mock) in [("identity", &identity), ("app2", &app2)] {
        let calls = client_spans(stage);
        assert!(!calls.is_empty(), "no {stage} client span");
        let received = received_parent(&mock.received_requests().await.unwrap());
        assert!(!received.is_empty(), "{stage} got no traceparent");
        for (trace, parent) in received {
            assert_eq!(trace, TRACE_ID, "{stage}");
            assert!(
                calls
                    .iter()
                    .any(|c| c.span_context.span_id().to_string() == parent),
                "{stage}'s traceparent names no client span"
            );
        }
        for c in calls {
            assert_eq!(c.span_context.trace_id().to_string(), TRACE_ID);
            assert!(
                attr(c, "url.full").is_some_and(|u| !u.contains('?')),
                "{stage}: url.full has a query"
            );
            assert!(attr(c, "server.address").is_some());
            assert!(attr(c, "http.request.method").is_some());
        }
    }
    let identity_call = client_spans("identity")[0];
    assert_eq!(
        attr(identity_call, "app.identity").as_deref(),
        Some("system_assigned")
    );
    assert!(attr(identity_call, "app.token.audience").is_some_and(|a| a.contains("://")));
    let app2_call = client_spans("app2")[0];
    assert_eq!(
        attr(app2_call, "http.response.status_code").as_deref(),
        Some("403")
    );
    assert_eq!(
        attr(app2_call, "app.token.audience").as_deref(),
        Some("api://app2")
    );
    assert!(attr(app2_call, "app.token.claims").is_some_and(|c| c.contains("App2.Access")));
    assert!(attr(app2_call, "app.identity").is_some());
    // Token spans say whether the token was cached: the second vault request was.
    let cached: Vec<String> = spans
        .iter()
        .filter(|s| {
            attr(s, "app.token.audience").as_deref() == Some("https://vault.azure.net")
                && s.name == "get token"
        })
        .filter_map(|s| attr(s, "app.token.cached"))
        .collect();
    assert!(
        cached.contains(&"false".into()) && cached.contains(&"true".into()),
        "{cached:?}"
    );
    // Every token span, fetched or answered from the cache at once, belongs
    // to its invocation: the caller's trace, under one of the run's spans.
    for token in spans.iter().filter(|s| s.name == "get token") {
        assert_eq!(token.span_context.trace_id().to_string(), TRACE_ID);
        assert!(
            spans
                .iter()
                .any(|s| s.span_context.span_id() == token.parent_span_id),
            "{token:#?}"
        );
    }

    // Log lines inside a request carry the trace.
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let completed: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("request completed"))
        .collect();
    assert_eq!(completed.len(), 4, "logs were captured");
    for line in &completed {
        assert!(line.contains(r#""protocol":"proxy""#), "{line}");
    }
    for line in &completed {
        assert!(
            line.starts_with(&format!("{{\"trace_id\":\"{TRACE_ID}\",\"span_id\":\"")),
            "{line}"
        );
    }
    // Lines written inside a request's steps and calls lead with ids too;
    // lines carry the ids, never the span's fields.
    let traced: Vec<&str> = logs
        .lines()
        .filter(|l| l.starts_with("{\"trace_id\":\""))
        .collect();
    assert!(traced.len() > completed.len(), "{logs}");
    for line in traced {
        assert!(line[..80].contains("\"span_id\":\""), "{line}");
        assert!(!line.contains("\"span\":{"), "{line}");
    }
    assert!(
        logs.contains("3f0c1a52-0d7e-4c53-9a4a-2f7c6f1a9b10"),
        "lines carry the invocation id"
    );
    assert!(logs.contains("retrying"), "the failure path was logged");

    // Nothing secret anywhere: responses, logs, or any span's name, attributes, events.
    let span_text: String = spans.iter().map(|s| format!("{s:?}")).collect();
    assert!(span_text.contains("App2.Access"), "span text was captured");
    for secret in [
        token.as_str(),
        "TOKEN-SIGNATURE-SECRET",
        payload.as_str(),
        "eyJ",
        HEADER_SECRET,
        FUNCTION_KEY,
    ] {
        assert!(!logs.contains(secret), "{secret} leaked into the logs");
        assert!(!span_text.contains(secret), "{secret} leaked into a span");
        assert!(!bodies.contains(secret), "{secret} leaked into a response");
    }
}
