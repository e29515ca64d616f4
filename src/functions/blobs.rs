//! `/api/blobs/{container}[/{*name}]`: list (GET container), read (GET), store
//! (PUT, the raw body with its content type) and delete (DELETE) blobs.
//!
//! Callers reach only the containers `BLOB_CONTAINERS` names. The audit
//! container is theirs to list and read, never to write: only `flow` writes
//! there. Both checks run before any call to Storage.

use super::Outcome;
use crate::azure::ClientError;
use crate::azure::Stage;
use crate::azure::blobs::{BlobBody, ByteRange, ListPage, Opened, ReadOptions, Write};
use crate::configuration::AzureSettings;
use crate::invocation::{BodyStream, Invocation, Protocol, Reply, StreamedBody};
use crate::names::{BlobName, ContainerName};
use crate::problem::{Problem, ProblemType};
use crate::state::AppState;
use actix_web::http::{Method, StatusCode};
use actix_web::web;
use serde_json::json;

/// Longest content type accepted on PUT (generous for a MIME type with parameters).
const MAX_CONTENT_TYPE_LEN: usize = 255;

pub async fn run(inv: Invocation, state: web::Data<AppState>) -> Outcome {
    let container = inv
        .param("container")
        .ok_or_else(|| Problem::bad_request("a container name is required"))?;
    // Bad input is a 400 before anything else, configured or not.
    let container = &ContainerName::parse(container)?;
    let name = inv.param("name").map(BlobName::parse).transpose()?;
    authorize(&state.settings, container, &inv.method)?;
    let store = state.azure.blobs.as_ref().map_err(Clone::clone)?;
    match (&inv.method, name.as_ref()) {
        (&Method::GET, None) => {
            let page = list_page(&inv)?;
            let listing = store.list(container, &page).await?;
            Ok(Reply::ok_json(&json!({
                "container": container,
                "blobs": listing.blobs,
                "next_marker": listing.next_marker,
            })))
        }
        (&Method::GET, Some(name)) => {
            let options = ReadOptions {
                range: byte_range(&inv),
                if_none_match: if_none_match(&inv)?,
            };
            let body = match store.open(container, name, &options).await? {
                Opened::Body(body) => body,
                Opened::NotModified { etag } => {
                    let mut reply = Reply::empty(StatusCode::NOT_MODIFIED);
                    reply.headers.extend(etag.map(|e| ("ETag".to_owned(), e)));
                    return Ok(reply);
                }
                Opened::Unsatisfiable { size } => return Ok(unsatisfiable(container, name, size)),
            };
            let head = Head::of(&body);
            let content_type = safe_content_type(body.content_type.clone());
            let status = if body.range.is_some() {
                StatusCode::PARTIAL_CONTENT
            } else {
                StatusCode::OK
            };
            // Only proxy mode streams: forward and payload mode buffer the
            // whole response in the host, so the handler caps them.
            let reply = if inv.protocol == Protocol::Proxy {
                let length = body.length;
                Reply::streamed(
                    status,
                    content_type,
                    StreamedBody {
                        length,
                        stream: body.stream,
                    },
                )
            } else {
                let bytes = body
                    .collect(container, name, state.limits.max_body_bytes)
                    .await?;
                Reply::bytes(status, content_type, bytes)
            };
            Ok(download(name.as_str(), head.apply(reply)))
        }
        (&Method::PUT, Some(name)) => {
            let content_type = content_type_of(&inv)?;
            let write = write_mode(&inv)?;
            let limit = state.settings.max_upload_bytes;
            let declared = inv
                .header("content-length")
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > limit) {
                return Err(ClientError::UploadTooLarge { limit }.into());
            }
            let body = inv
                .body_stream
                .unwrap_or_else(|| BodyStream::from_bytes(inv.body));
            let size = store
                .put_stream(container, name, &content_type, body, limit, write)
                .await?;
            Ok(Reply::json(
                StatusCode::CREATED,
                &json!({ "container": container, "name": name, "size": size, "content_type": content_type }),
            ))
        }
        (&Method::DELETE, Some(name)) => {
            store.delete(container, name).await?;
            Ok(Reply::empty(StatusCode::NO_CONTENT))
        }
        (method, None) => Err(Problem::bad_request(format!(
            "{method} needs a blob name: /api/blobs/{container}/<name>"
        ))
        .into()),
        (method, Some(_)) => {
            Err(Problem::bad_request(format!("{method} is not supported on blobs")).into())
        }
    }
}

/// The allow-list: `BLOB_CONTAINERS` may be read and written; the audit
/// container only read; anything else (the host's own containers among them)
/// not at all.
pub fn authorize(
    settings: &AzureSettings,
    container: &ContainerName,
    method: &Method,
) -> Result<(), Problem> {
    if *container == settings.audit_container {
        return if method == Method::GET {
            Ok(())
        } else {
            Err(Problem::new(
                StatusCode::FORBIDDEN,
                ProblemType::ContainerReadOnly,
                format!("{method} is not allowed on {container}: it is the audit container (AUDIT_CONTAINER), which callers may only list and read"),
            )
            .stage(Stage::Request)
            .hint("Audit records are written only by POST /api/flow, and never replaced or deleted."))
        };
    }
    if settings.blob_containers.contains(container) {
        return Ok(());
    }
    Err(Problem::new(
        StatusCode::FORBIDDEN,
        ProblemType::ContainerNotAllowed,
        format!("container {container} is not in BLOB_CONTAINERS, the containers this function may reach"),
    )
    .stage(Stage::Request)
    .hint("Add the container to the BLOB_CONTAINERS app setting (comma-separated) if callers should reach it, and give the app's identity a data role on that container only."))
}

/// `?max=` (1–5000, default 1000) and `?marker=` (from the previous page).
fn list_page(inv: &Invocation) -> Result<ListPage, Problem> {
    let max = match inv.query_one("max")? {
        None => ListPage::DEFAULT_MAX,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=ListPage::MAX_MAX).contains(n))
            .ok_or_else(|| {
                Problem::bad_request(format!(
                    "max must be a whole number from 1 to {}",
                    ListPage::MAX_MAX
                ))
            })?,
    };
    let marker = match inv.query_one("marker")? {
        None | Some("") => None,
        Some(m) if m.len() <= 1024 && m.bytes().all(|b| b.is_ascii_graphic()) => Some(m.to_owned()),
        Some(_) => {
            return Err(Problem::bad_request(
                "marker must be the next_marker of a previous page",
            ));
        }
    };
    Ok(ListPage { max, marker })
}

/// The PUT's content type, which is later sent back as a header: it must be a
/// plain `type/subtype[; params]` of visible ASCII.
fn content_type_of(inv: &Invocation) -> Result<String, Problem> {
    let Some(value) = inv.headers.get("content-type") else {
        return Ok("application/octet-stream".into());
    };
    let valid = value
        .to_str()
        .ok()
        .filter(|v| {
            v.len() <= MAX_CONTENT_TYPE_LEN && v.bytes().all(|b| (b' '..=b'~').contains(&b))
        })
        .filter(|v| {
            let essence = v.split(';').next().unwrap_or_default().trim();
            essence.split_once('/').is_some_and(|(t, s)| {
                let token = |x: &str| {
                    !x.is_empty()
                        && x.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
                };
                token(t) && token(s)
            })
        });
    valid.map(|v| v.trim().to_owned()).ok_or_else(|| {
        Problem::bad_request(format!(
            "Content-Type must be a MIME type such as text/plain, at most {MAX_CONTENT_TYPE_LEN} characters"
        ))
    })
}

/// Types a browser would run or render as a page: served as attachments.
fn is_active(essence: &str) -> bool {
    matches!(
        essence,
        "text/html"
            | "application/xhtml+xml"
            | "image/svg+xml"
            | "text/xml"
            | "application/xml"
            | "text/xsl"
            | "application/xslt+xml"
            | "application/pdf"
    ) || essence.ends_with("+xml")
        || essence.contains("javascript")
        || essence.contains("ecmascript")
}

/// A stored content type, if it is safe to send back as a header.
fn safe_content_type(content_type: Option<String>) -> String {
    content_type
        .filter(|t| {
            t.bytes().all(|b| (b' '..=b'~').contains(&b)) && t.len() <= MAX_CONTENT_TYPE_LEN
        })
        .unwrap_or_else(|| "application/octet-stream".into())
}

/// A stored blob as a response that cannot turn into a page of ours: the
/// browser may not sniff it or run anything in it, and active types download.
fn download(name: &str, mut reply: Reply) -> Reply {
    let essence = reply
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    reply
        .headers
        .push(("X-Content-Type-Options".into(), "nosniff".into()));
    reply.headers.push((
        "Content-Security-Policy".into(),
        "default-src 'none'; sandbox".into(),
    ));
    if is_active(&essence) {
        reply
            .headers
            .push(("Content-Disposition".into(), attachment(name)));
    }
    reply
}

/// What a download passes on from Storage: validators, ranges, the length.
struct Head {
    etag: Option<String>,
    last_modified: Option<String>,
    content_range: Option<String>,
}

impl Head {
    fn of(body: &BlobBody) -> Self {
        Self {
            etag: body.etag.clone(),
            last_modified: body
                .last_modified
                .map(|t| httpdate::fmt_http_date(std::time::SystemTime::from(t))),
            content_range: body
                .range
                .map(|(start, end)| format!("bytes {start}-{end}/{}", body.size)),
        }
    }

    fn apply(self, mut reply: Reply) -> Reply {
        reply.headers.push(("Accept-Ranges".into(), "bytes".into()));
        let named = [
            ("ETag", self.etag),
            ("Last-Modified", self.last_modified),
            ("Content-Range", self.content_range),
        ];
        for (name, value) in named {
            if let Some(value) = value {
                reply.headers.push((name.into(), value));
            }
        }
        reply
    }
}

/// 416, with the size the caller should have asked within.
fn unsatisfiable(container: &ContainerName, name: &BlobName, size: u64) -> Reply {
    let mut reply = Reply::from_problem(
        &Problem::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            ProblemType::RangeNotSatisfiable,
            format!(
                "blob {container}/{name} has {size} bytes; the requested range starts past its end"
            ),
        )
        .stage(Stage::Request),
    );
    reply
        .headers
        .push(("Content-Range".into(), format!("bytes */{size}")));
    reply
}

/// `Range: bytes=a-b | a- | -n`, one range only. Anything else (another unit,
/// several ranges, `a > b`, or an `If-Range` we do not evaluate) is ignored
/// and the whole blob is sent, as RFC 9110 §14.2 allows.
fn byte_range(inv: &Invocation) -> Option<ByteRange> {
    if inv.headers.contains_key("if-range") {
        return None;
    }
    parse_byte_range(inv.header("range")?)
}

fn parse_byte_range(value: &str) -> Option<ByteRange> {
    let (unit, spec) = value.trim().split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return None;
    }
    let (first, last) = spec.trim().split_once('-')?;
    let number = |s: &str| {
        (!s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match (first, last) {
        ("", n) => number(n).map(ByteRange::Suffix),
        (a, "") => number(a).map(|start| ByteRange::From { start, end: None }),
        (a, b) => {
            let (start, end) = (number(a)?, number(b)?);
            (start <= end).then_some(ByteRange::From {
                start,
                end: Some(end),
            })
        }
    }
}

/// `If-None-Match` on a read: an entity tag (or `*`) of visible ASCII.
fn if_none_match(inv: &Invocation) -> Result<Option<String>, Problem> {
    let Some(value) = inv.headers.get("if-none-match") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|v| {
            !v.is_empty() && v.len() <= 256 && v.bytes().all(|b| (b' '..=b'~').contains(&b))
        })
        .map(|v| Some(v.to_owned()))
        .ok_or_else(|| {
            Problem::bad_request("If-None-Match must be an entity tag such as \"0x8DC…\" or *")
        })
}

/// A PUT replaces by default; `If-None-Match: *` makes it create-only.
fn write_mode(inv: &Invocation) -> Result<Write, Problem> {
    match inv.header("if-none-match").map(str::trim) {
        None => Ok(Write::Overwrite),
        Some("*") => Ok(Write::CreateOnly),
        Some(_) => Err(Problem::bad_request(
            "a PUT takes only If-None-Match: * (create the blob only if it does not exist)",
        )),
    }
}

/// `attachment; filename="…"` with the blob's last segment, reduced to safe
/// characters (the header must not carry quotes, controls or non-ASCII).
fn attachment(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    let safe: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(128)
        .collect();
    format!("attachment; filename=\"{safe}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str) -> ContainerName {
        ContainerName::parse(name).unwrap()
    }

    fn settings() -> AzureSettings {
        crate::configuration::Settings::from_sources(None, Default::default())
            .unwrap()
            .azure
    }

    #[test]
    fn ranges_are_parsed_or_ignored() {
        let from = |start, end| Some(ByteRange::From { start, end });
        assert_eq!(parse_byte_range("bytes=0-99"), from(0, Some(99)));
        assert_eq!(parse_byte_range("bytes=100-"), from(100, None));
        assert_eq!(parse_byte_range("bytes=-500"), Some(ByteRange::Suffix(500)));
        assert_eq!(parse_byte_range("Bytes = 5-5"), from(5, Some(5)));
        for ignored in [
            "bytes=9-1",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=-",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=99999999999999999999-",
            "bytes",
        ] {
            assert_eq!(parse_byte_range(ignored), None, "{ignored}");
        }
    }

    #[test]
    fn only_allow_listed_containers_are_reached() {
        let s = settings();
        for method in [Method::GET, Method::PUT, Method::DELETE] {
            assert!(authorize(&s, &c("app1-data"), &method).is_ok());
            for host_container in [
                "azure-webjobs-secrets",
                "deploymentpackage",
                "azure-webjobs-hosts",
            ] {
                let p = authorize(&s, &c(host_container), &method).unwrap_err();
                assert_eq!(p.status, 403);
                assert!(p.kind.ends_with("#container-not-allowed"));
                assert!(p.detail.contains("BLOB_CONTAINERS"), "{}", p.detail);
            }
        }
    }

    #[test]
    fn the_audit_container_is_read_only() {
        let s = settings();
        assert!(authorize(&s, &c("audit"), &Method::GET).is_ok());
        for method in [Method::PUT, Method::DELETE] {
            let p = authorize(&s, &c("audit"), &method).unwrap_err();
            assert_eq!(p.status, 403);
            assert!(p.kind.ends_with("#container-read-only"));
            assert!(p.detail.contains("AUDIT_CONTAINER"));
        }
    }

    #[test]
    fn active_content_downloads_as_an_attachment() {
        for active in [
            "text/html; charset=utf-8",
            "image/svg+xml",
            "application/xhtml+xml",
            "text/javascript",
            "application/rss+xml",
        ] {
            let r = download(
                "dir/x\".html",
                Reply::bytes(
                    StatusCode::OK,
                    safe_content_type(Some(active.into())),
                    bytes::Bytes::new(),
                ),
            );
            let header = |n: &str| {
                r.headers
                    .iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| v.as_str())
            };
            assert_eq!(
                header("Content-Disposition"),
                Some("attachment; filename=\"x_.html\""),
                "{active}"
            );
            assert_eq!(header("X-Content-Type-Options"), Some("nosniff"));
            assert_eq!(
                header("Content-Security-Policy"),
                Some("default-src 'none'; sandbox")
            );
        }
        let plain = download(
            "a.txt",
            Reply::bytes(StatusCode::OK, "text/plain", bytes::Bytes::new()),
        );
        assert!(
            plain
                .headers
                .iter()
                .all(|(k, _)| k != "Content-Disposition")
        );
        assert!(
            plain
                .headers
                .iter()
                .any(|(k, v)| k == "X-Content-Type-Options" && v == "nosniff")
        );
        assert_eq!(
            safe_content_type(Some("text/plain\u{7f}".into())),
            "application/octet-stream"
        );
        assert_eq!(safe_content_type(None), "application/octet-stream");
    }
}
