//! Logging with `tracing`: JSON lines by default, human-readable on request, and
//! one span per request carrying the host's invocation id.

use crate::configuration::{LogFormat, TelemetrySettings};
use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    middleware::Next,
};
use tracing::{Instrument, Subscriber};
use tracing_subscriber::{EnvFilter, fmt::MakeWriter, layer::SubscriberExt};

/// Builds the subscriber; `sink` lets tests capture output.
pub fn subscriber<W>(settings: &TelemetrySettings, sink: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(&settings.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    match settings.format {
        LogFormat::Json => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(sink),
            ),
        ),
        LogFormat::Pretty => {
            Box::new(registry.with(tracing_subscriber::fmt::layer().with_writer(sink)))
        }
    }
}

/// Installs the global subscriber writing to stdout (the host reads stdout as
/// Information-level logs). Ignores a second call.
pub fn init(settings: &TelemetrySettings) {
    let _ = tracing::subscriber::set_global_default(subscriber(settings, std::io::stdout));
}

/// Wraps each request in a span with the method, the path (never the query: it
/// carries the function key `code`) and `X-Azure-Functions-InvocationId`.
pub async fn request_span(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let invocation_id = crate::invocation::invocation_id(req.headers());
    actix_web::HttpMessage::extensions_mut(&req)
        .insert(crate::invocation::InvocationId(invocation_id.clone()));
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.path(),
        invocation_id = %invocation_id,
    );
    let probe = req.path() == "/";
    let started = std::time::Instant::now();
    let result = next.call(req).instrument(span.clone()).await;
    let status = match &result {
        Ok(res) => res.status().as_u16(),
        Err(e) => e.as_response_error().status_code().as_u16(),
    };
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if probe {
            tracing::debug!(status, elapsed_ms, "readiness probe");
        } else {
            tracing::info!(status, elapsed_ms, "request completed");
        }
    });
    result
}
