//! `POST /v1/traces`: the OTLP/HTTP trace receiver (OTLP specification,
//! "OTLP/HTTP"): binary protobuf (`application/x-protobuf`, what exporters
//! send by default) or JSON (`application/json`), uncompressed. The answer is
//! an empty `ExportTraceServiceResponse` in the request's encoding.

use super::store::{SpanRecord, TraceStore};
use actix_web::{HttpRequest, HttpResponse, web};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use std::collections::BTreeMap;

/// The largest batch accepted; the SDK's default batch is 512 spans, far less.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

pub async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    store: web::Data<TraceStore>,
) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    if !matches!(header("content-encoding").as_str(), "" | "identity") {
        return super::problem(415, "send OTLP uncompressed");
    }
    let content_type = header("content-type");
    let json = content_type.starts_with("application/json");
    let request = if json {
        serde_json::from_slice::<ExportTraceServiceRequest>(&body).map_err(|e| e.to_string())
    } else if content_type.starts_with("application/x-protobuf") {
        ExportTraceServiceRequest::decode(body.as_ref()).map_err(|e| e.to_string())
    } else {
        return super::problem(
            415,
            "OTLP/HTTP is application/x-protobuf or application/json",
        );
    };
    let request = match request {
        Ok(r) => r,
        Err(e) => return super::problem(400, &format!("not an ExportTraceServiceRequest: {e}")),
    };
    let dropped = store.insert(records(request));
    if dropped > 0 {
        tracing::debug!(
            dropped,
            "trace store: spans past the per-trace limit dropped"
        );
    }
    if json {
        HttpResponse::Ok()
            .content_type("application/json")
            .body("{}")
    } else {
        HttpResponse::Ok()
            .content_type("application/x-protobuf")
            .body(ExportTraceServiceResponse::default().encode_to_vec())
    }
}

/// The request's spans as records, each with its resource's `service.name`.
fn records(request: ExportTraceServiceRequest) -> Vec<SpanRecord> {
    let mut out = vec![];
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref())
            .map(text)
            .unwrap_or_else(|| "unknown".into());
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                if span.trace_id.len() != 16 || span.span_id.len() != 8 {
                    continue;
                }
                let status = span.status.as_ref();
                out.push(SpanRecord {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: (span.parent_span_id.len() == 8)
                        .then(|| hex(&span.parent_span_id)),
                    kind: match span.kind {
                        1 => "internal",
                        2 => "server",
                        3 => "client",
                        4 => "producer",
                        5 => "consumer",
                        _ => "unspecified",
                    },
                    status: match status.map(|s| s.code) {
                        Some(1) => "ok",
                        Some(2) => "error",
                        _ => "unset",
                    },
                    status_message: status.map(|s| s.message.clone()).filter(|m| !m.is_empty()),
                    start_unix_nano: span.start_time_unix_nano,
                    end_unix_nano: span.end_time_unix_nano,
                    attributes: attributes(&span.attributes),
                });
            }
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, serde_json::Value> {
    list.iter()
        .filter_map(|kv| Some((kv.key.clone(), json(kv.value.as_ref()?))))
        .collect()
}

fn json(value: &AnyValue) -> serde_json::Value {
    use any_value::Value as V;
    match &value.value {
        Some(V::StringValue(s)) => s.clone().into(),
        Some(V::BoolValue(b)) => (*b).into(),
        Some(V::IntValue(i)) => (*i).into(),
        Some(V::DoubleValue(d)) => (*d).into(),
        Some(V::ArrayValue(a)) => a.values.iter().map(json).collect(),
        Some(V::KvlistValue(kv)) => {
            serde_json::Value::Object(attributes(&kv.values).into_iter().collect())
        }
        Some(V::BytesValue(b)) => hex(b).into(),
        None => serde_json::Value::Null,
    }
}

fn text(value: &AnyValue) -> String {
    match json(value) {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}
