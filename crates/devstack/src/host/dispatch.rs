//! The front door on 127.0.0.1:7071: routing, function keys, and dispatch in
//! proxy, forward or invocation-payload mode, following the host's rules (A7–A12).

use super::app::{AuthLevel, Function};
use super::{HostMode, HostShared};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value, json};
use std::time::Duration;

/// The host version the stand-in reports.
pub const HOST_VERSION: &str = "4.1037.0.0";

/// `Uri.EscapeDataString`: everything but unreserved characters.
const DATA: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The client's query, parsed like ASP.NET: keys in first-seen order, a
/// repeated key's values comma-joined.
pub fn query_collection(raw: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vec![];
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        match out.iter_mut().find(|(key, _)| *key == k) {
            Some((_, existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            None => out.push((k.into_owned(), v.into_owned())),
        }
    }
    out
}

/// The query string forward mode sends: rebuilt, re-escaped (case 13).
pub fn rebuilt_query(raw: &str) -> String {
    query_collection(raw)
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, DATA),
                utf8_percent_encode(v, DATA)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn empty(status: StatusCode) -> HttpResponse {
    HttpResponse::build(status).finish()
}

/// How one invocation reaches the handler (A8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dispatch {
    Proxy,
    Forward,
    Payload,
}

fn dispatch_for(function: &Function, host: &HostShared) -> Dispatch {
    let http = function.http_in_and_out;
    match host.mode {
        HostMode::Payload => Dispatch::Payload,
        HostMode::Forward if http => Dispatch::Forward,
        HostMode::Proxy if http => Dispatch::Proxy,
        HostMode::FromHostJson if http && host.app.host.proxying => Dispatch::Proxy,
        HostMode::FromHostJson if http && host.app.host.forwarding => Dispatch::Forward,
        _ => Dispatch::Payload,
    }
}

/// Reads the whole body, as forward and payload modes need it.
async fn buffered_body(payload: &mut web::Payload) -> Result<web::Bytes, HttpResponse> {
    // Core Tools accepts up to 100 MB (Kestrel's limit).
    let mut buf = web::BytesMut::new();
    while let Some(chunk) = futures_util::StreamExt::next(payload).await {
        let Ok(chunk) = chunk else {
            return Err(empty(StatusCode::BAD_REQUEST));
        };
        if buf.len() + chunk.len() > super::MAX_REQUEST_BODY {
            return Err(empty(StatusCode::PAYLOAD_TOO_LARGE));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

pub async fn front_door(
    req: HttpRequest,
    mut payload: web::Payload,
    host: web::Data<HostShared>,
) -> HttpResponse {
    let prefix = &host.app.host.route_prefix;
    // Decide and dispatch on one path: dot segments (in any encoding) are
    // resolved first, as Kestrel does.
    let normalized = crate::http_path::normalize(req.path());
    let path = normalized.as_str();
    let relative = if prefix.is_empty() {
        Some(path.trim_start_matches('/'))
    } else {
        let p = format!("/{prefix}");
        path.strip_prefix(&p)
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
            .or_else(|| {
                // The prefix itself is matched case-insensitively too.
                (path.len() >= p.len() && path[..p.len()].eq_ignore_ascii_case(&p))
                    .then(|| &path[p.len()..])
            })
            .map(|r| r.trim_start_matches('/'))
    };
    let Some(relative) = relative else {
        return empty(StatusCode::NOT_FOUND);
    };
    let method = req.method().as_str().to_ascii_uppercase();
    // A method mismatch is a failed route constraint: 404, not 405.
    let found = host.app.functions.iter().find_map(|f| {
        let allowed = f.methods.is_empty() || f.methods.contains(&method);
        if !allowed {
            return None;
        }
        f.route.matches(relative).map(|values| (f, values))
    });
    let Some((function, route_values)) = found else {
        return empty(StatusCode::NOT_FOUND);
    };

    let level = key_level(&req, &host);
    if host.enforce_keys {
        let ok = match function.auth_level {
            AuthLevel::Anonymous => true,
            AuthLevel::Function => matches!(level, Some(AuthLevel::Function | AuthLevel::Admin)),
            AuthLevel::Admin => level == Some(AuthLevel::Admin),
        };
        if !ok {
            return empty(StatusCode::UNAUTHORIZED);
        }
    }

    let content_length = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let dispatch = dispatch_for(function, &host);
    let body = if dispatch == Dispatch::Proxy {
        // HttpRequestBodySizeMiddleware: a declared length over the limit is
        // refused up front, with the host's current 500 (issue #10519).
        if content_length.is_some_and(|n| n > host.body_limit) {
            return empty(StatusCode::INTERNAL_SERVER_ERROR);
        }
        web::Bytes::new()
    } else {
        let body = match buffered_body(&mut payload).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        // A chunked request (no Content-Length) loses its body in these modes (case 17).
        if content_length.is_none() && !body.is_empty() {
            tracing::error!(
                "'Transfer-Encoding: chunked' header can not be used when content object is not specified."
            );
            return empty(StatusCode::INTERNAL_SERVER_ERROR);
        }
        body
    };

    let Some(port) = host
        .worker
        .ready(host.app.host.initialization_timeout * 4)
        .await
    else {
        return empty(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let invocation_id = uuid::Uuid::new_v4().to_string();
    if dispatch == Dispatch::Proxy {
        // The response streams for as long as it takes (YARP's activity
        // timeout applies instead of the function timeout's wrapper here).
        return proxy(&req, payload, port, &invocation_id, &host).await;
    }
    let call = async {
        if dispatch == Dispatch::Payload {
            invoke_payload(
                &req,
                &body,
                function,
                &route_values,
                level,
                port,
                &invocation_id,
                &host,
            )
            .await
        } else {
            forward(&req, path, &body, port, &invocation_id, &host).await
        }
    };
    let timeout = host
        .app
        .host
        .function_timeout
        .unwrap_or(Duration::from_secs(30 * 60));
    match tokio::time::timeout(timeout, call).await {
        Ok(response) => response,
        Err(_) => {
            tracing::error!(function = %function.name, "Timeout value of {timeout:?} was exceeded by function: Functions.{}", function.name);
            host.worker.restart();
            empty(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

/// The level a key grants: header `x-functions-key` first, then `?code=`.
fn key_level(req: &HttpRequest, host: &HostShared) -> Option<AuthLevel> {
    let key = req
        .headers()
        .get("x-functions-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            query_collection(req.query_string())
                .into_iter()
                .find(|(k, _)| k == "code")
                .map(|(_, v)| v)
        })?;
    // Constant time: a caller must not learn a key byte by byte from timings.
    let eq = |k: &str| crate::identity_endpoint::secret_eq(Some(&key), k);
    if eq(&host.keys.master) {
        Some(AuthLevel::Admin)
    } else if eq(&host.keys.function) {
        Some(AuthLevel::Function)
    } else {
        None
    }
}

/// Hop-by-hop headers a proxy never passes on (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Proxy mode (A10, A10b), as YARP with `HttpTransformer.Default` and the
/// host's `ScriptInvocationRequestTransformer` do it: the path and query
/// verbatim, `Host` replaced, `X-Forwarded-*` set, the invocation headers
/// overwritten, the user agent untouched, bodies streamed both ways (request
/// bodies counted against the limit), redirects not followed, and connection
/// failures retried as `RetryProxyHandler` does.
async fn proxy(
    req: &HttpRequest,
    mut payload: web::Payload,
    port: u16,
    invocation_id: &str,
    host: &HostShared,
) -> HttpResponse {
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let url = format!("http://127.0.0.1:{port}{path_and_query}");
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
        .unwrap_or(reqwest::Method::GET);
    let mut out = host.proxy_http.request(method, url);
    const REPLACED: &[&str] = &[
        "host",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-prefix",
        "x-azure-functions-hostversion",
        "x-azure-functions-invocationid",
        "x-ms-invocation-id",
    ];
    for (name, value) in req.headers() {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) || REPLACED.contains(&n) {
            continue;
        }
        out = out.header(n, value.as_bytes());
    }
    let public_host = req
        .headers()
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let peer = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    out = out
        .header("X-Forwarded-For", peer)
        .header(
            "X-Forwarded-Proto",
            req.connection_info().scheme().to_owned(),
        )
        .header("X-Forwarded-Host", public_host)
        .header("X-Azure-Functions-HostVersion", HOST_VERSION)
        .header("X-Azure-Functions-InvocationId", invocation_id)
        .header("x-ms-invocation-id", invocation_id);

    // RetryProxyHandler: up to 10 attempts on connection failures, 50 ms
    // doubling to at most 250 ms. Nothing of the body is read before a connection.
    let mut delay = Duration::from_millis(50);
    for attempt in 1.. {
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(_) => break,
            Err(_) if attempt < 10 => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(250));
            }
            Err(_) => return empty(StatusCode::INTERNAL_SERVER_ERROR),
        }
    }

    // actix's payload lives on this thread; a small channel carries it to
    // reqwest, so at most a few chunks are in flight.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<web::Bytes, std::io::Error>>(4);
    let limit = host.body_limit;
    actix_web::rt::spawn(async move {
        let mut seen: u64 = 0;
        while let Some(chunk) = futures_util::StreamExt::next(&mut payload).await {
            let item = match chunk {
                Ok(chunk) => {
                    seen += chunk.len() as u64;
                    if seen > limit {
                        Err(std::io::Error::other("request body over the host's limit"))
                    } else {
                        Ok(chunk)
                    }
                }
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                return;
            }
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    match out.body(reqwest::Body::wrap_stream(body)).send().await {
        Ok(res) => {
            let mut builder = response_head(&res, HOP_BY_HOP);
            let length = res.content_length();
            let stream = res.bytes_stream();
            match length {
                // A declared length stays declared (Content-Length, not chunked).
                Some(n) => builder.body(actix_web::body::SizedStream::new(n, stream)),
                None => builder.streaming(stream),
            }
        }
        // A forwarding error other than a client disconnect: 500.
        Err(_) => empty(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// The handler's status and headers for the client, less `skipped` and
/// `Content-Length` (the body sets its own).
fn response_head(res: &reqwest::Response, skipped: &[&str]) -> actix_web::HttpResponseBuilder {
    let mut builder = HttpResponse::build(
        StatusCode::from_u16(res.status().as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    );
    for (name, value) in res.headers() {
        let n = name.as_str();
        if skipped.contains(&n) || n == "content-length" {
            continue;
        }
        builder.append_header((n, value.as_bytes()));
    }
    builder
}

async fn forward(
    req: &HttpRequest,
    path: &str,
    body: &web::Bytes,
    port: u16,
    invocation_id: &str,
    host: &HostShared,
) -> HttpResponse {
    let mut url = format!("http://127.0.0.1:{port}{path}");
    let query = rebuilt_query(req.query_string());
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query);
    }
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
        .unwrap_or(reqwest::Method::GET);
    let mut out = host.http.request(method, url);
    let mut user_agent = None;
    for (name, value) in req.headers() {
        let n = name.as_str();
        if n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("transfer-encoding") {
            continue;
        }
        if n.eq_ignore_ascii_case("user-agent") {
            user_agent = value.to_str().ok().map(str::to_owned);
            continue;
        }
        out = out.header(n, value.as_bytes());
    }
    out = out
        .header("X-Azure-Functions-HostVersion", HOST_VERSION)
        .header("X-Azure-Functions-InvocationId", invocation_id)
        .header(
            "User-Agent",
            match user_agent {
                Some(ua) => format!("{ua} Azure-Functions-Host/{HOST_VERSION}"),
                None => format!("Azure-Functions-Host/{HOST_VERSION}"),
            },
        );
    if !body.is_empty() {
        out = out.body(body.clone());
    }
    match out.send().await {
        Ok(res) => {
            let mut builder = response_head(&res, &["transfer-encoding", "connection"]);
            match res.bytes().await {
                Ok(bytes) => builder.body(bytes),
                Err(_) => empty(StatusCode::INTERNAL_SERVER_ERROR),
            }
        }
        // Handler down or reset: the host's ExceptionMiddleware answers 500, empty.
        Err(_) => empty(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// `Data.req` for the HTTP trigger (A11).
pub fn http_trigger_data(
    req: &HttpRequest,
    body: &web::Bytes,
    route_values: &super::route::RouteValues,
    level: Option<AuthLevel>,
) -> Value {
    let mut headers: Vec<(String, Vec<String>)> = vec![];
    for (name, value) in req.headers() {
        let v = value.to_str().unwrap_or_default().to_owned();
        match headers
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(name.as_str()))
        {
            Some((_, vs)) => vs.push(v),
            None => headers.push((canonical(name.as_str()), vec![v])),
        }
    }
    let host_header = req
        .headers()
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost:7071");
    let raw_query = req.query_string();
    let url = format!(
        "http://{host_header}{}{}{raw_query}",
        req.uri().path(),
        if raw_query.is_empty() { "" } else { "?" }
    );
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let identities = match level {
        Some(level) => json!([{
            "AuthenticationType": "WebJobsAuthLevel",
            "IsAuthenticated": true,
            "Claims": [
                {"Type": "http://schemas.microsoft.com/2017/07/functions/claims/authlevel", "Value": format!("{level:?}")},
                {"Type": "http://schemas.microsoft.com/2017/07/functions/claims/keyid", "Value": if level == AuthLevel::Admin { "master" } else { "default" }}
            ],
            "Name": null
        }]),
        None => {
            json!([{ "AuthenticationType": null, "IsAuthenticated": false, "Claims": [], "Name": null }])
        }
    };
    let mut data = json!({
        "Url": url,
        "Method": req.method().as_str(),
        "Query": Map::from_iter(query_collection(raw_query).into_iter().map(|(k, v)| (k, json!(v)))),
        "Headers": Map::from_iter(headers.into_iter().map(|(k, v)| (k, json!(v)))),
        "Params": Map::from_iter(route_values.iter().map(|(k, v)| (k.clone(), json!(v)))),
        "Identities": identities,
    });
    if !body.is_empty() {
        data["Body"] = if content_type.starts_with("application/octet-stream")
            || content_type.starts_with("multipart/")
        {
            json!(STANDARD.encode(body))
        } else {
            json!(String::from_utf8_lossy(body))
        };
    }
    data
}

/// Kestrel keeps well-known header names in canonical case.
fn canonical(name: &str) -> String {
    const KNOWN: &[&str] = &[
        "Accept",
        "Authorization",
        "Content-Type",
        "Content-Length",
        "Host",
        "User-Agent",
        "Cookie",
    ];
    KNOWN
        .iter()
        .find(|k| k.eq_ignore_ascii_case(name))
        .map_or_else(|| name.to_owned(), |k| (*k).to_owned())
}

#[allow(clippy::too_many_arguments)]
async fn invoke_payload(
    req: &HttpRequest,
    body: &web::Bytes,
    function: &Function,
    route_values: &super::route::RouteValues,
    level: Option<AuthLevel>,
    port: u16,
    invocation_id: &str,
    host: &HostShared,
) -> HttpResponse {
    let req_data = http_trigger_data(req, body, route_values, level);
    let mut metadata = Map::new();
    for (k, v) in query_collection(req.query_string()) {
        if k != "code" {
            metadata.insert(k, json!(v));
        }
    }
    for (k, v) in route_values {
        metadata.insert(k.clone(), json!(v));
    }
    metadata.insert("Query".into(), req_data["Query"].clone());
    metadata.insert(
        "sys".into(),
        json!({
            "MethodName": function.name,
            "UtcNow": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            "RandGuid": uuid::Uuid::new_v4().to_string(),
        }),
    );
    let envelope = json!({
        "Data": { function.trigger_name.clone(): req_data },
        "Metadata": metadata,
    });
    let sent = host
        .http
        .post(format!("http://127.0.0.1:{port}/{}", function.name))
        .header("Content-Type", "application/json; charset=utf-8")
        .header("X-Azure-Functions-HostVersion", HOST_VERSION)
        .header("X-Azure-Functions-InvocationId", invocation_id)
        .header("User-Agent", format!("Azure-Functions-Host/{HOST_VERSION}"))
        .body(envelope.to_string())
        .send()
        .await;
    let Ok(res) = sent else {
        return empty(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = res.bytes().await.unwrap_or_default();
    let (response, logs) = map_payload_reply(
        status,
        &content_type,
        &bytes,
        function.http_output.as_deref(),
    );
    for line in logs {
        tracing::info!(invocation_id, function = %function.name, "{line}");
        host.logs
            .lock()
            .unwrap()
            .push((invocation_id.to_owned(), line));
    }
    response
}

fn get<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// Maps the handler's reply to the client response (A12): a non-2xx, non-JSON or
/// unreadable reply fails the invocation (500, empty, logs lost).
pub fn map_payload_reply(
    status: u16,
    content_type: &str,
    body: &[u8],
    output: Option<&str>,
) -> (HttpResponse, Vec<String>) {
    let failed = || (empty(StatusCode::INTERNAL_SERVER_ERROR), vec![]);
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if !(200..300).contains(&status) || !(media == "application/json" || media == "text/json") {
        return failed();
    }
    let Ok(reply) = serde_json::from_slice::<Value>(body) else {
        return failed();
    };
    let logs: Vec<String> = get(&reply, "Logs")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|l| l.as_str().map_or_else(|| l.to_string(), str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let res = match output {
        Some("$return") => get(&reply, "ReturnValue").cloned(),
        Some(name) => match get(&reply, "Outputs") {
            None | Some(Value::Null) => None,
            // Outputs without this binding: the host binds an empty object (case 28b).
            Some(outputs) => match get(outputs, name) {
                Some(res) => Some(res.clone()),
                None => return (HttpResponse::Ok().body("{}"), logs),
            },
        },
        None => None,
    };
    let Some(res) = res else {
        return (empty(StatusCode::NO_CONTENT), logs);
    };
    let res = match res {
        Value::String(s) => match serde_json::from_str::<Value>(&s) {
            Ok(v @ Value::Object(_)) => v,
            _ => return failed(),
        },
        v @ Value::Object(_) => v,
        _ => return failed(),
    };
    // Only `statusCode` counts; an unparsable or missing one is 200.
    let status = match get(&res, "statusCode") {
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .and_then(|s| StatusCode::from_u16(s).ok())
    .unwrap_or(StatusCode::OK);
    let mut builder = HttpResponse::build(status);
    let mut content_type_set = None;
    if let Some(Value::Object(headers)) = get(&res, "headers") {
        for (k, v) in headers {
            let value = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            if k.eq_ignore_ascii_case("content-type") {
                content_type_set = Some(value);
            } else {
                builder.append_header((k.as_str(), value));
            }
        }
    }
    let (text, default_type) = match get(&res, "body") {
        None | Some(Value::Null) => (String::new(), None),
        Some(Value::String(s)) => (s.clone(), None),
        Some(Value::Bool(b)) => (if *b { "True" } else { "False" }.to_owned(), None),
        Some(v @ (Value::Object(_) | Value::Array(_))) => (
            serde_json::to_string_pretty(v).unwrap_or_default(),
            Some("text/plain; charset=utf-8".to_owned()),
        ),
        Some(other) => (other.to_string(), None),
    };
    if let Some(ct) = content_type_set.or(default_type) {
        let lower = ct.to_ascii_lowercase();
        let texty = lower.starts_with("text/") || lower.contains("json") || lower.contains("xml");
        builder.insert_header((
            "Content-Type",
            if texty && !lower.contains("charset") {
                format!("{ct}; charset=utf-8")
            } else {
                ct
            },
        ));
    }
    (builder.body(text), logs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    fn reply(status: u16, ct: &str, body: Value) -> (u16, String, String, Vec<String>) {
        let (res, logs) = map_payload_reply(status, ct, body.to_string().as_bytes(), Some("res"));
        let status = res.status().as_u16();
        let ct = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = res.into_body().try_into_bytes().unwrap_or_default();
        (
            status,
            ct,
            String::from_utf8_lossy(&bytes).into_owned(),
            logs,
        )
    }

    #[test]
    fn case_13_query_is_rebuilt() {
        assert_eq!(rebuilt_query("b=x%20y&a=1&a=2"), "b=x%20y&a=1%2C2");
        assert_eq!(rebuilt_query("q=a+b&e="), "q=a%20b&e=");
    }

    #[test]
    fn case_23_24_status_code_headers_and_logs() {
        let r = reply(
            200,
            "application/json",
            json!({"Outputs":{"res":{"statusCode":"201","headers":{"Content-Type":"application/json"},"body":"{\"ok\":true}"}},"Logs":["a","b"]}),
        );
        assert_eq!(
            r,
            (
                201,
                "application/json; charset=utf-8".into(),
                "{\"ok\":true}".into(),
                vec!["a".into(), "b".into()]
            )
        );
        let lower = reply(
            200,
            "application/json; charset=utf-8",
            json!({"outputs":{"res":{"StatusCode":404,"Body":"nf"}}}),
        );
        assert_eq!((lower.0, lower.2.as_str()), (404, "nf"));
    }

    #[test]
    fn case_25_status_alone_is_ignored() {
        let r = reply(
            200,
            "application/json",
            json!({"Outputs":{"res":{"status":404,"body":"nf"}}}),
        );
        assert_eq!((r.0, r.2.as_str()), (200, "nf"));
    }

    #[test]
    fn case_26_non_2xx_non_json_or_bad_res_fail() {
        assert_eq!(reply(500, "application/json", json!({})).0, 500);
        assert_eq!(reply(200, "text/plain", json!({"Outputs":{}})).0, 500);
        assert_eq!(
            reply(
                200,
                "application/json",
                json!({"Outputs":{"res":"SomeBlah"}})
            )
            .0,
            500
        );
        let (res, logs) = map_payload_reply(200, "application/json", b"Hello World", Some("res"));
        assert_eq!((res.status().as_u16(), logs.len()), (500, 0));
    }

    #[test]
    fn case_28_missing_outputs_and_res() {
        assert_eq!(reply(200, "application/json", json!({"Logs":[]})).0, 204);
        let (status, _, body, _) = reply(200, "application/json", json!({"Outputs":{}}));
        assert_eq!((status, body.as_str()), (200, "{}"));
        let pretty = reply(
            200,
            "application/json",
            json!({"Outputs":{"res":{"body":{"a":1}}}}),
        );
        assert_eq!(pretty.1, "text/plain; charset=utf-8");
        assert!(pretty.2.contains('\n'));
    }
}
