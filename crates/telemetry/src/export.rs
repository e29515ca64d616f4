//! Opt-in export, from the standard settings only.

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider,
};
use std::fmt;
use std::time::Duration;

/// Where spans go. The default sends them nowhere: spans still get ids, so
/// `traceparent` propagates and log lines carry `trace_id`, at no network cost.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct Export {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: an OTLP/HTTP receiver's base URL
    /// (`/v1/traces` is appended), e.g. a Collector or devstack.
    pub otlp_endpoint: Option<String>,
    /// `APPLICATIONINSIGHTS_CONNECTION_STRING`: Application Insights, through
    /// `opentelemetry-application-insights`. It holds the ingestion key, so
    /// `Debug` never shows it.
    pub app_insights: Option<String>,
    /// `OTEL_BSP_SCHEDULE_DELAY` (ms): how long finished spans wait for a batch.
    pub batch_delay: Option<Duration>,
    /// `OTEL_SERVICE_NAME`, overriding the service's own name.
    pub service_name: Option<String>,
    /// `OTEL_SDK_DISABLED=true`: no spans at all, so no trace ids on log lines
    /// and no `traceparent` sent on (the baseline the benchmark compares with).
    pub disabled: bool,
}

impl fmt::Debug for Export {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Export")
            .field("otlp_endpoint", &self.otlp_endpoint)
            .field(
                "app_insights",
                &self.app_insights.as_ref().map(|_| "<redacted>"),
            )
            .field("batch_delay", &self.batch_delay)
            .field("service_name", &self.service_name)
            .field("disabled", &self.disabled)
            .finish()
    }
}

/// Export could not be set up; the process refuses to start rather than run
/// without the telemetry it was asked for.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("OTEL_EXPORTER_OTLP_ENDPOINT {endpoint:?} is not an http(s) URL")]
    OtlpEndpoint { endpoint: String },
    #[error("the OTLP exporter could not be built: {0}")]
    Otlp(#[source] opentelemetry_otlp::ExporterBuildError),
    /// The reason never includes the connection string.
    #[error("APPLICATIONINSIGHTS_CONNECTION_STRING is not a valid connection string: {0}")]
    AppInsights(String),
    #[error("OTEL_BSP_SCHEDULE_DELAY {0:?} is not a number of milliseconds")]
    BatchDelay(String),
}

impl Export {
    /// Reads the standard settings from the environment.
    pub fn from_env() -> Result<Self, ExportError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`Export::from_env`], from `lookup` (tests). `OTEL_SDK_DISABLED=true`
    /// turns the SDK off, as the specification says: no exporter, no spans.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ExportError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(Self {
                disabled: true,
                ..Self::default()
            });
        }
        let batch_delay = match get("OTEL_BSP_SCHEDULE_DELAY") {
            None => None,
            Some(v) => Some(Duration::from_millis(
                v.parse().map_err(|_| ExportError::BatchDelay(v))?,
            )),
        };
        Ok(Self {
            otlp_endpoint: get("OTEL_EXPORTER_OTLP_ENDPOINT"),
            app_insights: get("APPLICATIONINSIGHTS_CONNECTION_STRING"),
            batch_delay,
            service_name: get("OTEL_SERVICE_NAME"),
            disabled: false,
        })
    }

    /// OTLP/HTTP to `endpoint` only (devstack's in-process app2).
    pub fn otlp(endpoint: impl Into<String>, batch_delay: Duration) -> Self {
        Self {
            otlp_endpoint: Some(endpoint.into()),
            batch_delay: Some(batch_delay),
            ..Self::default()
        }
    }

    /// Whether any exporter is configured.
    pub fn is_on(&self) -> bool {
        self.otlp_endpoint.is_some() || self.app_insights.is_some()
    }
}

/// A service's tracer provider. Call [`Telemetry::shutdown`] on the way out
/// so the last batch is sent.
#[derive(Clone, Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    service: String,
    exporting: bool,
    enabled: bool,
}

impl Telemetry {
    /// A provider for `service` (the default `service.name`, which Application
    /// Insights shows as the cloud role), exporting as `export` says.
    pub fn new(service: &str, export: &Export) -> Result<Self, ExportError> {
        let service = export
            .service_name
            .clone()
            .unwrap_or_else(|| service.to_owned());
        let resource = Resource::builder_empty()
            .with_attributes([
                KeyValue::new("service.name", service.clone()),
                KeyValue::new("telemetry.sdk.language", "rust"),
            ])
            .build();
        let mut builder = SdkTracerProvider::builder().with_resource(resource);
        let batch = || {
            let mut config = BatchConfigBuilder::default();
            if let Some(delay) = export.batch_delay {
                config = config.with_scheduled_delay(delay);
            }
            config.build()
        };
        if let Some(endpoint) = &export.otlp_endpoint {
            let exporter = otlp_exporter(endpoint)?;
            builder = builder.with_span_processor(
                BatchSpanProcessor::builder(exporter)
                    .with_batch_config(batch())
                    .build(),
            );
        }
        if let Some(connection_string) = &export.app_insights {
            let client = reqwest_blocking::blocking::Client::new();
            let exporter =
                opentelemetry_application_insights::Exporter::new_from_connection_string(
                    connection_string,
                    client,
                )
                // The parser's message names the part that is wrong, never the key.
                .map_err(|e| ExportError::AppInsights(e.to_string()))?;
            builder = builder.with_span_processor(
                BatchSpanProcessor::builder(exporter)
                    .with_batch_config(batch())
                    .build(),
            );
        }
        Ok(Self {
            provider: builder.build(),
            service,
            exporting: export.is_on(),
            enabled: !export.disabled,
        })
    }

    /// Wraps a provider built elsewhere (tests: an in-memory exporter).
    pub fn with_provider(service: &str, provider: SdkTracerProvider) -> Self {
        Self {
            provider,
            service: service.to_owned(),
            exporting: true,
            enabled: true,
        }
    }

    /// A provider that keeps nothing: ids only.
    pub fn off(service: &str) -> Self {
        Self::new(service, &Export::default()).expect("no exporter, nothing to fail")
    }

    /// The provider, for the Azure SDK's instrumentation and for tests.
    pub fn provider(&self) -> &SdkTracerProvider {
        &self.provider
    }

    /// A tracer named after the service.
    pub fn tracer(&self) -> SdkTracer {
        self.provider.tracer(self.service.clone())
    }

    /// The service name spans are exported under.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Whether spans exist at all (`OTEL_SDK_DISABLED` unset or false).
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Whether spans leave the process.
    pub fn is_exporting(&self) -> bool {
        self.exporting
    }

    /// Sends what is buffered and stops the exporters. Blocks for at most a
    /// few seconds; call it outside the async runtime, or from a blocking task.
    pub fn shutdown(&self) {
        if self.exporting {
            let _ = self.provider.force_flush();
        }
        let _ = self.provider.shutdown();
    }
}

fn otlp_exporter(base: &str) -> Result<opentelemetry_otlp::SpanExporter, ExportError> {
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig as _};
    let url = url_for_traces(base).ok_or_else(|| ExportError::OtlpEndpoint {
        endpoint: base.to_owned(),
    })?;
    opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(Duration::from_secs(10))
        .with_headers(Default::default())
        .build()
        .map_err(ExportError::Otlp)
}

/// The specification: a signal-less endpoint gets `/v1/traces` appended.
fn url_for_traces(base: &str) -> Option<String> {
    let lower = base.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return None;
    }
    Some(format!("{}/v1/traces", base.trim_end_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn export(pairs: &[(&str, &str)]) -> Result<Export, ExportError> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Export::from_lookup(move |n| pairs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()))
    }

    #[test]
    fn export_is_off_unless_a_standard_setting_asks() {
        assert!(!export(&[]).unwrap().is_on());
        assert!(
            export(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")])
                .unwrap()
                .is_on()
        );
        let disabled = export(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_SDK_DISABLED", "TRUE"),
        ])
        .unwrap();
        assert!(!disabled.is_on() && disabled.disabled);
        assert!(!Telemetry::new("app1", &disabled).unwrap().is_enabled());
    }

    #[test]
    fn the_traces_path_is_appended_to_the_base_endpoint() {
        assert_eq!(
            url_for_traces("http://127.0.0.1:4318/").as_deref(),
            Some("http://127.0.0.1:4318/v1/traces")
        );
        assert_eq!(url_for_traces("127.0.0.1:4318"), None);
        let err = Telemetry::new("app1", &Export::otlp("ftp://x", Duration::ZERO)).unwrap_err();
        assert!(matches!(err, ExportError::OtlpEndpoint { .. }));
    }

    #[test]
    fn the_connection_string_never_shows() {
        let key =
            "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://x/";
        let e = export(&[("APPLICATIONINSIGHTS_CONNECTION_STRING", key)]).unwrap();
        assert!(!format!("{e:?}").contains("00000000-0000"));
        let bad = export(&[(
            "APPLICATIONINSIGHTS_CONNECTION_STRING",
            "InstrumentationKey",
        )])
        .unwrap();
        let err = Telemetry::new("app1", &bad).unwrap_err();
        assert!(matches!(err, ExportError::AppInsights(_)));
        assert!(export(&[("OTEL_BSP_SCHEDULE_DELAY", "soon")]).is_err());
    }

    #[test]
    fn service_name_comes_from_the_setting_when_given() {
        let t =
            Telemetry::new("app1", &export(&[("OTEL_SERVICE_NAME", "orders")]).unwrap()).unwrap();
        assert_eq!(t.service(), "orders");
        assert!(!t.is_exporting());
        t.shutdown();
    }

    /// Both exporters deliver to the endpoints the standard settings name:
    /// OTLP/HTTP protobuf to a stand-in Collector; Application Insights to the
    /// connection string's ingestion endpoint, over TLS (the crate always
    /// upgrades to https, so a plain listener sees the TLS handshake begin).
    #[test]
    fn spans_reach_otlp_and_application_insights() {
        use opentelemetry::trace::{Tracer as _, TracerProvider as _};
        use std::io::Read as _;
        use wiremock::matchers::{method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};

        let rt = tokio::runtime::Runtime::new().unwrap();
        let otlp = rt.block_on(async {
            let otlp = MockServer::start().await;
            Mock::given(method("POST"))
                .and(path("/v1/traces"))
                .respond_with(ResponseTemplate::new(200))
                .mount(&otlp)
                .await;
            otlp
        });
        let ingestion = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = ingestion.local_addr().unwrap().port();
        let (first_bytes, seen) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            if let Ok((mut conn, _)) = ingestion.accept() {
                let mut head = [0u8; 3];
                let _ = conn.read_exact(&mut head);
                let _ = first_bytes.send(head);
            }
        });
        let connection_string = format!(
            "InstrumentationKey=00000000-0000-0000-0000-000000000001;IngestionEndpoint=https://127.0.0.1:{port}/"
        );
        let e = export(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.uri()),
            ("APPLICATIONINSIGHTS_CONNECTION_STRING", &connection_string),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ])
        .unwrap();
        // Built outside the async runtime, as the binaries do.
        let t = Telemetry::new("app1", &e).unwrap();
        assert!(t.is_exporting());
        t.provider().tracer("test").in_span("exported-span", |_| {});

        // A TLS record of type handshake (0x16), version 3.x: a ClientHello.
        let head = seen
            .recv_timeout(Duration::from_secs(20))
            .expect("the Application Insights exporter connected to the ingestion endpoint");
        assert_eq!(head[..2], [0x16, 0x03], "{head:?}");
        let to_otlp = rt.block_on(async {
            for _ in 0..200 {
                let got = otlp.received_requests().await.unwrap();
                if !got.is_empty() {
                    return got;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            vec![]
        });
        assert_eq!(to_otlp.len(), 1);
        assert_eq!(to_otlp[0].headers["content-type"], "application/x-protobuf");
        assert!(String::from_utf8_lossy(&to_otlp[0].body).contains("exported-span"));
        std::thread::spawn(move || t.shutdown());
    }
}
