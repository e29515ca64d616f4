//! app2's side of the trace: one server span per request, continuing the
//! caller's `traceparent` (EasyAuth passes it through), on app2's own tracer.
//! Each log line of the request carries `trace_id` and `span_id`.
//!
//! The span records what app2 decided about the caller (the claims that
//! matter, or why it refused), never the token.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use app_telemetry::{TraceHeaders, attr};
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry_sdk::trace::SdkTracer;
use tracing::Instrument;

/// What app2 concluded about the caller; handlers attach it to their response.
#[derive(Clone, Debug, Default)]
pub struct Verdict {
    pub app_id: Option<String>,
    pub object_id: Option<String>,
    pub roles: Vec<String>,
    /// Why the request was refused (401/403), in app2's words.
    pub refusal: Option<String>,
}

/// The tracer app2's spans go to (shared by the workers).
#[derive(Clone, Debug)]
pub struct AppTracer(pub SdkTracer);

pub async fn server_span(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let Some(tracer) = req.app_data::<web::Data<AppTracer>>().cloned() else {
        return next.call(req).await;
    };
    let parent = TraceHeaders::from_pairs(
        req.headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))),
    )
    .context();
    let method = req.method().to_string();
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let span = tracer
        .0
        .span_builder(format!("{method} {route}"))
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.request.method", method.clone()),
            KeyValue::new("http.route", route.clone()),
            KeyValue::new("url.path", req.path().to_owned()),
            KeyValue::new("url.scheme", req.connection_info().scheme().to_owned()),
        ])
        .start_with_context(&tracer.0, &parent);
    let cx = parent.with_span(span);
    let ids = cx.span().span_context().clone();
    let logs = tracing::info_span!(
        "request",
        trace_id = %ids.trace_id(),
        span_id = %ids.span_id(),
        %method,
        %route,
    );
    let result = next.call(req).instrument(logs).await;
    let span = cx.span();
    match &result {
        Ok(res) => {
            let status = res.status().as_u16();
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
            if let Some(v) = res.response().extensions().get::<Verdict>() {
                record_verdict(&span, v);
            }
            if status >= 500 {
                span.set_status(Status::error(status.to_string()));
            }
        }
        Err(e) => span.set_status(Status::error(e.to_string())),
    }
    span.end();
    result
}

fn record_verdict(span: &opentelemetry::trace::SpanRef<'_>, v: &Verdict) {
    let claims = serde_json::json!({
        "appid": v.app_id, "oid": v.object_id, "roles": v.roles,
    });
    span.set_attribute(KeyValue::new(attr::TOKEN_CLAIMS, claims.to_string()));
    if let Some(refusal) = &v.refusal {
        span.set_attribute(KeyValue::new(attr::PROBLEM_DETAIL, refusal.clone()));
    }
}

#[cfg(test)]
mod tests {
    use crate::{Application, AuthSettings, Settings};
    use app_telemetry::Telemetry;
    use opentelemetry::trace::{SpanKind, Status};
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

    #[tokio::test]
    async fn each_request_continues_the_callers_trace_in_a_server_span() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let telemetry = Telemetry::with_provider("app2", provider);
        let settings = Settings {
            port: 0,
            required_role: "App2.Access".into(),
            auth: AuthSettings {
                tenant_id: "0d1e2f3a-4b5c-4d6e-8f9a-1b2c3d4e5f6a".into(),
                client_id: "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f".into(),
                app_id_uri: "api://app2".into(),
                authority: "http://127.0.0.1:9".into(),
                easyauth_enabled: false,
            },
        };
        let app = Application::build_traced("127.0.0.1", settings, &telemetry).unwrap();
        let url = format!("http://127.0.0.1:{}/api/whoami", app.port());
        let handle = app.handle();
        tokio::spawn(app.run_until_stopped());

        let res = reqwest::Client::new()
            .get(&url)
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .header("authorization", "Bearer SECRET-TOKEN-TEXT")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        let _ = reqwest::Client::new().get(&url).send().await.unwrap();
        handle.stop(true).await;

        let spans = exporter.get_finished_spans().unwrap();
        assert_eq!(spans.len(), 2);
        let traced = spans
            .iter()
            .find(|s| s.parent_span_id.to_string() == "00f067aa0ba902b7")
            .expect("the request with a traceparent continued it");
        assert_eq!(traced.name, "GET /api/whoami");
        assert_eq!(traced.span_kind, SpanKind::Server);
        assert_eq!(
            traced.span_context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        // A 401 is the caller's fault: recorded, but the server span isn't failed.
        assert_eq!(traced.status, Status::Unset);
        let text = format!("{traced:?}");
        assert!(text.contains("401 Unauthorized: the bearer token was rejected"));
        assert!(
            !text.contains("SECRET-TOKEN-TEXT"),
            "the token is never recorded"
        );
        // Without one, a new trace starts.
        assert!(
            spans
                .iter()
                .any(|s| s.parent_span_id == opentelemetry::trace::SpanId::INVALID)
        );
    }
}
