//! Logs and traces. One `tracing` subscriber does both: JSON lines on stdout
//! (the host reads them as logs), each carrying `trace_id` and `span_id`, and
//! OpenTelemetry spans through `tracing-opentelemetry`, built only when a
//! standard setting exports them (see [`app_telemetry::Export`]). Without an
//! exporter, invocations carry their trace ids alone (`app_telemetry::ids`).
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

use app_telemetry::{NoSpanFields, WithTraceIds};
use opentelemetry::trace::TracerProvider as _;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::Subscriber;
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::{EnvFilter, Layer, fmt::MakeWriter, layer::SubscriberExt};

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
///
/// `RUST_LOG` decides which *log lines* are written, never which spans exist.
/// When spans are recorded (an exporter is set), the handler's own spans
/// always reach the OpenTelemetry layer (so exported traces are whole at any
/// log level), and the log layer always knows them (so every line carries
/// their ids; JSON lines carry only the ids, not the span's fields). When
/// they are not, no span is built for them: each invocation runs under its
/// trace ids alone ([`invocation_context`]), which lines and outbound
/// `traceparent` headers read.
pub fn subscriber<W>(
    settings: &TelemetrySettings,
    telemetry: &Telemetry,
    sink: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let lines = EnvFilter::try_new(&settings.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    if !records_spans(telemetry) {
        return with_lines(tracing_subscriber::registry(), settings, lines, sink);
    }
    let our_spans = filter_fn(|m| m.is_span() && m.target().starts_with("handler"));
    let spans = tracing_opentelemetry::layer()
        .with_tracer(telemetry.provider().tracer(telemetry.service().to_owned()))
        // Our spans carry what matters; code locations and thread ids
        // would only add bytes to every exported span.
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(our_spans.clone());
    with_lines(
        tracing_subscriber::registry().with(spans),
        settings,
        lines.or(our_spans),
        sink,
    )
}

/// Whether spans go anywhere: an exporter (or a test's provider) is set.
fn records_spans(telemetry: &Telemetry) -> bool {
    telemetry.is_enabled() && telemetry.is_exporting()
}

/// `spans` with the log layer on top, writing the lines `lines` lets through.
fn with_lines<S, F, W>(
    spans: S,
    settings: &TelemetrySettings,
    lines: F,
    sink: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
    F: tracing_subscriber::layer::Filter<S> + Send + Sync + 'static,
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    match settings.format {
        LogFormat::Json => {
            // Each line names its trace and span instead of repeating the
            // span's fields (which would cost formatting on every request).
            let format = tracing_subscriber::fmt::format()
                .json()
                .with_current_span(false)
                .with_span_list(false);
            Box::new(
                spans.with(
                    tracing_subscriber::fmt::layer()
                        .json()
                        .fmt_fields(NoSpanFields)
                        .event_format(WithTraceIds::new(format, true))
                        .with_writer(sink)
                        .with_filter(lines),
                ),
            )
        }
        LogFormat::Pretty => Box::new(
            spans.with(
                tracing_subscriber::fmt::layer()
                    .event_format(WithTraceIds::new(tracing_subscriber::fmt::format(), false))
                    .with_writer(sink)
                    .with_filter(lines),
            ),
        ),
    }
}

/// Whether invocations run under trace ids without spans: spans are on but
/// go nowhere. Set by [`install`]; until then (tests that install nothing),
/// ids without spans.
static IDS_WITHOUT_SPANS: AtomicBool = AtomicBool::new(true);

/// The context an invocation runs in (with
/// `opentelemetry::context::FutureExt::with_context`): its trace ids when no
/// span is recorded for it. With a recorded span, the span carries them; with
/// the SDK disabled, there are none.
pub fn invocation_context(caller: &TraceHeaders) -> opentelemetry::Context {
    if IDS_WITHOUT_SPANS.load(Ordering::Relaxed) {
        app_telemetry::ids::child_of(caller)
    } else {
        opentelemetry::Context::current()
    }
}

/// Sets up the process: the tracer provider from the standard settings (made
/// global when it records, so the Azure SDK's own spans join ours), and the
/// subscriber writing to stdout. Call once, before the async runtime starts
/// (the exporters use blocking clients); call [`Telemetry::shutdown`] after it
/// ends.
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
        IDS_WITHOUT_SPANS.store(
            telemetry.is_enabled() && !records_spans(telemetry),
            Ordering::Relaxed,
        );
        // The Azure SDK's spans join ours only when ours are recorded; else
        // its no-op spans carry the invocation's ids onto its requests.
        if records_spans(telemetry) {
            opentelemetry::global::set_tracer_provider(telemetry.provider().clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Runs `inside` in an invocation span under the subscriber for `telemetry`
    /// at `filter`; returns what it returned and the lines written.
    fn in_invocation<T>(
        telemetry: &Telemetry,
        filter: &str,
        inside: impl FnOnce() -> T,
    ) -> (T, String) {
        let lines = Lines::default();
        let sink = lines.clone();
        let settings = TelemetrySettings {
            format: LogFormat::Json,
            filter: filter.into(),
        };
        let subscriber = subscriber(&settings, telemetry, move || sink.clone());
        let out = tracing::subscriber::with_default(subscriber, || {
            let span = InvocationSpan::start(
                "health",
                "GET",
                "/api/health",
                "00000000-0000-0000-0000-000000000001",
                "proxy",
                &TraceHeaders::default(),
            );
            let _in = span.enter();
            inside()
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        (out, text)
    }

    #[test]
    fn rust_log_chooses_lines_never_spans() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let telemetry = Telemetry::with_provider("app1", provider);
        let (propagated, text) = in_invocation(&telemetry, "warn", || {
            tracing::info!("not at warn");
            tracing::warn!("at warn");
            trace_headers()
        });
        let spans = exporter.get_finished_spans().unwrap();
        assert_eq!(spans.len(), 1, "the span exists at RUST_LOG=warn");
        let trace_id = spans[0].span_context.trace_id().to_string();
        assert!(
            propagated
                .traceparent
                .is_some_and(|tp| tp.contains(&trace_id)),
            "and propagates"
        );
        assert!(!text.contains("not at warn"));
        let line = text.lines().find(|l| l.contains("at warn")).unwrap();
        assert!(
            line.starts_with(&format!("{{\"trace_id\":\"{trace_id}\"")),
            "{line}"
        );
    }

    #[test]
    fn without_an_exporter_lines_carry_the_invocations_ids() {
        let telemetry = Telemetry::off(SERVICE_NAME);
        let caller = TraceHeaders {
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            tracestate: None,
        };
        let (sent, text) = in_invocation(&telemetry, "warn", || {
            let _ids = app_telemetry::ids::child_of(&caller).attach();
            tracing::warn!("inside");
            trace_headers()
        });
        let line = text.lines().find(|l| l.contains("inside")).unwrap();
        assert!(
            line.starts_with(r#"{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":""#),
            "{line}"
        );
        let sent = sent.traceparent.unwrap();
        assert!(
            sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{sent}"
        );
        assert!(
            line.contains(&sent[36..52]),
            "the line's span id is the one sent: {line}"
        );
    }

    #[test]
    fn a_disabled_sdk_makes_no_spans_and_sends_no_context() {
        let export =
            Export::from_lookup(|n| (n == "OTEL_SDK_DISABLED").then(|| "true".into())).unwrap();
        let telemetry = Telemetry::new(SERVICE_NAME, &export).unwrap();
        let (sent, text) = in_invocation(&telemetry, "info", || {
            tracing::info!("inside");
            trace_headers()
        });
        assert_eq!(sent, TraceHeaders::default());
        assert!(
            text.contains("inside") && !text.contains("trace_id"),
            "{text}"
        );
    }
}
