//! The spans app1 opens. Field names follow the OpenTelemetry semantic
//! conventions for HTTP and FaaS; ours (`app.*`, see [`attr`]) say which stage a
//! call belongs to and which token it carried. `otel.*` fields are read by
//! `tracing-opentelemetry` as the span's name, kind and status.
//!
//! Nothing here takes a token, a header value or a secret: the functions pass
//! claims, ids and statuses only (`tests/log_secrecy.rs` checks every span).
//!
//! Numbers are recorded as `i64`: `tracing-opentelemetry` would turn a `u16`
//! into a string.
//!
//! [`attr`]: app_telemetry::attr

use app_telemetry::TraceHeaders;
use opentelemetry::trace::TraceContextExt;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The server span of one function invocation.
pub struct Invocation;

impl Invocation {
    /// Opens the span for `function`, continuing the caller's trace when
    /// `trace` carries a valid `traceparent`, else starting a new one.
    pub fn start(
        function: &str,
        method: &str,
        route: &str,
        invocation_id: impl std::fmt::Display,
        protocol: &str,
        trace: &TraceHeaders,
    ) -> Span {
        let span = tracing::info_span!(
            "invocation",
            otel.name = %format_args!("{method} {route}"),
            otel.kind = "server",
            otel.status_code = Empty,
            "http.request.method" = method,
            "http.route" = route,
            "http.response.status_code" = Empty,
            "faas.trigger" = "http",
            "faas.name" = function,
            "faas.invocation_id" = %invocation_id,
            "app.protocol" = protocol,
            "error.type" = Empty,
            "app.stage" = Empty,
            "app.problem.type" = Empty,
            "app.problem.detail" = Empty,
            "app.problem.fix" = Empty,
            "app.upstream.status" = Empty,
        );
        // Only a recorded span has a parent to set (see `invocation_context`).
        if !span.is_disabled() {
            let _ = span.set_parent(trace.context());
        }
        span
    }

    /// Records the reply's status; a 5xx marks the server span as failed.
    pub fn finish(span: &Span, status: u16) {
        // Nothing to record on a span that is not built (ids without spans).
        if span.is_disabled() {
            return;
        }
        span.record("http.response.status_code", i64::from(status));
        if status >= 500 {
            span.record("otel.status_code", "error");
            span.record("error.type", status.to_string());
        }
    }
}

/// What a failed step or invocation records: never a token, only the problem.
pub struct Failed<'a> {
    pub problem_type: &'a str,
    pub detail: &'a str,
    pub fix: Option<&'a str>,
    pub stage: Option<&'a str>,
    pub upstream_status: Option<u16>,
}

/// Marks `span` failed with the problem and the upstream status behind it.
pub fn record_failure(span: &Span, failed: &Failed<'_>) {
    span.record("otel.status_code", "error");
    span.record("error.type", failed.problem_type);
    span.record("app.problem.type", failed.problem_type);
    span.record("app.problem.detail", failed.detail);
    if let Some(fix) = failed.fix {
        span.record("app.problem.fix", fix);
    }
    if let Some(stage) = failed.stage {
        span.record("app.stage", stage);
    }
    if let Some(status) = failed.upstream_status {
        span.record("app.upstream.status", i64::from(status));
    }
}

/// Records which token a span's call used: its audience, whether it came from
/// the cache, the identity, and the claims that decide authorization (JSON).
pub fn record_token(span: &Span, audience: &str, cached: bool, identity: &str, claims: &str) {
    span.record("app.token.audience", audience);
    span.record("app.token.cached", cached);
    span.record("app.identity", identity);
    span.record("app.token.claims", claims);
}

/// The span of one step of a function (the flow's `keyvault`, `app2`, …).
pub fn step_span(step: &str) -> Span {
    tracing::info_span!(
        "step",
        otel.name = step,
        otel.status_code = Empty,
        "app.step" = step,
        "error.type" = Empty,
        "app.stage" = Empty,
        "app.problem.type" = Empty,
        "app.problem.detail" = Empty,
        "app.problem.fix" = Empty,
        "app.upstream.status" = Empty,
    )
}

/// The span of one token request to the identity provider, cached or not.
/// Its client span to the endpoint, when there is one, is a child.
pub fn token_span(audience: &str) -> Span {
    tracing::info_span!(
        "token",
        otel.name = "get token",
        otel.status_code = Empty,
        "app.stage" = "identity",
        "app.token.audience" = audience,
        "app.token.cached" = Empty,
        "app.identity" = Empty,
        "app.token.claims" = Empty,
        "error.type" = Empty,
        "app.problem.type" = Empty,
        "app.problem.detail" = Empty,
        "app.problem.fix" = Empty,
        "app.upstream.status" = Empty,
    )
}

/// The current span's context as headers for the next hop.
pub fn trace_headers() -> TraceHeaders {
    headers_of(&Span::current())
}

/// `span`'s context when it is recorded, else the ids the task runs under.
fn headers_of(span: &Span) -> TraceHeaders {
    let cx = span.context();
    if cx.span().span_context().is_valid() {
        return TraceHeaders::of(&cx);
    }
    TraceHeaders::of(&opentelemetry::Context::current())
}

/// A client span around one outbound HTTP call that is not made by an Azure
/// SDK client (those get theirs from `azure_core_opentelemetry`).
pub struct ClientCall {
    span: Span,
}

impl ClientCall {
    /// Opens the span for `method url` in `stage`. The query is never recorded:
    /// it may carry a function key or a SAS.
    pub fn start(stage: &'static str, method: &str, url: &url::Url) -> Self {
        let mut bare = url.clone();
        bare.set_query(None);
        bare.set_fragment(None);
        let _ = bare.set_username("");
        let _ = bare.set_password(None);
        let span = tracing::info_span!(
            "client",
            otel.name = method,
            otel.kind = "client",
            otel.status_code = Empty,
            "http.request.method" = method,
            "url.full" = bare.as_str(),
            "server.address" = url.host_str().unwrap_or_default(),
            "server.port" = i64::from(url.port_or_known_default().unwrap_or_default()),
            "http.response.status_code" = Empty,
            "error.type" = Empty,
            "app.stage" = stage,
            "app.token.audience" = Empty,
            "app.token.cached" = Empty,
            "app.identity" = Empty,
            "app.token.claims" = Empty,
            "app.problem.type" = Empty,
            "app.problem.detail" = Empty,
            "app.problem.fix" = Empty,
            "app.upstream.status" = Empty,
        );
        Self { span }
    }

    pub fn span(&self) -> &Span {
        &self.span
    }

    /// The headers that make the callee's spans children of this one.
    pub fn trace_headers(&self) -> TraceHeaders {
        headers_of(&self.span)
    }

    /// Records the answer; 4xx and 5xx mark a client span as failed.
    pub fn answered(&self, status: u16) {
        self.span
            .record("http.response.status_code", i64::from(status));
        if status >= 400 {
            self.span.record("otel.status_code", "error");
            self.span.record("error.type", status.to_string());
        }
    }

    /// Records a call that got no answer.
    pub fn failed(&self, error_type: &str) {
        self.span.record("otel.status_code", "error");
        self.span.record("error.type", error_type);
    }
}

#[cfg(test)]
mod tests {
    /// `tracing` needs literal field names; they must be the shared ones that
    /// app2 and devstack's page read.
    #[test]
    fn field_names_are_the_shared_attribute_names() {
        use app_telemetry::attr::*;
        let source = include_str!("spans.rs");
        for name in [
            STAGE,
            TOKEN_AUDIENCE,
            TOKEN_CACHED,
            IDENTITY,
            TOKEN_CLAIMS,
            PROBLEM_TYPE,
            PROBLEM_DETAIL,
            PROBLEM_FIX,
            UPSTREAM_STATUS,
            PROTOCOL,
        ] {
            assert!(source.contains(&format!("\"{name}\" = ")), "{name}");
        }
    }
}
