//! The one HTTP exchange the provider needs: a GET with headers, read fully.
//!
//! A trait keeps the retry, timeout and cache logic testable with an in-process
//! fake under `tokio::time::pause`, where real sockets would make paused timers fire.

use async_trait::async_trait;
use azure_core::credentials::Secret;
use std::fmt;
use url::Url;

/// A token request, ready to send. Header values are secrets (the identity header).
pub struct EndpointRequest {
    /// The endpoint with its query (api-version, resource, selector).
    pub url: Url,
    /// Headers to send; values are secrets (the identity header).
    pub headers: Vec<(&'static str, Secret)>,
}

impl fmt::Debug for EndpointRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointRequest")
            .field("url", &self.url.as_str())
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// What came back: the status, `Retry-After` and the whole body.
#[derive(Debug, Clone)]
pub struct EndpointResponse {
    /// The HTTP status.
    pub status: u16,
    /// The `Retry-After` header, as sent.
    pub retry_after: Option<String>,
    /// The whole body.
    pub body: Vec<u8>,
}

/// Sends token requests. Implemented for `reqwest::Client`.
#[async_trait]
pub trait IdentityTransport: Send + Sync + fmt::Debug {
    /// Sends `request` and reads the whole response; `Err` describes a
    /// transport failure (never including a header value).
    async fn send(&self, request: &EndpointRequest) -> Result<EndpointResponse, String>;
}

#[async_trait]
impl IdentityTransport for reqwest::Client {
    async fn send(&self, request: &EndpointRequest) -> Result<EndpointResponse, String> {
        let mut builder = self.get(request.url.clone());
        for (name, value) in &request.headers {
            builder = builder.header(*name, value.secret());
        }
        let response = builder.send().await.map_err(describe_reqwest_error)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .bytes()
            .await
            .map_err(describe_reqwest_error)?
            .to_vec();
        Ok(EndpointResponse {
            status,
            retry_after,
            body,
        })
    }
}

/// reqwest's `Display` hides the cause ("error sending request"); walk the chain.
/// The URL is dropped: it is not secret, but it is already in the source's log line.
fn describe_reqwest_error(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
