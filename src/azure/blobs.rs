//! Blob Storage through the official `azure_storage_blob` client, on our
//! token provider.

use super::claims_recorder::ClaimsRecorder;
use super::error::{ClientError, Stage, UpstreamError, error_chain};
use crate::body_stream::BodyStream;
use crate::names::{BlobName, ContainerName};
use azure_core::credentials::TokenCredential;
use azure_core::http::Etag;
use azure_core::http::headers::HeaderName;
use azure_core::http::{ClientOptions, RequestContent, StatusCode, Url};
use azure_storage_blob::models::{
    BlobClientDownloadOptions, BlobContainerClientListBlobsOptions,
    BlockBlobClientCommitBlockListOptions, BlockBlobClientUploadOptions, BlockLookupList,
    HttpRange,
};
use azure_storage_blob::{BlobServiceClient, BlobServiceClientOptions, BlockBlobClient};
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use std::num::NonZeroUsize;
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

/// Which bytes to read, parsed from a `Range: bytes=…` header at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `a-b` (`end` inclusive) or `a-` (to the end).
    From { start: u64, end: Option<u64> },
    /// `-n`: the last n bytes.
    Suffix(u64),
}

/// How to read a blob.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    pub range: Option<ByteRange>,
    /// The caller's `If-None-Match`: Storage answers 304 when it matches.
    pub if_none_match: Option<String>,
}

/// What opening a blob found.
pub enum Opened {
    Body(BlobBody),
    /// The caller's `If-None-Match` matched: nothing to send.
    NotModified {
        etag: Option<String>,
    },
    /// The range starts past the end (`size` is the blob's).
    Unsatisfiable {
        size: u64,
    },
}

/// A blob's bytes on their way, with what the caller's headers need.
pub struct BlobBody {
    pub content_type: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<time::OffsetDateTime>,
    /// The blob's whole size.
    pub size: u64,
    /// `Some((start, end))`, inclusive, when only a range is sent.
    pub range: Option<(u64, u64)>,
    /// How many bytes `stream` yields.
    pub length: u64,
    pub stream: futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>>,
}

impl BlobBody {
    /// All of it in memory, refused once it passes `max_bytes` (forward and
    /// payload mode, where the host buffers the response anyway).
    pub async fn collect(
        self,
        container: &ContainerName,
        name: &BlobName,
        max_bytes: usize,
    ) -> Result<Bytes, ClientError> {
        let too_large = || ClientError::BlobTooLarge {
            container: container.clone(),
            blob: name.clone(),
            limit: max_bytes,
        };
        if self.length > max_bytes as u64 {
            return Err(too_large());
        }
        let mut stream = self.stream;
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                ClientError::from(UpstreamError {
                    stage: Stage::Storage,
                    status: None,
                    code: None,
                    message: e.to_string(),
                    www_authenticate: None,
                    content_type: None,
                    required_role: None,
                    claims: None,
                })
            })?;
            if body.len() + chunk.len() > max_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }
}

/// Downloads keep at most this many partitions of this size in flight
/// (2 × 2 MiB: the peak RSS growth stays under 32 MiB for any blob size).
pub const DOWNLOAD_PARALLEL: usize = 2;
pub const DOWNLOAD_PARTITION: usize = 2 * 1024 * 1024;
/// Uploads stage blocks of this size (Storage allows up to 4000 MiB).
pub const UPLOAD_BLOCK: usize = 4 * 1024 * 1024;

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

    /// A failed read (or delete): a 404 is the blob (or its container) missing.
    fn read_failed(
        &self,
        e: &azure_core::Error,
        container: &ContainerName,
        name: &BlobName,
    ) -> ClientError {
        if e.http_status() == Some(StatusCode::NotFound) {
            not_found(format!("blob {container}/{name}"))
        } else {
            self.upstream(e)
        }
    }

    /// A refused write: a 409 is the blob already there (create-only writes).
    fn write_failed(
        &self,
        e: &azure_core::Error,
        container: &ContainerName,
        name: &BlobName,
    ) -> ClientError {
        if e.http_status() == Some(StatusCode::Conflict) {
            ClientError::BlobExists {
                container: container.clone(),
                blob: name.clone(),
            }
        } else {
            self.upstream(e)
        }
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
        let failed = |e: azure_core::Error| self.write_failed(&e, container, name);
        match upload().await {
            Ok(_) => Ok(()),
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => {
                self.create_container(container).await?;
                upload().await.map(|_| ()).map_err(failed)
            }
            Err(e) => Err(failed(e)),
        }
    }

    /// Opens a blob for reading: its properties now, its bytes (all, or
    /// `options.range`) as a stream that follows Storage as it answers. At most
    /// `DOWNLOAD_PARALLEL` partitions of `DOWNLOAD_PARTITION` bytes are in
    /// flight, so memory does not grow with the blob.
    pub async fn open(
        &self,
        container: &ContainerName,
        name: &BlobName,
        options: &ReadOptions,
    ) -> Result<Opened, ClientError> {
        let client = self.service.blob_client(container.as_str(), name.as_str());
        // A suffix (`-n`) is the last n bytes: the size comes first.
        let wanted = match options.range {
            None => None,
            Some(ByteRange::From { start, end }) => Some((start, end)),
            Some(ByteRange::Suffix(n)) => {
                let size = self.size(container, name).await?;
                if n == 0 || size == 0 {
                    return Ok(Opened::Unsatisfiable { size });
                }
                Some((size.saturating_sub(n), Some(size - 1)))
            }
        };
        let download = BlobClientDownloadOptions {
            range: wanted.map(|(start, end)| match end {
                Some(end) => HttpRange::new(start, end - start + 1),
                None => (start..).into(),
            }),
            if_none_match: options.if_none_match.clone().map(Etag::from),
            parallel: NonZeroUsize::new(DOWNLOAD_PARALLEL),
            partition_size: NonZeroUsize::new(DOWNLOAD_PARTITION),
            ..Default::default()
        };
        let result = match client.download(Some(download)).await {
            Ok(result) => result,
            Err(e) if e.http_status() == Some(StatusCode::NotModified) => {
                return Ok(Opened::NotModified {
                    etag: options.if_none_match.clone(),
                });
            }
            Err(e) if e.http_status() == Some(StatusCode::RequestedRangeNotSatisfiable) => {
                let size = self.size(container, name).await?;
                return Ok(Opened::Unsatisfiable { size });
            }
            Err(e) => return Err(self.read_failed(&e, container, name)),
        };
        let p = &result.properties;
        let size = result
            .headers
            .get_optional_str(&HeaderName::from_static("content-range"))
            .and_then(|r| r.rsplit('/').next()?.parse::<u64>().ok())
            .or(p.content_length)
            .unwrap_or(0);
        let range = match wanted {
            None => None,
            // An empty blob has no byte to give (the SDK read it whole).
            Some((start, _)) if start >= size => return Ok(Opened::Unsatisfiable { size }),
            Some((start, end)) => Some((start, end.map_or(size - 1, |e| e.min(size - 1)))),
        };
        let length = range.map_or(size, |(start, end)| end - start + 1);
        let content_type = p.content_type.clone();
        let etag = p.etag.as_ref().map(|e| e.to_string());
        let last_modified = p.last_modified;
        let stream = result
            .body
            .map_err(|e| std::io::Error::other(error_chain(&e)))
            .boxed();
        Ok(Opened::Body(BlobBody {
            content_type,
            etag,
            last_modified,
            size,
            range,
            length,
            stream,
        }))
    }

    /// The exact bytes and content type, refused once they pass `max_bytes`,
    /// so one large blob cannot fill the handler's memory.
    pub async fn get(
        &self,
        container: &ContainerName,
        name: &BlobName,
        max_bytes: usize,
    ) -> Result<(Bytes, Option<String>), ClientError> {
        match self.open(container, name, &ReadOptions::default()).await? {
            Opened::Body(body) => {
                let content_type = body.content_type.clone();
                Ok((
                    body.collect(container, name, max_bytes).await?,
                    content_type,
                ))
            }
            // No range and no condition were asked for.
            Opened::NotModified { .. } | Opened::Unsatisfiable { .. } => Ok((Bytes::new(), None)),
        }
    }

    /// The blob's size in bytes.
    async fn size(&self, container: &ContainerName, name: &BlobName) -> Result<u64, ClientError> {
        use azure_storage_blob::models::BlobClientGetPropertiesResultHeaders;
        let response = self
            .service
            .blob_client(container.as_str(), name.as_str())
            .get_properties(None)
            .await
            .map_err(|e| self.read_failed(&e, container, name))?;
        Ok(response
            .content_length()
            .map_err(|e| self.upstream(&e))?
            .unwrap_or(0))
    }

    /// Streams `body` to Storage as staged blocks of `UPLOAD_BLOCK` bytes and
    /// commits them only once the whole body has arrived, within `limit`
    /// bytes. A body over the limit, or one cut off, commits nothing: the
    /// blob (if there was one) is untouched, and Storage discards the
    /// uncommitted blocks. Returns the size stored.
    pub async fn put_stream(
        &self,
        container: &ContainerName,
        name: &BlobName,
        content_type: &str,
        mut body: BodyStream,
        limit: u64,
        write: Write,
    ) -> Result<u64, ClientError> {
        let blocks = self
            .service
            .blob_client(container.as_str(), name.as_str())
            .block_blob_client();
        // Block ids are per blob: this upload's own prefix keeps two uploads
        // of one name from mixing their blocks.
        let upload = uuid::Uuid::new_v4().simple().to_string();
        let mut ids: Vec<Vec<u8>> = vec![];
        let mut size: u64 = 0;
        let mut pending = BytesMut::with_capacity(UPLOAD_BLOCK);
        let mut container_ready = false;
        loop {
            let chunk = match body.0.next().await {
                Some(Ok(chunk)) => chunk,
                Some(Err(reason)) => return Err(ClientError::RequestBody { reason }),
                None => break,
            };
            size += chunk.len() as u64;
            if size > limit {
                return Err(ClientError::UploadTooLarge { limit });
            }
            // Fill one block of exactly UPLOAD_BLOCK at a time, so no buffer
            // ever grows past it.
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                let take = (UPLOAD_BLOCK - pending.len()).min(rest.len());
                pending.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if pending.len() == UPLOAD_BLOCK {
                    let full =
                        std::mem::replace(&mut pending, BytesMut::with_capacity(UPLOAD_BLOCK));
                    let id = format!("{upload}-{:06}", ids.len()).into_bytes();
                    self.stage(&blocks, container, &id, full.freeze(), &mut container_ready)
                        .await?;
                    ids.push(id);
                }
            }
        }
        if !pending.is_empty() {
            let id = format!("{upload}-{:06}", ids.len()).into_bytes();
            self.stage(
                &blocks,
                container,
                &id,
                pending.freeze(),
                &mut container_ready,
            )
            .await?;
            ids.push(id);
        }
        let list = BlockLookupList {
            latest: Some(ids),
            ..Default::default()
        };
        let commit = || async {
            blocks
                .commit_block_list(
                    RequestContent::try_from(list.clone())?,
                    Some(BlockBlobClientCommitBlockListOptions {
                        blob_content_type: Some(content_type.to_owned()),
                        if_none_match: (write == Write::CreateOnly).then(|| Etag::from("*")),
                        ..Default::default()
                    }),
                )
                .await
        };
        let failed = |e: azure_core::Error| self.write_failed(&e, container, name);
        match commit().await {
            Ok(_) => Ok(size),
            // An empty body staged nothing, so the container may not exist yet.
            Err(e) if e.http_status() == Some(StatusCode::NotFound) && !container_ready => {
                self.create_container(container).await?;
                commit().await.map(|_| size).map_err(failed)
            }
            Err(e) => Err(failed(e)),
        }
    }

    /// Stages one block, creating the container on first use.
    async fn stage(
        &self,
        blocks: &BlockBlobClient,
        container: &ContainerName,
        id: &[u8],
        block: Bytes,
        container_ready: &mut bool,
    ) -> Result<(), ClientError> {
        let send = |block: Bytes| {
            blocks.stage_block(
                id,
                block.len() as u64,
                <RequestContent<Bytes, azure_core::http::NoFormat> as From<Bytes>>::from(block),
                None,
            )
        };
        match send(block.clone()).await {
            Ok(_) => {}
            Err(e) if e.http_status() == Some(StatusCode::NotFound) && !*container_ready => {
                self.create_container(container).await?;
                send(block).await.map_err(|e| self.upstream(&e))?;
            }
            Err(e) => return Err(self.upstream(&e)),
        }
        *container_ready = true;
        Ok(())
    }

    /// Creates `container` (an existing one is fine).
    async fn create_container(&self, container: &ContainerName) -> Result<(), ClientError> {
        match self
            .service
            .blob_container_client(container.as_str())
            .create(None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.http_status() == Some(StatusCode::Conflict) => Ok(()),
            Err(e) => Err(self.upstream(&e)),
        }
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
            Err(e) => Err(self.read_failed(&e, container, name)),
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
