//! Invocation-payload mode: `POST /<FunctionName>` with `{Data, Metadata}`.
//!
//! The reply must be a 2xx with a JSON content type, or the host turns it into
//! a bare 500 and drops the logs. So a function's own errors travel inside
//! `Outputs.res` (`statusCode`, not `status`; string headers; a string body),
//! and only an envelope that cannot be read at all is an HTTP 400.

use super::{Invocation, Reply};
use crate::functions;
use crate::problem::Problem;
use crate::startup::AppState;
use actix_web::http::{
    Method, StatusCode, header::HeaderMap, header::HeaderName, header::HeaderValue,
};
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/{function}", web::post().to(handle));
}

async fn handle(
    req: HttpRequest,
    path: web::Path<String>,
    mut payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let Some(spec) = functions::by_name(&path) else {
        return super::forward::into_response(Reply::from_problem(&Problem::not_found(format!(
            "no function named {:?}",
            path.as_str()
        ))));
    };
    // The envelope carries the body base64- or JSON-encoded: allow for that, and
    // answer an oversized one inside Outputs.res so the client sees the 413.
    let limit = state.limits.max_body_bytes / 3 * 4 + 64 * 1024;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = futures::StreamExt::next(&mut payload).await {
        let Ok(chunk) = chunk else {
            return HttpResponse::BadRequest().finish();
        };
        if body.len() + chunk.len() > limit {
            let reply =
                Reply::from_problem(&Problem::payload_too_large(state.limits.max_body_bytes));
            return HttpResponse::Ok().json(outputs(
                reply,
                vec![format!("{}: request body too large", spec.name)],
            ));
        }
        body.extend_from_slice(&chunk);
    }
    let invocation_id = req
        .headers()
        .get("x-azure-functions-invocationid")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let envelope: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return super::forward::into_response(Reply::from_problem(&Problem::bad_request(
                "the invocation payload must be a JSON object {\"Data\":{…},\"Metadata\":{…}}",
            )));
        }
    };
    let reply = match invocation_from(spec.name, &envelope, invocation_id) {
        Ok(invocation) => {
            if invocation.body.len() > state.limits.max_body_bytes {
                Reply::from_problem(&Problem::payload_too_large(state.limits.max_body_bytes))
            } else {
                functions::invoke(spec, invocation, &state).await
            }
        }
        Err(problem) => Reply::from_problem(&problem),
    };
    let log = format!("{} answered {}", spec.name, reply.status.as_u16());
    HttpResponse::Ok().json(outputs(reply, vec![log]))
}

/// Case-insensitive member lookup (the host's Newtonsoft binding is).
fn get<'a>(object: &'a Value, name: &str) -> Option<&'a Value> {
    object
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn strings(value: Option<&Value>) -> Map<String, Value> {
    match value {
        Some(Value::Object(m)) => m.clone(),
        // Very old hosts sent Query as a JSON-encoded string.
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or_default(),
        _ => Map::new(),
    }
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Builds an [`Invocation`] from `Data.req`.
pub fn invocation_from(
    function: &'static str,
    envelope: &Value,
    invocation_id: Option<String>,
) -> Result<Invocation, Problem> {
    let data = get(envelope, "Data")
        .ok_or_else(|| Problem::bad_request("the invocation payload has no Data"))?;
    let req = get(data, "req")
        .or_else(|| {
            data.as_object()?
                .values()
                .find(|v| get(v, "Method").is_some())
        })
        .ok_or_else(|| {
            Problem::bad_request("the invocation payload has no HTTP trigger data (Data.req)")
        })?;
    let method = get(req, "Method")
        .and_then(Value::as_str)
        .and_then(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
        .ok_or_else(|| Problem::bad_request("Data.req.Method is missing or invalid"))?;

    let mut headers = HeaderMap::new();
    for (name, values) in strings(get(req, "Headers")) {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        let values: Vec<String> = match values {
            Value::Array(items) => items.iter().filter_map(as_text).collect(),
            other => as_text(&other).into_iter().collect(),
        };
        for v in values {
            if let Ok(v) = HeaderValue::from_str(&v) {
                headers.append(name.clone(), v);
            }
        }
    }

    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let body = match get(req, "Body").and_then(as_text) {
        None => bytes::Bytes::new(),
        // The host base64-encodes octet-stream and multipart bodies.
        Some(text)
            if content_type.starts_with("application/octet-stream")
                || content_type.starts_with("multipart/") =>
        {
            bytes::Bytes::from(STANDARD.decode(text.trim()).map_err(|_| {
                Problem::bad_request("Data.req.Body is not valid base64 for a binary content type")
            })?)
        }
        Some(text) => bytes::Bytes::from(text),
    };

    Ok(Invocation {
        function,
        method,
        params: strings(get(req, "Params"))
            .into_iter()
            .filter_map(|(k, v)| as_text(&v).map(|v| (k, v)))
            .collect(),
        query: strings(get(req, "Query"))
            .into_iter()
            .filter_map(|(k, v)| as_text(&v).map(|v| (k, v)))
            .collect(),
        headers,
        body,
        invocation_id,
    })
}

/// The reply envelope: `{"Outputs":{"res":{statusCode, headers, body}}, "Logs":[…]}`.
pub fn outputs(reply: Reply, logs: Vec<String>) -> Value {
    let reply = match String::from_utf8(reply.body.to_vec()) {
        Ok(_) => reply,
        // Binary bodies cannot cross this mode (Azure/azure-functions-host#8622).
        Err(_) => Reply::from_problem(
            &Problem::new(
                StatusCode::NOT_ACCEPTABLE,
                "binary-in-payload-mode",
                "this response is binary, and invocation-payload mode can only return text; enable enableForwardingHttpRequest (or proxying) for binary downloads",
            )
            .stage(crate::problem::Stage::Request),
        ),
    };
    let mut headers = Map::new();
    if !reply.content_type.is_empty() {
        headers.insert("Content-Type".into(), json!(reply.content_type));
    }
    for (k, v) in reply.headers {
        headers.insert(k, json!(v));
    }
    json!({
        "Outputs": { "res": {
            "statusCode": reply.status.as_u16(),
            "headers": headers,
            "body": String::from_utf8(reply.body.to_vec()).unwrap_or_default(),
        }},
        "Logs": logs,
        "ReturnValue": null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_envelope() {
        let envelope = json!({
            "Data": {"req": {
                "Url": "http://localhost:7071/api/order?x=1", "Method": "POST",
                "Query": {"x": "1"}, "Headers": {"Content-Type": ["application/json"], "X-Multi": ["a", "b"]},
                "Params": {"id": "42", "name": null}, "Identities": [], "Body": "{\"id\":5}"
            }},
            "Metadata": {"sys": {"MethodName": "order"}}
        });
        let inv = invocation_from("order", &envelope, Some("inv-1".into())).unwrap();
        assert_eq!(inv.method, Method::POST);
        assert_eq!(inv.query, vec![("x".to_string(), "1".to_string())]);
        assert_eq!(inv.param("id"), Some("42"));
        assert_eq!(inv.param("name"), None);
        assert_eq!(inv.headers.get_all("x-multi").count(), 2);
        assert_eq!(&inv.body[..], b"{\"id\":5}");
    }

    #[test]
    fn lower_case_members_and_base64_bodies() {
        let envelope = json!({"data": {"req": {
            "method": "put", "headers": {"content-type": ["application/octet-stream"]}, "body": "AP8="
        }}});
        let inv = invocation_from("blobs", &envelope, None).unwrap();
        assert_eq!(inv.method, Method::PUT);
        assert_eq!(&inv.body[..], &[0x00, 0xFF]);
    }

    #[test]
    fn unusable_envelopes_are_400s() {
        for bad in [
            json!({}),
            json!({"Data": {}}),
            json!({"Data": {"req": {"Method": 5}}}),
        ] {
            assert_eq!(
                invocation_from("x", &bad, None).unwrap_err().status,
                400,
                "{bad}"
            );
        }
    }

    #[test]
    fn replies_use_status_code_string_headers_and_string_body() {
        let v = outputs(Reply::ok_json(&json!({"ok": true})), vec!["l".into()]);
        assert_eq!(v["Outputs"]["res"]["statusCode"], 200);
        assert_eq!(
            v["Outputs"]["res"]["headers"]["Content-Type"],
            "application/json"
        );
        assert_eq!(v["Outputs"]["res"]["body"], "{\"ok\":true}");
        assert!(v["Outputs"]["res"].get("status").is_none());
        assert_eq!(v["Logs"][0], "l");
        let binary = outputs(
            Reply::bytes(
                StatusCode::OK,
                "application/octet-stream",
                bytes::Bytes::from_static(&[0xFF, 0xFE]),
            ),
            vec![],
        );
        assert_eq!(binary["Outputs"]["res"]["statusCode"], 406);
    }
}
