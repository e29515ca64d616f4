//! Invocation-payload mode: `POST /<FunctionName>` with `{Data, Metadata}`.
//!
//! The reply must be a 2xx with a JSON content type, or the host turns it into
//! a bare 500 and drops the logs. So a function's own errors travel inside
//! `Outputs.res` (`statusCode`, not `status`; string headers; a string body),
//! and only an envelope that cannot be read at all is an HTTP 400.

use crate::functions;
use crate::invocation::{
    BodyError, Invocation, InvocationId, Protocol, Reply, invocation_id, read_body, trace_of,
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
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

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

/// Envelope objects (the envelope, `Data`, `Data.req`) have a handful of
/// members; more is not an envelope the host wrote.
const MAX_MEMBERS: usize = 64;
/// `Query` and `Params` entries: a URL is at most 4 KB in Azure (A7).
const MAX_PAIRS: usize = 1_000;
/// Kestrel's `MaxRequestHeaderCount`, and as many values for one header.
const MAX_HEADERS: usize = 100;
const MAX_HEADER_VALUES: usize = 100;

/// A JSON object's members, read without building a `serde_json::Value`: each
/// value stays a slice of the request body until it is parsed into its type, so
/// a large envelope costs about its own size, not a tree many times larger.
/// Every shape below is read by a visitor that looks at the JSON it meets,
/// never by `#[serde(untagged)]` (which buffers the whole value first).
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(f, "an object of at most {MAX_MEMBERS} members")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = vec![];
                while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                    if members.len() == MAX_MEMBERS {
                        return Err(serde::de::Error::custom("too many members"));
                    }
                    members.push(entry);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(Visit)
    }
}

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

/// A JSON scalar as text (the host writes numbers and booleans unquoted);
/// `null` is `None`, and an object or array is the wrong shape.
struct Scalar(Option<String>);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl Visitor<'_> for Visit {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, number, boolean or null")
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar(Some(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar(None))
            }
        }
        d.deserialize_any(Visit)
    }
}

/// A bounded list read from JSON: at most `N` items are kept; past that the
/// rest is skipped (parsed, never stored) and the list is marked too long.
struct Bounded<T> {
    items: Vec<T>,
    too_many: bool,
}

/// `Query` and `Params`: an object of scalars, or (very old hosts) that object
/// JSON-encoded in a string.
struct Pairs(Bounded<(String, String)>);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Pairs;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of scalars, or one encoded in a string")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs, A::Error> {
                let mut items = vec![];
                let mut too_many = false;
                while let Some(key) = map.next_key::<String>()? {
                    if items.len() == MAX_PAIRS {
                        too_many = true;
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    }
                    if let Scalar(Some(value)) = map.next_value::<Scalar>()? {
                        items.push((key, value));
                    }
                }
                Ok(Pairs(Bounded { items, too_many }))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Pairs, E> {
                serde_json::from_str(v).map_err(E::custom)
            }
        }
        d.deserialize_any(Visit)
    }
}

/// `Headers`: each name with an array of values (current hosts) or one value.
struct Headers(Bounded<(String, Vec<String>)>);

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Values(Bounded<String>);
        impl<'de> Deserialize<'de> for Values {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Visit;
                impl<'de> Visitor<'de> for Visit {
                    type Value = Values;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("a header value, or an array of them")
                    }
                    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Values, A::Error> {
                        let mut items = vec![];
                        let mut too_many = false;
                        loop {
                            if items.len() == MAX_HEADER_VALUES {
                                while seq.next_element::<IgnoredAny>()?.is_some() {
                                    too_many = true;
                                }
                                break;
                            }
                            match seq.next_element::<Scalar>()? {
                                Some(Scalar(Some(v))) => items.push(v),
                                Some(Scalar(None)) => {}
                                None => break,
                            }
                        }
                        Ok(Values(Bounded { items, too_many }))
                    }
                    fn visit_str<E>(self, v: &str) -> Result<Values, E> {
                        Ok(one(Some(v.to_owned())))
                    }
                    fn visit_i64<E>(self, v: i64) -> Result<Values, E> {
                        Ok(one(Some(v.to_string())))
                    }
                    fn visit_u64<E>(self, v: u64) -> Result<Values, E> {
                        Ok(one(Some(v.to_string())))
                    }
                    fn visit_f64<E>(self, v: f64) -> Result<Values, E> {
                        Ok(one(Some(v.to_string())))
                    }
                    fn visit_bool<E>(self, v: bool) -> Result<Values, E> {
                        Ok(one(Some(v.to_string())))
                    }
                    fn visit_unit<E>(self) -> Result<Values, E> {
                        Ok(one(None))
                    }
                }
                fn one(v: Option<String>) -> Values {
                    Values(Bounded {
                        items: v.into_iter().collect(),
                        too_many: false,
                    })
                }
                d.deserialize_any(Visit)
            }
        }
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Headers;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of header values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Headers, A::Error> {
                let mut items = vec![];
                let mut too_many = false;
                while let Some(name) = map.next_key::<String>()? {
                    if items.len() == MAX_HEADERS {
                        too_many = true;
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    }
                    let Values(values) = map.next_value()?;
                    too_many |= values.too_many;
                    items.push((name, values.items));
                }
                Ok(Headers(Bounded { items, too_many }))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// `Data.req.<name>` as pairs: absent or the wrong shape is none (as the host
/// would never send it); more than a URL can hold is a 400.
fn pairs(req: &Members<'_>, name: &str) -> Result<Vec<(String, String)>, Problem> {
    match req.typed::<Pairs>(name) {
        None => Ok(vec![]),
        Some(Pairs(b)) if b.too_many => Err(Problem::bad_request(format!(
            "Data.req.{name} has more than {MAX_PAIRS} entries; a request URL cannot carry that many"
        ))),
        Some(Pairs(b)) => Ok(b.items),
    }
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
    invocation_id: InvocationId,
) -> Result<Invocation, Problem> {
    invocation_of(function, &parse_envelope(envelope)?, invocation_id)
}

fn invocation_of(
    function: &'static str,
    envelope: &Members<'_>,
    invocation_id: InvocationId,
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
                .iter()
                .filter_map(|(_, v)| Members::parse(v))
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
    let raw_headers = req.typed::<Headers>("Headers").map(|h| h.0);
    if raw_headers.as_ref().is_some_and(|h| h.too_many) {
        return Err(Problem::bad_request(format!(
            "Data.req.Headers has more than {MAX_HEADERS} headers or {MAX_HEADER_VALUES} values for one; the host never sends that many"
        )));
    }
    for (name, values) in raw_headers.map(|h| h.items).unwrap_or_default() {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
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
        params: pairs(&req, "Params")?,
        query: pairs(&req, "Query")?,
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

    fn with_req(req: Value) -> Result<Invocation, Problem> {
        let envelope = json!({"Data": {"req": req}, "Metadata": {}}).to_string();
        invocation_from(
            "blobs",
            envelope.as_bytes(),
            invocation_id(&Default::default()),
        )
    }

    #[test]
    fn adversarial_shapes_are_read_in_bounds_or_refused_cheaply() {
        let wide: Vec<u32> = (0..100_000).collect();
        // A wide array where an object belongs is the wrong shape: ignored, as before.
        let inv = with_req(json!({"Method": "GET", "Query": wide, "Params": wide})).unwrap();
        assert!(inv.query.is_empty() && inv.params.is_empty());
        // More entries than a URL can hold: 400.
        let many: Map<String, Value> = (0..5_000).map(|i| (format!("k{i}"), json!(i))).collect();
        for member in ["Query", "Params"] {
            let p = with_req(json!({"Method": "GET", member: many})).unwrap_err();
            assert_eq!(p.status, 400, "{member}");
            assert!(p.detail.contains(member), "{}", p.detail);
        }
        // Headers: more names, or more values for one, than the host sends.
        let names: Map<String, Value> = (0..500)
            .map(|i| (format!("x-h{i}"), json!(["v"])))
            .collect();
        assert_eq!(
            with_req(json!({"Method": "GET", "Headers": names}))
                .unwrap_err()
                .status,
            400
        );
        let values = json!({"X-Wide": wide});
        assert_eq!(
            with_req(json!({"Method": "GET", "Headers": values}))
                .unwrap_err()
                .status,
            400
        );
        // Many members in the envelope's own objects: not an envelope.
        let mut req = many.clone();
        req.insert("Method".into(), json!("GET"));
        assert_eq!(with_req(Value::Object(req)).unwrap_err().status, 400);
        // Deep nesting: Identities is never parsed (it stays a slice of the
        // envelope); in Query it is the wrong shape, stopped at serde_json's
        // depth limit and ignored.
        let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        for member in ["Identities", "Query"] {
            let envelope = format!(
                r#"{{"Data":{{"req":{{"Method":"GET","{member}":{deep}}}}},"Metadata":{{}}}}"#
            );
            let inv = invocation_from(
                "blobs",
                envelope.as_bytes(),
                invocation_id(&Default::default()),
            )
            .unwrap();
            assert!(inv.query.is_empty(), "{member}");
        }
        // A long string stays one string.
        let long = "a".repeat(1 << 20);
        let inv = with_req(json!({"Method": "GET", "Query": {"q": long}})).unwrap();
        assert_eq!(inv.query[0].1.len(), 1 << 20);
        // Scalars of every kind are text; null values are skipped.
        let inv = with_req(
            json!({"Method": "GET", "Query": {"n": 1.5, "b": true, "z": null},
                                  "Headers": {"X-One": 7, "X-None": null}}),
        )
        .unwrap();
        let mut query = inv.query.clone();
        query.sort();
        assert_eq!(
            query,
            [("b".into(), "true".into()), ("n".into(), "1.5".into())]
        );
        assert_eq!(inv.header("x-one"), Some("7"));
        // Old hosts: the object JSON-encoded in a string.
        let inv = with_req(json!({"Method": "GET", "Query": "{\"a\":\"1\"}"})).unwrap();
        assert_eq!(inv.query, [("a".into(), "1".into())]);
    }

    /// Each member the host fills, in each adversarial shape the bench
    /// measures: read within bounds (`Ok`, and what was kept) or refused with
    /// a 400 before anything grows. Memory per shape is the bench's to show.
    #[test]
    fn every_member_in_every_adversarial_shape_gets_its_answer() {
        let wide = format!("[{}]", vec!["0"; 50_000].join(","));
        let wide_values = format!(r#"{{"x-many":[{}]}}"#, vec![r#""v""#; 50_000].join(","));
        let deep = format!(r#"{{"a":{}1{}}}"#, "[".repeat(5_000), "]".repeat(5_000));
        let keys = format!(
            "{{{}}}",
            (0..5_000)
                .map(|i| format!(r#""k{i}":"v""#))
                .collect::<Vec<_>>()
                .join(",")
        );
        let long_value = format!(r#"{{"x-long":"{}"}}"#, "a".repeat(1 << 20));
        let long_string = format!(r#""{}""#, "a".repeat(1 << 20));
        type Kept = fn(&Invocation) -> bool;
        let nothing: Kept = |i| i.query.is_empty() && i.params.is_empty() && i.headers.is_empty();
        let cases: &[(&str, &str, &str, Result<Kept, u16>)] = &[
            ("Query", "wide array", &wide, Ok(nothing)),
            ("Query", "deep nesting", &deep, Ok(nothing)),
            ("Query", "many keys", &keys, Err(400)),
            (
                "Query",
                "long string",
                &long_value,
                Ok(|i| i.query[0].1.len() == 1 << 20),
            ),
            ("Params", "wide array", &wide, Ok(nothing)),
            ("Params", "deep nesting", &deep, Ok(nothing)),
            ("Params", "many keys", &keys, Err(400)),
            (
                "Params",
                "long string",
                &long_value,
                Ok(|i| i.param("x-long").map(str::len) == Some(1 << 20)),
            ),
            ("Headers", "wide array", &wide_values, Err(400)),
            ("Headers", "deep nesting", &deep, Ok(nothing)),
            ("Headers", "many keys", &keys, Err(400)),
            (
                "Headers",
                "long string",
                &long_value,
                Ok(|i| i.header("x-long").is_some_and(|v| v.len() == 1 << 20)),
            ),
            ("Identities", "wide array", &wide, Ok(nothing)),
            ("Identities", "deep nesting", &deep, Ok(nothing)),
            ("Identities", "many keys", &keys, Ok(nothing)),
            ("Identities", "long string", &long_string, Ok(nothing)),
            ("Body", "wide array", &wide, Ok(|i| i.body.len() == 100_001)),
            (
                "Body",
                "deep nesting",
                &deep,
                Ok(|i| i.body.starts_with(b"{\"a\":[[[")),
            ),
            (
                "Body",
                "many keys",
                &keys,
                Ok(|i| i.body.starts_with(b"{\"k0\":\"v\"")),
            ),
            (
                "Body",
                "long string",
                &long_string,
                Ok(|i| i.body.len() == 1 << 20),
            ),
        ];
        for (member, shape, value, expected) in cases {
            let envelope = format!(
                r#"{{"Data":{{"req":{{"Method":"GET","{member}":{value}}}}},"Metadata":{{}}}}"#
            );
            let got = invocation_from(
                "token",
                envelope.as_bytes(),
                invocation_id(&Default::default()),
            );
            match (expected, got) {
                (Ok(kept), Ok(inv)) => assert!(kept(&inv), "{member}: {shape}"),
                (Err(status), Err(p)) => {
                    assert_eq!(p.status, *status, "{member}: {shape}");
                    assert!(p.detail.contains(member), "{member}: {shape}: {}", p.detail);
                }
                (expected, got) => panic!(
                    "{member}: {shape}: expected {:?}, got {:?}",
                    expected.map(|_| "read"),
                    got.map(|_| "read").map_err(|p| p.status)
                ),
            }
        }
    }

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
        let inv = invocation_from(
            "order",
            envelope.to_string().as_bytes(),
            invocation_id(&Default::default()),
        )
        .unwrap();
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
        let inv = invocation_from(
            "blobs",
            envelope.to_string().as_bytes(),
            invocation_id(&Default::default()),
        )
        .unwrap();
        assert_eq!(inv.method, Method::PUT);
        assert_eq!(&inv.body[..], &[0x00, 0xFF]);
    }

    #[test]
    fn old_and_odd_shapes_are_read() {
        let envelope = json!({"Data": {"request": {
            "Method": "get", "Query": "{\"a\":\"1\"}", "Headers": {"X-One": "v", "X-Num": 5},
            "Params": {"n": 7, "b": true}, "Body": {"k": [1, 2]}
        }}});
        let inv = invocation_from(
            "f",
            envelope.to_string().as_bytes(),
            invocation_id(&Default::default()),
        )
        .unwrap();
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
                invocation_from(
                    "x",
                    bad.to_string().as_bytes(),
                    invocation_id(&Default::default())
                )
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
