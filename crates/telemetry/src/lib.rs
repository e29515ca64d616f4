//! OpenTelemetry for app1 and app2, in one place so both ends of a hop agree.
//!
//! * [`TraceHeaders`]: W3C `traceparent`/`tracestate`, read at the edge and
//!   written on every outbound request.
//! * [`Export`]: opt-in export from the standard settings
//!   (`OTEL_EXPORTER_OTLP_ENDPOINT`, `APPLICATIONINSIGHTS_CONNECTION_STRING`);
//!   off by default, when app1 builds no spans at all and each invocation gets
//!   only its trace ids ([`ids`]), for propagation and log lines.
//! * [`Telemetry`]: the process's tracer provider, with explicit shutdown so
//!   the last spans are flushed.
//! * [`WithTraceIds`]: puts `trace_id` and `span_id` on every log line.

mod export;
mod log_format;
mod propagation;

pub mod ids;
pub use export::{Export, ExportError, Telemetry};
pub use log_format::{NoSpanFields, WithTraceIds};
pub use propagation::{TRACEPARENT, TRACESTATE, TraceHeaders};

/// Span attributes of our own, beside the OpenTelemetry semantic conventions.
/// One list, so app1, app2 and devstack's trace page use the same names.
pub mod attr {
    /// Which call this is: `identity`, `keyvault`, `storage` or `app2`.
    pub const STAGE: &str = "app.stage";
    /// The audience (resource) of the token the call carried.
    pub const TOKEN_AUDIENCE: &str = "app.token.audience";
    /// Whether that token came from the cache.
    pub const TOKEN_CACHED: &str = "app.token.cached";
    /// The identity that was used (`system-assigned`, `client_id=…`, …).
    pub const IDENTITY: &str = "app.identity";
    /// The claims that decide authorization (`appid`, `oid`, `roles`, …), as JSON.
    pub const TOKEN_CLAIMS: &str = "app.token.claims";
    /// A failed step's problem type (`#anchor` in TROUBLESHOOTING.md).
    pub const PROBLEM_TYPE: &str = "app.problem.type";
    /// A failed step's problem title and detail.
    pub const PROBLEM_DETAIL: &str = "app.problem.detail";
    /// The fix the diagnosis suggests.
    pub const PROBLEM_FIX: &str = "app.problem.fix";
    /// The upstream's HTTP status behind a failure.
    pub const UPSTREAM_STATUS: &str = "app.upstream.status";
    /// How the Functions host delivered the invocation: `proxy`, `forward` or `payload`.
    pub const PROTOCOL: &str = "app.protocol";
}
