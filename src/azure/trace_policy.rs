//! Adds our attributes to the client span `azure_core_opentelemetry` opens for
//! each HTTP try: the stage, and the audience and deciding claims of the token
//! on the request (decoded locally; the token itself is never recorded).

use super::error::Stage;
use crate::identity::claims::{authorization_claims, decode_claims};
use async_trait::async_trait;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{
    ClientOptions, Context, InstrumentationOptions, Request, headers::AUTHORIZATION,
};
use azure_core::tracing::{AttributeValue, Span};
use azure_core_opentelemetry::OpenTelemetryTracerProvider;
use std::sync::Arc;

/// `options` with tracing: `azure_core_opentelemetry` gives each SDK operation
/// and each HTTP try a span on the process's tracer provider and puts
/// `traceparent` on the request; [`HopAttributes`] adds ours to the try's span.
pub fn traced(mut options: ClientOptions, stage: Stage) -> ClientOptions {
    options.instrumentation = InstrumentationOptions {
        tracer_provider: Some(OpenTelemetryTracerProvider::from_global_provider()),
    };
    options
        .per_try_policies
        .push(Arc::new(HopAttributes::new(stage)));
    options
}

/// Runs after the SDK's request-instrumentation policy (user per-try policies
/// come last), so the try's span is in the context and `Authorization` is set.
#[derive(Debug)]
pub struct HopAttributes {
    stage: Stage,
}

impl HopAttributes {
    pub fn new(stage: Stage) -> Self {
        Self { stage }
    }
}

#[async_trait]
impl Policy for HopAttributes {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        if let Some(span) = ctx.value::<Arc<dyn Span>>().filter(|s| s.is_recording()) {
            span.set_attribute("app.stage", self.stage.as_str().into());
            let bearer = request
                .headers()
                .get_optional_str(&AUTHORIZATION)
                .and_then(|v| v.strip_prefix("Bearer "));
            match bearer.and_then(decode_claims) {
                Some(claims) => {
                    if let Some(aud) = claims.get("aud").and_then(|a| a.as_str()) {
                        span.set_attribute("app.token.audience", AttributeValue::from(aud));
                    }
                    let deciding = authorization_claims(&claims);
                    span.set_attribute(
                        "app.token.claims",
                        serde_json::to_string(&deciding).unwrap_or_default().into(),
                    );
                }
                // Key Vault's first request goes without a token to learn the
                // tenant and resource from its 401 challenge: expected, not a failure.
                None if self.stage == Stage::Keyvault => {
                    span.set_attribute("app.challenge", true.into());
                }
                None => {}
            }
        }
        next[0].send(ctx, request, &next[1..]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::blobs::BlobStore;
    use crate::names::{BlobName, ContainerName};
    use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
    use azure_core::http::{AsyncRawResponse, HttpClient, StatusCode, Transport, headers::Headers};
    use base64::Engine;
    use opentelemetry::trace::{
        FutureExt, SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use std::sync::Mutex;

    /// Storage's answer to every request, keeping each request's traceparent.
    #[derive(Debug, Default)]
    struct Capture(Mutex<Vec<Option<String>>>);

    #[async_trait]
    impl HttpClient for Capture {
        async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
            let tp = request
                .headers()
                .get_optional_str(&"traceparent".into())
                .map(str::to_owned);
            self.0.lock().unwrap().push(tp);
            let mut headers = Headers::new();
            headers.insert("x-ms-error-code", "AuthorizationPermissionMismatch");
            Ok(AsyncRawResponse::from_bytes(
                StatusCode::Forbidden,
                headers,
                "<Error><Code>AuthorizationPermissionMismatch</Code></Error>",
            ))
        }
    }

    #[derive(Debug)]
    struct FakeToken;

    #[async_trait]
    impl TokenCredential for FakeToken {
        async fn get_token(
            &self,
            _: &[&str],
            _: Option<TokenRequestOptions<'_>>,
        ) -> azure_core::Result<AccessToken> {
            let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(r#"{"aud":"https://storage.azure.com","oid":"o-1","exp":4102444800}"#);
            Ok(AccessToken::new(
                format!("eyJhbGciOiJub25lIn0.{claims}.SIGNATURE"),
                azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
            ))
        }
    }

    #[tokio::test]
    async fn sdk_requests_carry_traceparent_and_their_spans_our_attributes() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        opentelemetry::global::set_tracer_provider(provider.clone());
        let capture = Arc::new(Capture::default());
        let options = traced(
            ClientOptions {
                transport: Some(Transport::new(capture.clone())),
                retry: azure_core::http::RetryOptions::none(),
                ..Default::default()
            },
            Stage::Storage,
        );
        let store = BlobStore::new(
            "https://acct.blob.core.windows.net/",
            Arc::new(FakeToken),
            options,
            None,
        )
        .unwrap();
        let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        let caller = opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
            trace_id,
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        ));
        let result = store
            .get(
                &ContainerName::parse("app1-data").unwrap(),
                &BlobName::parse("x.txt").unwrap(),
                1024,
            )
            .with_context(caller)
            .await;
        assert!(result.is_err(), "storage answered 403");

        let sent = capture.0.lock().unwrap().clone();
        let traceparent = sent[0]
            .clone()
            .expect("the SDK request carried a traceparent");
        let spans = exporter.get_finished_spans().unwrap();
        let try_span = spans
            .iter()
            .find(|s| s.span_kind == SpanKind::Client)
            .expect("a client span per try");
        assert_eq!(try_span.span_context.trace_id(), trace_id);
        assert_eq!(
            traceparent,
            format!("00-{trace_id}-{}-01", try_span.span_context.span_id())
        );
        let attr = |key: &str| {
            try_span
                .attributes
                .iter()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.to_string())
        };
        assert_eq!(attr("app.stage").as_deref(), Some("storage"));
        assert_eq!(
            attr("app.token.audience").as_deref(),
            Some("https://storage.azure.com")
        );
        assert!(attr("app.token.claims").is_some_and(|c| c.contains("o-1")));
        assert_eq!(attr("http.response.status_code").as_deref(), Some("403"));
        assert!(
            !format!("{spans:?}").contains("SIGNATURE"),
            "the token is never recorded"
        );
        let _ = provider.shutdown();
    }
}
