//! Invocation-payload mode: `POST /<FunctionName>` with `{Data, Metadata}`.
//!
//! The reply must be a 2xx with a JSON content type, or the host turns it into
//! a bare 500 and drops the logs. So a function's own errors travel inside
//! `Outputs.res` (`statusCode`, not `status`; string headers; a string body),
//! and only an envelope that cannot be read at all is an HTTP 400.

use crate::functions;
use crate::invocation::{
    BodyError, Invocation, Protocol, Reply, invocation_id, read_body, trace_of,
};
use crate::problem::{Problem, ProblemType};
use crate::state::AppState;
use actix_web::http::{
    Method, StatusCode, header::HeaderMap, header::HeaderName, header::HeaderValue,
};
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/{function}", web::post().to(handle));
}

async fn handle(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let Some(spec) = functions::by_name(&path) else {
        return Reply::into_response(Reply::from_problem(&Problem::not_found(format!(
            "no function named {:?}",
            path.as_str()
        ))));
    };
    // The envelope carries the body base64- or JSON-encoded: allow for that, and
    // answer an oversized one inside Outputs.res so the client sees the 413.
    let limit = state.limits.max_body_bytes / 3 * 4 + 64 * 1024;
    let body = match read_body(payload, limit).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            let reply =
                Reply::from_problem(&Problem::payload_too_large(state.limits.max_body_bytes));
            return HttpResponse::Ok().json(outputs(
                reply,
                vec![format!("{}: request body too large", spec.name)],
            ));
        }
        Err(BodyError::Broken(_)) => return HttpResponse::BadRequest().finish(),
    };
    let invocation_id = invocation_id(req.headers());
    // Not an envelope at all is an HTTP 400; a bad request inside one is the
    // client's 400, inside Outputs.res.
    let invocation = match parse_envelope(&body) {
        Ok(envelope) => invocation_of(spec.name, &envelope, invocation_id),
        Err(problem) => return Reply::into_response(Reply::from_problem(&problem)),
    };
    drop(body);
    let reply = match invocation {
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

/// A JSON object's members, read without building a `serde_json::Value`: each
/// value stays a slice of the request body until it is parsed into its type, so
/// a large envelope costs about its own size, not a tree many times larger.
#[derive(Deserialize)]
#[serde(transparent)]
struct Members<'a>(#[serde(borrow)] HashMap<String, &'a RawValue>);

impl<'a> Members<'a> {
    fn parse(raw: &'a RawValue) -> Option<Self> {
        serde_json::from_str(raw.get()).ok()
    }

    /// Case-insensitive, as the host's Newtonsoft binding is.
    fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// A member parsed as `T`; absent, `null` or the wrong shape is `None`.
    fn typed<T: serde::de::DeserializeOwned>(&self, name: &str) -> Option<T> {
        serde_json::from_str(self.get(name)?.get()).ok()
    }
}

/// A JSON scalar as text (the host writes numbers and booleans unquoted).
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Number(serde_json::Number),
    Bool(bool),
}

impl Scalar {
    fn into_text(self) -> String {
        match self {
            Scalar::Text(s) => s,
            Scalar::Number(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

/// One header's values: an array (current hosts) or a single value.
#[derive(Deserialize)]
#[serde(untagged)]
enum HeaderValues {
    Many(Vec<Option<Scalar>>),
    One(Option<Scalar>),
}

/// `Query` and `Params`: an object of scalars, or (very old hosts) that object
/// JSON-encoded in a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Pairs {
    Object(HashMap<String, Option<Scalar>>),
    Encoded(String),
}

impl Pairs {
    fn into_pairs(self) -> impl Iterator<Item = (String, String)> {
        let map = match self {
            Pairs::Object(m) => m,
            Pairs::Encoded(s) => serde_json::from_str(&s).unwrap_or_default(),
        };
        map.into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v.into_text())))
    }
}

fn pairs(req: &Members<'_>, name: &str) -> Vec<(String, String)> {
    req.typed::<Pairs>(name)
        .map(|p| p.into_pairs().collect())
        .unwrap_or_default()
}

/// The envelope's top level; failing here means the body is not an envelope at all.
fn parse_envelope(body: &[u8]) -> Result<Members<'_>, Problem> {
    serde_json::from_slice(body).map_err(|_| {
        Problem::bad_request(
            "the invocation payload must be a JSON object {\"Data\":{…},\"Metadata\":{…}}",
        )
    })
}

/// Builds an [`Invocation`] from the envelope's HTTP trigger data (`Data.req`).
pub fn invocation_from(
    function: &'static str,
    envelope: &[u8],
    invocation_id: String,
) -> Result<Invocation, Problem> {
    invocation_of(function, &parse_envelope(envelope)?, invocation_id)
}

fn invocation_of(
    function: &'static str,
    envelope: &Members<'_>,
    invocation_id: String,
) -> Result<Invocation, Problem> {
    let data = envelope
        .get("Data")
        .and_then(Members::parse)
        .ok_or_else(|| Problem::bad_request("the invocation payload has no Data"))?;
    // The trigger is named in function.json: `req` by convention, else the
    // first member that looks like an HTTP request.
    let req = data
        .get("req")
        .and_then(Members::parse)
        .or_else(|| {
            data.0
                .values()
                .filter_map(|v| Members::parse(v))
                .find(|m| m.get("Method").is_some())
        })
        .ok_or_else(|| {
            Problem::bad_request("the invocation payload has no HTTP trigger data (Data.req)")
        })?;
    let method = req
        .typed::<String>("Method")
        .and_then(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
        .ok_or_else(|| Problem::bad_request("Data.req.Method is missing or invalid"))?;

    let mut headers = HeaderMap::new();
    let raw_headers: HashMap<String, HeaderValues> = req.typed("Headers").unwrap_or_default();
    for (name, values) in raw_headers {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        let values = match values {
            HeaderValues::Many(items) => items,
            HeaderValues::One(item) => vec![item],
        };
        for v in values.into_iter().flatten() {
            if let Ok(v) = HeaderValue::from_str(&v.into_text()) {
                headers.append(name.clone(), v);
            }
        }
    }

    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let body = match req.get("Body").map(RawValue::get) {
        None | Some("null") => bytes::Bytes::new(),
        Some(raw) => {
            // A JSON string is the body's text; any other JSON is passed as written.
            let text = if raw.starts_with('"') {
                serde_json::from_str::<String>(raw)
                    .map_err(|_| Problem::bad_request("Data.req.Body is not a valid JSON string"))?
            } else {
                raw.to_owned()
            };
            // The host base64-encodes octet-stream and multipart bodies.
            if content_type.starts_with("application/octet-stream")
                || content_type.starts_with("multipart/")
            {
                bytes::Bytes::from(STANDARD.decode(text.trim()).map_err(|_| {
                    Problem::bad_request(
                        "Data.req.Body is not valid base64 for a binary content type",
                    )
                })?)
            } else {
                bytes::Bytes::from(text)
            }
        }
    };

    Ok(Invocation {
        function,
        method,
        params: pairs(&req, "Params").into_iter().collect(),
        query: pairs(&req, "Query"),
        trace: trace_of(&headers),
        headers,
        body,
        body_stream: None,
        invocation_id,
        protocol: Protocol::Payload,
    })
}

/// The reply envelope: `{"Outputs":{"res":{statusCode, headers, body}}, "Logs":[…]}`.
pub fn outputs(reply: Reply, logs: Vec<String>) -> Value {
    let text = reply.stream.is_none() && std::str::from_utf8(&reply.body).is_ok();
    let reply = if text {
        reply
    } else {
        // Binary bodies cannot cross this mode (Azure/azure-functions-host#8622).
        Reply::from_problem(
            &Problem::new(
                StatusCode::NOT_ACCEPTABLE,
                ProblemType::BinaryInPayloadMode,
                "this response is binary, and invocation-payload mode can only return text; give the function exactly one httpTrigger in and one http out, with enableProxyingHttpRequest on, for binary downloads",
            )
            .stage(crate::problem::Stage::Request),
        )
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
        let inv =
            invocation_from("order", envelope.to_string().as_bytes(), "inv-1".into()).unwrap();
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
        let inv = invocation_from("blobs", envelope.to_string().as_bytes(), "i".into()).unwrap();
        assert_eq!(inv.method, Method::PUT);
        assert_eq!(&inv.body[..], &[0x00, 0xFF]);
    }

    #[test]
    fn old_and_odd_shapes_are_read() {
        let envelope = json!({"Data": {"request": {
            "Method": "get", "Query": "{\"a\":\"1\"}", "Headers": {"X-One": "v", "X-Num": 5},
            "Params": {"n": 7, "b": true}, "Body": {"k": [1, 2]}
        }}});
        let inv = invocation_from("f", envelope.to_string().as_bytes(), "i".into()).unwrap();
        assert_eq!(inv.query, vec![("a".to_string(), "1".to_string())]);
        assert_eq!(inv.header("x-one"), Some("v"));
        assert_eq!(inv.header("x-num"), Some("5"));
        assert_eq!((inv.param("n"), inv.param("b")), (Some("7"), Some("true")));
        assert_eq!(&inv.body[..], br#"{"k":[1,2]}"#);
    }

    #[test]
    fn unusable_envelopes_are_400s() {
        for bad in [
            json!({}),
            json!({"Data": {}}),
            json!({"Data": {"req": {"Method": 5}}}),
            json!([1, 2]),
            json!("text"),
            json!({"Data": {"req": {"Method": "GET", "Headers": {"Content-Type": "application/octet-stream"}, "Body": "*not base64*"}}}),
        ] {
            assert_eq!(
                invocation_from("x", bad.to_string().as_bytes(), "i".into())
                    .unwrap_err()
                    .status,
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
