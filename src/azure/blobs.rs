//! Blob Storage through the official `azure_storage_blob` client, on our
//! token provider.

use super::upstream::UpstreamError;
use crate::problem::{Problem, Stage};
use azure_core::credentials::TokenCredential;
use azure_core::http::Etag;
use azure_core::http::{ClientOptions, RequestContent, StatusCode, Url};
use azure_storage_blob::models::{
    BlobContainerClientListBlobsOptions, BlockBlobClientUploadOptions,
};
use azure_storage_blob::{BlobServiceClient, BlobServiceClientOptions};
use bytes::Bytes;
use futures::TryStreamExt;
use serde::Serialize;
use std::sync::Arc;
use time::format_description::well_known::Rfc3339;

/// The resource the blob client requests tokens for.
pub const RESOURCE: &str = "https://storage.azure.com";

/// Azure's container rule: 3–63 of `a-z 0-9 -`, starting with a letter or
/// digit, no `--`, not ending in `-`.
pub fn validate_container(name: &str) -> Result<(), Problem> {
    let ok = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(Problem::bad_request(
            "a container name is 3-63 lower-case letters, digits and single hyphens, starting with a letter or digit",
        ))
    }
}

/// Azure's blob rule (1–1024 characters, at most 254 segments) plus what is
/// safe behind a URL: no empty, `.` or `..` segments, no control characters or
/// backslashes, no trailing dot.
pub fn validate_blob_name(name: &str) -> Result<(), Problem> {
    let segments: Vec<&str> = name.split('/').collect();
    let ok = (1..=1024).contains(&name.chars().count())
        && segments.len() <= 254
        && segments
            .iter()
            .all(|s| !s.is_empty() && *s != "." && *s != "..")
        && !name.chars().any(|c| c.is_control() || c == '\\')
        && !name.ends_with('.');
    if ok {
        Ok(())
    } else {
        Err(Problem::bad_request(
            "a blob name is 1-1024 characters in at most 254 non-empty '/'-separated segments, without '.' or '..' segments, backslashes, control characters or a trailing dot",
        ))
    }
}

/// Which page of a listing to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    /// At most this many entries (Storage's own limit is 5000).
    pub max: u32,
    /// Where the previous page stopped (`next_marker`), opaque to us.
    pub marker: Option<String>,
}

impl ListPage {
    /// The page size when the caller names none.
    pub const DEFAULT_MAX: u32 = 1000;
    /// Storage's own `maxresults` limit.
    pub const MAX_MAX: u32 = 5000;
}

/// One page of a listing.
#[derive(Debug, Default, Serialize)]
pub struct BlobPage {
    pub blobs: Vec<BlobEntry>,
    /// Pass as `?marker=` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

/// Whether a write may replace an existing blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// Create or replace (a caller's PUT to a data container).
    Overwrite,
    /// Create only (`If-None-Match: *`): the audit trail is append-only.
    CreateOnly,
}

#[derive(Debug, Serialize)]
pub struct BlobEntry {
    pub name: String,
    pub size: Option<u64>,
    pub content_type: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

pub struct BlobStore {
    service: BlobServiceClient,
}

fn upstream(e: &azure_core::Error) -> Problem {
    match UpstreamError::from_azure(Stage::Storage, e) {
        Ok(u) => u.to_problem(),
        Err(p) => p,
    }
}

fn not_found(what: String) -> Problem {
    Problem::new(
        actix_web::http::StatusCode::NOT_FOUND,
        "blob-not-found",
        what,
    )
    .stage(Stage::Storage)
    .upstream(Some(404))
}

impl BlobStore {
    pub fn new(
        account_url: &str,
        credential: Arc<dyn TokenCredential>,
        client_options: ClientOptions,
        api_version: Option<String>,
    ) -> azure_core::Result<Self> {
        let mut options = BlobServiceClientOptions {
            client_options,
            ..Default::default()
        };
        if let Some(v) = api_version {
            options.version = v;
        }
        // No trailing slash on a path-style URL, or requests go to `//container`.
        let url = Url::parse(account_url.trim_end_matches('/'))?;
        Ok(Self {
            service: BlobServiceClient::new(url, Some(credential), Some(options))?,
        })
    }

    /// One page of a container's listing: at most `page.max` entries, from
    /// `page.marker` on, and the marker for the next page if there is one.
    pub async fn list(&self, container: &str, page: &ListPage) -> Result<BlobPage, Problem> {
        validate_container(container)?;
        let options = BlobContainerClientListBlobsOptions {
            maxresults: Some(page.max as i32),
            marker: page.marker.clone(),
            ..Default::default()
        };
        let mut pages = self
            .service
            .blob_container_client(container)
            .list_blobs(Some(options))
            .map_err(|e| upstream(&e))?
            .into_pages();
        let missing = |e: azure_core::Error| {
            if e.http_status() == Some(StatusCode::NotFound) {
                not_found(format!("container {container} does not exist"))
            } else {
                upstream(&e)
            }
        };
        // Only the first page: the caller pages on with `next_marker`.
        let Some(first) = pages.try_next().await.map_err(missing)? else {
            return Ok(BlobPage::default());
        };
        let listing = first.into_model().map_err(|e| upstream(&e))?;
        let blobs = listing
            .blob_items
            .into_iter()
            .map(|item| {
                let p = item.properties.as_ref();
                BlobEntry {
                    name: item.name.clone().unwrap_or_default(),
                    size: p.and_then(|p| p.content_length),
                    content_type: p.and_then(|p| p.content_type.clone()),
                    etag: p.and_then(|p| p.etag.as_ref()).map(|e| e.to_string()),
                    last_modified: p
                        .and_then(|p| p.last_modified)
                        .and_then(|t| t.format(&Rfc3339).ok()),
                }
            })
            .collect();
        Ok(BlobPage {
            blobs,
            next_marker: listing.next_marker.filter(|m| !m.is_empty()),
        })
    }

    /// Stores `body` (creating the container on first use). With
    /// [`Write::CreateOnly`] an existing blob is never replaced
    /// (`If-None-Match: *`): Storage answers 409 and nothing changes.
    pub async fn put(
        &self,
        container: &str,
        name: &str,
        content_type: &str,
        body: Bytes,
        write: Write,
    ) -> Result<(), Problem> {
        validate_container(container)?;
        validate_blob_name(name)?;
        let client = self.service.blob_client(container, name);
        let upload = || {
            client.upload(
                <RequestContent<Bytes, azure_core::http::NoFormat> as From<Bytes>>::from(
                    body.clone(),
                ),
                Some(BlockBlobClientUploadOptions {
                    blob_content_type: Some(content_type.to_owned()),
                    if_none_match: (write == Write::CreateOnly).then(|| Etag::from("*")),
                    ..Default::default()
                }),
            )
        };
        let failed = |e: azure_core::Error| {
            if e.http_status() == Some(StatusCode::Conflict) {
                Problem::new(
                    actix_web::http::StatusCode::CONFLICT,
                    "blob-exists",
                    format!(
                        "blob {container}/{name} already exists, and this write never replaces one"
                    ),
                )
                .stage(Stage::Storage)
                .upstream(Some(409))
            } else {
                upstream(&e)
            }
        };
        match upload().await {
            Ok(_) => Ok(()),
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => {
                match self
                    .service
                    .blob_container_client(container)
                    .create(None)
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.http_status() == Some(StatusCode::Conflict) => {}
                    Err(e) => return Err(upstream(&e)),
                }
                upload().await.map(|_| ()).map_err(failed)
            }
            Err(e) => Err(failed(e)),
        }
    }

    /// The exact bytes and content type, read as a stream and refused once
    /// they pass `max_bytes`, so one large blob cannot fill the handler's memory.
    pub async fn get(
        &self,
        container: &str,
        name: &str,
        max_bytes: usize,
    ) -> Result<(Bytes, Option<String>), Problem> {
        validate_container(container)?;
        validate_blob_name(name)?;
        let missing = || not_found(format!("blob {container}/{name} does not exist"));
        let too_large = || {
            Problem::new(
                actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
                "blob-too-large",
                format!("blob {container}/{name} is larger than {max_bytes} bytes, the most this function returns"),
            )
            .stage(Stage::Request)
            .hint("Raise MAX_BODY_BYTES, or read large blobs from Storage directly.")
        };
        let result = self
            .service
            .blob_client(container, name)
            .download(None)
            .await
            .map_err(|e| {
                if e.http_status() == Some(StatusCode::NotFound) {
                    missing()
                } else {
                    upstream(&e)
                }
            })?;
        if result
            .properties
            .content_length
            .is_some_and(|n| n > max_bytes as u64)
        {
            return Err(too_large());
        }
        let content_type = result.properties.content_type.clone();
        let mut stream = result.body;
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = stream.try_next().await.map_err(|e| upstream(&e))? {
            if body.len() + chunk.len() > max_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body.freeze(), content_type))
    }

    pub async fn delete(&self, container: &str, name: &str) -> Result<(), Problem> {
        validate_container(container)?;
        validate_blob_name(name)?;
        match self.service.blob_client(container, name).delete(None).await {
            Ok(_) => Ok(()),
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => {
                Err(not_found(format!("blob {container}/{name} does not exist")))
            }
            Err(e) => Err(upstream(&e)),
        }
    }

    /// A harmless authenticated call, for `?check=storage`.
    /// (Whether the container exists does not matter: a 404 passed authorization.)
    pub async fn probe(&self, container: &str) -> Result<(), Problem> {
        self.service
            .blob_container_client(container)
            .exists()
            .await
            .map(|_| ())
            .map_err(|e| upstream(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names() {
        for good in ["abc", "audit", "a-b-c", "0day", &"a".repeat(63)] {
            assert!(validate_container(good).is_ok(), "{good}");
        }
        for bad in [
            "ab",
            "Abc",
            "-abc",
            "abc-",
            "a--b",
            "a_b",
            "a.b",
            &"a".repeat(64),
            "$root",
        ] {
            assert!(validate_container(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn blob_names() {
        for good in ["a", "dir/file.txt", "ünïcode/名前.bin", &"a".repeat(1024)] {
            assert!(validate_blob_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "../etc/passwd",
            "a/../b",
            "a/./b",
            "a//b",
            "/a",
            "a/",
            "a\\b",
            "a\u{0}b",
            "trailing.",
            &"a".repeat(1025),
        ] {
            assert!(validate_blob_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_blob_name(&vec!["s"; 255].join("/")).is_err());
    }
}
