//! `/api/blobs/{container}[/{*name}]`: list (GET container), read (GET), store
//! (PUT, the raw body with its content type) and delete (DELETE) blobs.
//!
//! Callers reach only the containers `BLOB_CONTAINERS` names. The audit
//! container is theirs to list and read, never to write: only `flow` writes
//! there. Both checks run before any call to Storage.

use super::Outcome;
use crate::azure::Stage;
use crate::azure::blobs::{ListPage, Write};
use crate::configuration::AzureSettings;
use crate::invocation::{Invocation, Reply};
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
            let (body, content_type) = store
                .get(container, name, state.limits.max_body_bytes)
                .await?;
            Ok(download(name.as_str(), content_type, body))
        }
        (&Method::PUT, Some(name)) => {
            let content_type = content_type_of(&inv)?;
            let size = inv.body.len();
            store
                .put(
                    container,
                    name,
                    &content_type,
                    inv.body.clone(),
                    Write::Overwrite,
                )
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

/// A stored blob as a response that cannot turn into a page of ours: the
/// browser may not sniff it or run anything in it, and active types download.
fn download(name: &str, content_type: Option<String>, body: bytes::Bytes) -> Reply {
    let content_type = content_type
        .filter(|t| {
            t.bytes().all(|b| (b' '..=b'~').contains(&b)) && t.len() <= MAX_CONTENT_TYPE_LEN
        })
        .unwrap_or_else(|| "application/octet-stream".into());
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let mut reply = Reply::bytes(StatusCode::OK, content_type, body);
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
            let r = download("dir/x\".html", Some(active.into()), bytes::Bytes::new());
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
        let plain = download("a.txt", Some("text/plain".into()), bytes::Bytes::new());
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
        let odd = download("a", Some("text/plain\u{7f}".into()), bytes::Bytes::new());
        assert_eq!(odd.content_type, "application/octet-stream");
    }
}
