//! Logs and traces. One `tracing` subscriber does both: JSON lines on stdout
//! (the host reads them as logs), each carrying `trace_id` and `span_id`, and
//! OpenTelemetry spans through `tracing-opentelemetry`, exported only when a
//! standard setting asks (see [`app_telemetry::Export`]).
//!
//! | file | what it holds |
//! |---|---|
//! | `mod.rs` | the subscriber and process-wide setup |
//! | `spans.rs` | the spans we open: one per invocation, one per outbound call |

mod spans;

pub use app_telemetry::{Export, ExportError, Telemetry, TraceHeaders, attr};
pub use spans::{
    ClientCall, Failed, Invocation as InvocationSpan, record_failure, record_token, step_span,
    token_span, trace_headers,
};

use app_telemetry::WithTraceIds;
use opentelemetry::trace::TracerProvider as _;
use tracing::Subscriber;
use tracing_subscriber::{EnvFilter, fmt::MakeWriter, layer::SubscriberExt};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (default; what Application Insights ingests best).
    Json,
    /// Human-readable lines for a terminal.
    Pretty,
}

#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    pub format: LogFormat,
    /// An `EnvFilter` directive, from `RUST_LOG`.
    pub filter: String,
}

/// The service name app1's spans carry (`OTEL_SERVICE_NAME` overrides it).
pub const SERVICE_NAME: &str = "app1";

/// Builds the subscriber for `telemetry`'s provider; `sink` lets tests capture output.
pub fn subscriber<W>(
    settings: &TelemetrySettings,
    telemetry: &Telemetry,
    sink: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(&settings.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let spans = tracing_opentelemetry::layer()
        .with_tracer(telemetry.provider().tracer(telemetry.service().to_owned()))
        // Our spans carry what matters; code locations and thread ids would
        // only add bytes to every exported span.
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false);
    let registry = tracing_subscriber::registry().with(filter).with(spans);
    match settings.format {
        LogFormat::Json => {
            let format = tracing_subscriber::fmt::format()
                .json()
                .with_current_span(true)
                .with_span_list(false);
            Box::new(
                registry.with(
                    tracing_subscriber::fmt::layer()
                        .json()
                        .event_format(WithTraceIds::new(format, true))
                        .with_writer(sink),
                ),
            )
        }
        LogFormat::Pretty => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .event_format(WithTraceIds::new(tracing_subscriber::fmt::format(), false))
                    .with_writer(sink),
            ),
        ),
    }
}

/// Sets up the process: the tracer provider from the standard settings, made
/// global so the Azure SDK's own spans join ours, and the subscriber writing
/// to stdout. Call once, before the async runtime starts (the exporters use
/// blocking clients); call [`Telemetry::shutdown`] after it ends.
pub fn init(settings: &TelemetrySettings, export: &Export) -> Result<Telemetry, ExportError> {
    let telemetry = Telemetry::new(SERVICE_NAME, export)?;
    install(settings, &telemetry, std::io::stdout);
    Ok(telemetry)
}

/// As [`init`], with a given provider and sink (tests). Ignores a second call.
pub fn install<W>(settings: &TelemetrySettings, telemetry: &Telemetry, sink: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    if tracing::subscriber::set_global_default(subscriber(settings, telemetry, sink)).is_ok() {
        opentelemetry::global::set_tracer_provider(telemetry.provider().clone());
    }
}
