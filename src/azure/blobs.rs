//! Blob Storage through the official `azure_storage_blob` client, on our
//! token provider.

use super::claims_recorder::ClaimsRecorder;
use super::error::{ClientError, Stage, UpstreamError};
use crate::names::{BlobName, ContainerName};
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
pub const RESOURCE: &str = crate::names::STORAGE_RESOURCE;

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
    credential: Arc<ClaimsRecorder>,
}

fn not_found(what: String) -> ClientError {
    ClientError::NotFound {
        stage: Stage::Storage,
        what,
    }
}

impl BlobStore {
    pub fn new(
        account_url: &str,
        credential: Arc<dyn TokenCredential>,
        client_options: ClientOptions,
        api_version: Option<String>,
    ) -> azure_core::Result<Self> {
        let credential = Arc::new(ClaimsRecorder::new(credential));
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
            service: BlobServiceClient::new(url, Some(credential.clone()), Some(options))?,
            credential,
        })
    }

    /// An SDK error as a client error, with the claims of the token sent.
    fn upstream(&self, e: &azure_core::Error) -> ClientError {
        self.credential
            .with_claims(UpstreamError::from_azure(Stage::Storage, e))
    }

    /// One page of a container's listing: at most `page.max` entries, from
    /// `page.marker` on, and the marker for the next page if there is one.
    pub async fn list(
        &self,
        container: &ContainerName,
        page: &ListPage,
    ) -> Result<BlobPage, ClientError> {
        let options = BlobContainerClientListBlobsOptions {
            maxresults: Some(page.max as i32),
            marker: page.marker.clone(),
            ..Default::default()
        };
        let mut pages = self
            .service
            .blob_container_client(container.as_str())
            .list_blobs(Some(options))
            .map_err(|e| self.upstream(&e))?
            .into_pages();
        let missing = |e: azure_core::Error| {
            if e.http_status() == Some(StatusCode::NotFound) {
                not_found(format!("container {container}"))
            } else {
                self.upstream(&e)
            }
        };
        // Only the first page: the caller pages on with `next_marker`.
        let Some(first) = pages.try_next().await.map_err(missing)? else {
            return Ok(BlobPage::default());
        };
        let listing = first.into_model().map_err(|e| self.upstream(&e))?;
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
        container: &ContainerName,
        name: &BlobName,
        content_type: &str,
        body: Bytes,
        write: Write,
    ) -> Result<(), ClientError> {
        let client = self.service.blob_client(container.as_str(), name.as_str());
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
                ClientError::BlobExists {
                    container: container.clone(),
                    blob: name.clone(),
                }
            } else {
                self.upstream(&e)
            }
        };
        match upload().await {
            Ok(_) => Ok(()),
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => {
                match self
                    .service
                    .blob_container_client(container.as_str())
                    .create(None)
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.http_status() == Some(StatusCode::Conflict) => {}
                    Err(e) => return Err(self.upstream(&e)),
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
        container: &ContainerName,
        name: &BlobName,
        max_bytes: usize,
    ) -> Result<(Bytes, Option<String>), ClientError> {
        let missing = || not_found(format!("blob {container}/{name}"));
        let too_large = || ClientError::BlobTooLarge {
            container: container.clone(),
            blob: name.clone(),
            limit: max_bytes,
        };
        let result = self
            .service
            .blob_client(container.as_str(), name.as_str())
            .download(None)
            .await
            .map_err(|e| {
                if e.http_status() == Some(StatusCode::NotFound) {
                    missing()
                } else {
                    self.upstream(&e)
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
        while let Some(chunk) = stream.try_next().await.map_err(|e| self.upstream(&e))? {
            if body.len() + chunk.len() > max_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body.freeze(), content_type))
    }

    pub async fn delete(
        &self,
        container: &ContainerName,
        name: &BlobName,
    ) -> Result<(), ClientError> {
        match self
            .service
            .blob_client(container.as_str(), name.as_str())
            .delete(None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => {
                Err(not_found(format!("blob {container}/{name}")))
            }
            Err(e) => Err(self.upstream(&e)),
        }
    }

    /// A harmless authenticated call, for `?check=storage`.
    /// (Whether the container exists does not matter: a 404 passed authorization.)
    pub async fn probe(&self, container: &ContainerName) -> Result<(), ClientError> {
        self.service
            .blob_container_client(container.as_str())
            .exists()
            .await
            .map(|_| ())
            .map_err(|e| self.upstream(&e))
    }
}
