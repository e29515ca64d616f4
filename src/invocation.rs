//! What a function receives and returns, whichever way the host delivered the
//! request: an [`Invocation`] in, a [`Reply`] out. Both protocol adapters
//! (`protocol::forward`, `protocol::payload`) produce and consume these, and
//! the functions see nothing else of HTTP.

pub use crate::body_stream::BodyStream;
use crate::problem::Problem;
use crate::telemetry::TraceHeaders;
use actix_web::http::{
    Method, StatusCode,
    header::{HeaderMap, HeaderName, HeaderValue},
};
use bytes::Bytes;
use std::borrow::Cow;

/// One function call, independent of how the host delivered it.
#[derive(Debug)]
pub struct Invocation {
    pub function: &'static str,
    pub method: Method,
    /// Route values (`{name}`, `{*path}`); an absent optional value is
    /// missing. A handful at most, so a list: no hasher to seed per request.
    pub params: Vec<(String, String)>,
    /// Query pairs in order; a key may repeat (forward mode comma-joins them).
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The body not read yet, for a function that streams it (blob uploads
    /// in proxy and forward mode, within their own limit); `body` is then empty.
    pub body_stream: Option<BodyStream>,
    /// The host's `X-Azure-Functions-InvocationId` (see [`invocation_id`]).
    pub invocation_id: InvocationId,
    /// The caller's W3C trace context: the request's own headers in proxy and
    /// forward mode, the envelope's `Data.req.Headers` in payload mode.
    pub trace: TraceHeaders,
    /// How the host delivered it.
    pub protocol: Protocol,
}

/// How the Functions host delivered an invocation (A8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `enableProxyingHttpRequest`: the request itself, streamed (YARP).
    Proxy,
    /// `enableForwardingHttpRequest`: the request, buffered by the host.
    Forward,
    /// A `{Data, Metadata}` envelope.
    Payload,
}

/// The header only proxy mode sets (to the same GUID as the host's
/// `X-Azure-Functions-InvocationId`).
pub const PROXY_INVOCATION_ID_HEADER: &str = "x-ms-invocation-id";

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Proxy => "proxy",
            Protocol::Forward => "forward",
            Protocol::Payload => "payload",
        }
    }

    /// Proxy or forward mode, from the host's headers. In proxy mode the host
    /// *overwrites* `X-Azure-Functions-InvocationId` and sets
    /// `x-ms-invocation-id` to the same GUID; in forward mode it *appends* its
    /// id to whatever the caller sent, so a caller cannot make a forwarded
    /// request look proxied. Only labels and the response-size cap depend on
    /// this, never an authorization decision.
    pub fn of_request(headers: &HeaderMap) -> Self {
        host_invocation(headers).1
    }
}

/// The invocation's id ([`invocation_id`]) and how the host delivered it
/// ([`Protocol::of_request`]), from one read of the host's id header.
pub fn host_invocation(headers: &HeaderMap) -> (InvocationId, Protocol) {
    let mut values = headers.get_all(&INVOCATION_ID);
    let first = values.next();
    // The last of two or more; none when there is only one.
    let last = values.next_back();
    let host = host_guid(last.or(first));
    // Proxy mode: one host id, a GUID, and one proxy header equal to it
    // (looked for only then).
    let protocol = match (first, last, host) {
        (Some(id), None, Some(_)) => {
            let mut proxy = headers.get_all(&PROXY_INVOCATION_ID);
            match (proxy.next(), proxy.next()) {
                (Some(p), None) if p.as_bytes().eq_ignore_ascii_case(id.as_bytes()) => {
                    Protocol::Proxy
                }
                _ => Protocol::Forward,
            }
        }
        _ => Protocol::Forward,
    };
    (InvocationId::or_fresh(host), protocol)
}

/// The trace context in a request's headers (values that aren't text are skipped).
pub fn trace_of(headers: &HeaderMap) -> TraceHeaders {
    static TRACEPARENT: HeaderName = HeaderName::from_static(app_telemetry::TRACEPARENT);
    static TRACESTATE: HeaderName = HeaderName::from_static(app_telemetry::TRACESTATE);
    let named = |name: &'static HeaderName| {
        headers
            .get_all(name)
            .filter_map(move |v| Some((name.as_str(), v.to_str().ok()?)))
    };
    let mut parents = named(&TRACEPARENT).peekable();
    // Without a traceparent, tracestate means nothing (W3C Trace Context):
    // not looked up.
    if parents.peek().is_none() {
        return TraceHeaders::default();
    }
    TraceHeaders::from_pairs(parents.chain(named(&TRACESTATE)))
}

/// A response body sent as it arrives (proxy mode: the host streams it on),
/// with its exact length.
pub struct StreamedBody {
    pub length: u64,
    pub stream: futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>>,
}

impl std::fmt::Debug for StreamedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StreamedBody({} bytes)", self.length)
    }
}

/// Why a request body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// More than the limit: nothing is kept.
    TooLarge,
    /// The connection failed mid-body.
    Broken(String),
}

/// Reads a request body up to `limit` bytes, never buffering past it. Both
/// adapters read bodies with this.
pub async fn read_body(
    mut payload: actix_web::web::Payload,
    limit: usize,
) -> Result<Bytes, BodyError> {
    use futures::StreamExt;
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| BodyError::Broken(e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The header the host adds to every call it makes to the handler.
pub const INVOCATION_ID_HEADER: &str = "x-azure-functions-invocationid";
const INVOCATION_ID: HeaderName = HeaderName::from_static(INVOCATION_ID_HEADER);
const PROXY_INVOCATION_ID: HeaderName = HeaderName::from_static(PROXY_INVOCATION_ID_HEADER);

/// The invocation id to correlate with: the host's, never the caller's.
///
/// The host copies the caller's headers and then *appends* its own
/// `X-Azure-Functions-InvocationId` (`DefaultHttpWorkerService.AddHeaders`), so
/// a caller-sent id arrives first and the host's last. Only the last value is
/// taken, and only as a hyphenated GUID; anything else (or none, outside the
/// host) gets a fresh id, so caller-supplied text never reaches logs or records.
pub fn invocation_id(headers: &HeaderMap) -> InvocationId {
    InvocationId::or_fresh(host_guid(headers.get_all(&INVOCATION_ID).next_back()))
}

/// A header value that is a hyphenated GUID.
fn host_guid(value: Option<&HeaderValue>) -> Option<uuid::Uuid> {
    value
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() == 36)
        .and_then(|v| uuid::Uuid::try_parse(v).ok())
}

/// An invocation's id: a GUID, shown lower-case and hyphenated. Kept as its
/// 16 bytes, so passing it around allocates nothing; it is written out only
/// where a log line, span or record shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvocationId(uuid::Uuid);

impl InvocationId {
    /// The host's id, or (none, outside the host) a fresh one.
    fn or_fresh(host: Option<uuid::Uuid>) -> Self {
        // A correlation id, not a secret: a fast generator will do.
        Self(host.unwrap_or_else(|| {
            uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid()
        }))
    }
}

impl std::fmt::Display for InvocationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            self.0
                .hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer()),
        )
    }
}

impl serde::Serialize for InvocationId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A query string's pairs, decoded as `application/x-www-form-urlencoded`
/// (what `url::form_urlencoded::parse` gives). Most queries have nothing to
/// decode; those are split without the decoder's per-byte passes.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    if query.is_empty() {
        return Vec::new();
    }
    let bytes = query.as_bytes();
    // Every search here is memchr (word-wide, not per byte), at ASCII bytes,
    // so every slice is on a char boundary.
    if memchr::memchr2(b'%', b'+', bytes).is_some() {
        return url::form_urlencoded::parse(bytes).into_owned().collect();
    }
    let mut pairs = Vec::new();
    let mut start = 0;
    for end in memchr::memchr_iter(b'&', bytes).chain([bytes.len()]) {
        let pair = &query[start..end];
        start = end + 1;
        if !pair.is_empty() {
            let (key, value) = match memchr::memchr(b'=', pair.as_bytes()) {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, ""),
            };
            pairs.push((key.to_owned(), value.to_owned()));
        }
    }
    pairs
}

/// The 400 for a query parameter that may be given only once.
pub fn repeated_query_parameter(name: &str) -> Problem {
    Problem::bad_request(format!("query parameter {name} is given more than once"))
}

impl Invocation {
    pub fn param(&self, name: &str) -> Option<&str> {
        // The last one, as a map built from the pairs would keep.
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// A query parameter given at most once; a repeated one is a 400.
    pub fn query_one(&self, name: &str) -> Result<Option<&str>, Problem> {
        let mut values = self.query.iter().filter(|(k, _)| k == name);
        let first = values.next().map(|(_, v)| v.as_str());
        if values.next().is_some() {
            return Err(repeated_query_parameter(name));
        }
        Ok(first)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A function's answer, independent of how it goes back to the host.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    /// Empty for none; a constant for most replies (no allocation).
    pub content_type: Cow<'static, str>,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Sent instead of `body` when present (only proxy mode streams).
    pub stream: Option<StreamedBody>,
}

impl Reply {
    pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Self {
        Self {
            status,
            content_type: Cow::Borrowed("application/json"),
            headers: vec![],
            body: {
                // Most replies are small: one allocation, no regrowth.
                let mut body = Vec::with_capacity(512);
                serde_json::to_writer(&mut body, value).expect("serializable reply");
                Bytes::from(body)
            },
            stream: None,
        }
    }

    pub fn ok_json(value: &impl serde::Serialize) -> Self {
        Self::json(StatusCode::OK, value)
    }

    pub fn bytes(
        status: StatusCode,
        content_type: impl Into<Cow<'static, str>>,
        body: Bytes,
    ) -> Self {
        Self {
            status,
            content_type: content_type.into(),
            headers: vec![],
            body,
            stream: None,
        }
    }

    /// A body streamed to the caller as it arrives.
    pub fn streamed(
        status: StatusCode,
        content_type: impl Into<Cow<'static, str>>,
        body: StreamedBody,
    ) -> Self {
        Self {
            stream: Some(body),
            ..Self::bytes(status, content_type, Bytes::new())
        }
    }

    pub fn empty(status: StatusCode) -> Self {
        Self {
            status,
            content_type: Cow::Borrowed(""),
            headers: vec![],
            body: Bytes::new(),
            stream: None,
        }
    }

    /// The reply as an HTTP response (forward mode, and payload-mode errors
    /// that are not the function's own).
    pub fn into_response(self) -> actix_web::HttpResponse {
        let mut res = actix_web::HttpResponse::build(self.status);
        match self.content_type {
            _ if self.content_type.is_empty() => {}
            // A constant needs no copy.
            Cow::Borrowed(constant) => {
                // Checked at compile time: `from_static` checks each byte
                // when it runs, and these two are most replies.
                const JSON: HeaderValue = HeaderValue::from_static("application/json");
                const PROBLEM: HeaderValue = HeaderValue::from_static("application/problem+json");
                let value = match constant {
                    "application/json" => JSON,
                    "application/problem+json" => PROBLEM,
                    other => HeaderValue::from_static(other),
                };
                res.insert_header((actix_web::http::header::CONTENT_TYPE, value));
            }
            Cow::Owned(given) => {
                res.content_type(given);
            }
        }
        for (k, v) in self.headers {
            res.append_header((k, v));
        }
        match self.stream {
            Some(s) => res.body(actix_web::body::SizedStream::new(s.length, s.stream)),
            None => res.body(self.body),
        }
    }

    pub fn from_problem(problem: &Problem) -> Self {
        Self {
            status: StatusCode::from_u16(problem.status).unwrap_or(StatusCode::BAD_GATEWAY),
            content_type: Cow::Borrowed("application/problem+json"),
            headers: vec![],
            body: Bytes::from(serde_json::to_vec(problem).expect("serializable problem")),
            stream: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "7c3e1b9a-4f0d-4b8e-9a51-2d6f0c8e1a34";

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                INVOCATION_ID_HEADER.parse().unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn with_proxy_id(mut h: HeaderMap, value: &str) -> HeaderMap {
        h.append(
            PROXY_INVOCATION_ID_HEADER.parse().unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    #[test]
    fn trace_context_is_read_from_the_request_headers() {
        const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let of = |pairs: &[(&'static str, &[u8])]| {
            let mut h = HeaderMap::new();
            for (name, value) in pairs {
                h.append(
                    HeaderName::from_static(name),
                    HeaderValue::from_bytes(value).unwrap(),
                );
            }
            trace_of(&h)
        };
        let both = of(&[("traceparent", PARENT.as_bytes()), ("tracestate", b"a=1")]);
        assert_eq!(both.traceparent.as_deref(), Some(PARENT));
        assert_eq!(both.tracestate.as_deref(), Some("a=1"));
        // A tracestate alone, a traceparent that is not text, or two of them: none.
        for pairs in [
            &[("tracestate", &b"a=1"[..])][..],
            &[("traceparent", b"00-\xff"), ("tracestate", b"a=1")],
            &[
                ("traceparent", PARENT.as_bytes()),
                ("traceparent", PARENT.as_bytes()),
            ],
        ] {
            assert_eq!(of(pairs), TraceHeaders::default(), "{pairs:?}");
        }
    }

    #[test]
    fn proxy_mode_is_both_host_headers_with_one_guid() {
        assert_eq!(
            Protocol::of_request(&with_proxy_id(headers(&[HOST]), HOST)),
            Protocol::Proxy
        );
        assert_eq!(Protocol::of_request(&headers(&[HOST])), Protocol::Forward);
        // Forward mode appends the host's id to a caller's pair: not proxy.
        assert_eq!(
            Protocol::of_request(&with_proxy_id(headers(&[HOST, HOST]), HOST)),
            Protocol::Forward
        );
        let other = "0b6c3a2e-1d4f-4e5a-8b7c-9d0e1f2a3b4c";
        assert_eq!(
            Protocol::of_request(&with_proxy_id(headers(&[HOST]), other)),
            Protocol::Forward
        );
        assert_eq!(
            Protocol::of_request(&with_proxy_id(headers(&[HOST]), "x")),
            Protocol::Forward
        );
    }

    #[test]
    fn query_pairs_decode_as_form_urlencoded_does() {
        for query in [
            "",
            "resource=https://vault.azure.net",
            "a=1&b=2&a=3",
            "&&a&=x&b==c&",
            "a=b=c&=v&k=&&",
            "x=1&y=%",
            "scope=https%3A%2F%2Fvault.azure.net%2F.default",
            "q=a+b&r=%2B&s=%zz&t=%E2%82%AC&u=%FF",
            "name=caf\u{e9}&x=\u{1f600}",
        ] {
            let expected: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
            assert_eq!(query_pairs(query), expected, "{query:?}");
        }
    }

    #[test]
    fn invocation_id_is_the_hosts_last_guid() {
        // A caller-sent id comes first; the host appends its own.
        assert_eq!(
            invocation_id(&headers(&["forged-by-caller", HOST])).to_string(),
            HOST
        );
        assert_eq!(invocation_id(&headers(&[HOST])).to_string(), HOST);
        let upper = HOST.to_ascii_uppercase();
        assert_eq!(invocation_id(&headers(&[&upper])).to_string(), HOST);
    }

    #[test]
    fn one_read_of_the_host_headers_gives_the_id_and_the_mode() {
        let other = "0b6c3a2e-1d4f-4e5a-8b7c-9d0e1f2a3b4c";
        let cases = [
            (
                with_proxy_id(headers(&[HOST]), HOST),
                Some(HOST),
                Protocol::Proxy,
            ),
            (
                with_proxy_id(headers(&[HOST]), &HOST.to_ascii_uppercase()),
                Some(HOST),
                Protocol::Proxy,
            ),
            (headers(&[HOST]), Some(HOST), Protocol::Forward),
            (
                with_proxy_id(headers(&[other, HOST]), other),
                Some(HOST),
                Protocol::Forward,
            ),
            (with_proxy_id(headers(&["x"]), "x"), None, Protocol::Forward),
            (with_proxy_id(headers(&[]), HOST), None, Protocol::Forward),
        ];
        for (h, id, protocol) in cases {
            let (got_id, got_protocol) = host_invocation(&h);
            assert_eq!(got_protocol, protocol, "{h:?}");
            assert_eq!(got_protocol, Protocol::of_request(&h), "{h:?}");
            if let Some(id) = id {
                assert_eq!(got_id.to_string(), id, "{h:?}");
                assert_eq!(got_id, invocation_id(&h), "{h:?}");
            }
        }
    }

    #[test]
    fn anything_but_a_guid_gets_a_fresh_id() {
        for bad in [
            vec![],
            vec!["<script>alert(1)</script>"],
            vec![HOST, "not-a-guid"],
            vec!["{7c3e1b9a-4f0d-4b8e-9a51-2d6f0c8e1a34}"],
            vec!["7c3e1b9a4f0d4b8e9a512d6f0c8e1a34"],
        ] {
            let id = invocation_id(&headers(&bad)).to_string();
            assert!(
                uuid::Uuid::try_parse(&id).is_ok() && id.len() == 36,
                "{bad:?}"
            );
            assert!(bad.iter().all(|b| !b.contains(&id)), "{bad:?} → {id}");
        }
    }
}
