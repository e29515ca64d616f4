//! What the Azure clients report: typed errors carrying the facts the
//! upstream gave (status, service code, message, challenge) and the claims of
//! the token that was sent. Never a token or a secret, and nothing of HTTP
//! responses: the edge turns these into problems.

pub use crate::identity::error_chain;
use crate::identity::{TokenError, capped};
use crate::names::{BlobName, ContainerName};
use azure_core::error::ErrorKind;
use serde::Serialize;
use serde_json::{Map, Value};

/// Which hop of a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The caller's request itself.
    Request,
    Identity,
    Keyvault,
    Storage,
    /// A downstream API, by its configured name (`app2`, `graph`, …).
    Api(&'static str),
}

impl Stage {
    /// The stage of the named API. Names are interned: a process has a
    /// handful, fixed by its settings, so the stage stays `Copy`.
    pub fn api(name: &str) -> Self {
        static NAMES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
        let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
        let interned = match names.iter().find(|n| **n == name) {
            Some(n) => *n,
            None => {
                let n: &'static str = Box::leak(name.to_owned().into_boxed_str());
                names.push(n);
                n
            }
        };
        Stage::Api(interned)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Request => "request",
            Stage::Identity => "identity",
            Stage::Keyvault => "keyvault",
            Stage::Storage => "storage",
            Stage::Api(name) => name,
        }
    }
}

impl Serialize for Stage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Why an Azure client could not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// No token: the credential failed.
    #[error(transparent)]
    Identity(#[from] TokenError),
    /// The upstream refused, failed or could not be reached.
    #[error("{0}")]
    Upstream(Box<UpstreamError>),
    /// Another tenant refused to exchange the managed identity's token.
    #[error("{0}")]
    Exchange(Box<super::federated::ExchangeError>),
    /// The secret, container or blob does not exist.
    #[error("{what} does not exist")]
    NotFound { stage: Stage, what: String },
    /// The client needs a setting this deployment does not have (or has wrong).
    #[error("{setting}: {reason}")]
    NotConfigured {
        stage: Stage,
        setting: &'static str,
        reason: String,
    },
    /// A create-only write found the blob there already (HTTP 409 upstream).
    #[error("blob {container}/{blob} already exists, and this write never replaces one")]
    BlobExists {
        container: ContainerName,
        blob: BlobName,
    },
    /// The blob is larger than the handler returns in this mode; nothing was
    /// buffered past the limit.
    #[error(
        "blob {container}/{blob} is larger than {limit} bytes, the most this function returns when the host buffers the response (forward and payload mode)"
    )]
    BlobTooLarge {
        container: ContainerName,
        blob: BlobName,
        limit: usize,
    },
    /// An upload passed `MAX_UPLOAD_BYTES`; nothing was committed.
    #[error("the upload is larger than {limit} bytes (MAX_UPLOAD_BYTES); nothing was stored")]
    UploadTooLarge { limit: u64 },
    /// The caller's body broke off (or could not be read); nothing was committed.
    #[error("could not read the request body ({reason}); nothing was stored")]
    RequestBody { reason: String },
}

impl From<UpstreamError> for ClientError {
    fn from(u: UpstreamError) -> Self {
        ClientError::Upstream(Box::new(u))
    }
}

impl ClientError {
    /// The hop that failed.
    pub fn stage(&self) -> Stage {
        match self {
            Self::Identity(_) => Stage::Identity,
            Self::Upstream(u) => u.stage,
            Self::Exchange(e) => e.stage,
            Self::NotFound { stage, .. } | Self::NotConfigured { stage, .. } => *stage,
            Self::BlobExists { .. } => Stage::Storage,
            Self::BlobTooLarge { .. } | Self::UploadTooLarge { .. } | Self::RequestBody { .. } => {
                Stage::Request
            }
        }
    }
}

/// What an upstream said when it refused or failed.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamError {
    pub stage: Stage,
    /// The upstream's HTTP status, when it answered.
    pub status: Option<u16>,
    /// The service error code (`ForbiddenByRbac`, `AuthorizationPermissionMismatch`, …).
    pub code: Option<String>,
    pub message: String,
    /// `WWW-Authenticate`, when the upstream sent one.
    pub www_authenticate: Option<String>,
    /// The response's content type (app2's problem+json vs EasyAuth's text).
    pub content_type: Option<String>,
    /// app2's own 403 names the role it wanted.
    pub required_role: Option<String>,
    /// The claims of the token that was sent (never the token).
    #[serde(skip)]
    pub claims: Option<Map<String, Value>>,
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stage = self.stage.as_str();
        match self.status {
            Some(s) => write!(f, "{stage} answered {s}")?,
            None => write!(f, "{stage} could not be reached")?,
        }
        if let Some(code) = &self.code {
            write!(f, " ({code})")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl UpstreamError {
    /// True for failures worth retrying later (unreachable, throttled,
    /// unavailable): the edge answers 503 rather than 502.
    pub fn is_temporary(&self) -> bool {
        match (self.stage, self.status) {
            // Throttling is temporary wherever it comes from.
            (Stage::Api(_), Some(429)) => true,
            // Whatever a named API answers is its answer (a 502), as the README promises.
            (Stage::Api(_), Some(_)) => false,
            (_, status) => matches!(status, None | Some(429 | 503 | 504)),
        }
    }

    /// Reads an `azure_core::Error` from an SDK client. A credential failure
    /// inside it becomes the identity error it really is.
    pub fn from_azure(stage: Stage, err: &azure_core::Error) -> ClientError {
        if let Some(identity) = find_identity_error(err) {
            return ClientError::Identity(identity.clone());
        }
        ClientError::from(match err.kind() {
            ErrorKind::HttpResponse {
                status,
                error_code,
                raw_response,
            } => {
                let body = raw_response
                    .as_ref()
                    .map(|r| String::from_utf8_lossy(r.body().as_ref()).into_owned());
                let www_authenticate = raw_response.as_ref().and_then(|r| {
                    r.headers()
                        .get_optional_str(&azure_core::http::headers::HeaderName::from_static(
                            "www-authenticate",
                        ))
                        .map(capped)
                });
                Self {
                    stage,
                    status: Some(u16::from(*status)),
                    // Key Vault's inner code (ForbiddenByRbac) says more than the outer one (Forbidden).
                    code: body
                        .as_deref()
                        .and_then(inner_code)
                        .or_else(|| error_code.clone())
                        .map(|c| capped(&c)),
                    message: capped(
                        &body
                            .as_deref()
                            .and_then(service_message)
                            .unwrap_or_else(|| err.to_string()),
                    ),
                    www_authenticate,
                    content_type: None,
                    required_role: None,
                    claims: None,
                }
            }
            _ => Self {
                stage,
                status: None,
                code: None,
                message: capped(&error_chain(err)),
                www_authenticate: None,
                content_type: None,
                required_role: None,
                claims: None,
            },
        })
    }
}

pub(crate) fn find_identity_error(err: &azure_core::Error) -> Option<&TokenError> {
    if let Some(e) = err.downcast_ref::<TokenError>() {
        return Some(e);
    }
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        if let Some(e) = s.downcast_ref::<TokenError>() {
            return Some(e);
        }
        if let Some(e) = s
            .downcast_ref::<azure_core::Error>()
            .and_then(|inner| inner.downcast_ref::<TokenError>())
        {
            return Some(e);
        }
        source = s.source();
    }
    None
}

/// Key Vault `{"error":{"message"}}` or Storage `<Error><Message>`.
fn service_message(body: &str) -> Option<String> {
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(body) {
        return json["error"]["message"]
            .as_str()
            .map(|m| m.trim().to_owned());
    }
    let start = body.find("<Message>")? + "<Message>".len();
    let end = body[start..].find("</Message>")? + start;
    Some(body[start..end].trim().to_owned())
}

/// Key Vault's `innererror.code` (e.g. `ForbiddenByRbac`) beats the outer `Forbidden`.
fn inner_code(body: &str) -> Option<String> {
    let json: serde_json::Value = serde_json::from_str(body).ok()?;
    json["error"]["innererror"]["code"]
        .as_str()
        .or_else(|| json["error"]["code"].as_str())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_service_messages() {
        let kv = r#"{"error":{"code":"Forbidden","message":"Caller is not authorized","innererror":{"code":"ForbiddenByRbac"}}}"#;
        assert_eq!(
            service_message(kv).as_deref(),
            Some("Caller is not authorized")
        );
        assert_eq!(inner_code(kv).as_deref(), Some("ForbiddenByRbac"));
        let storage = "<?xml version=\"1.0\"?><Error><Code>AuthorizationPermissionMismatch</Code><Message>This request is not authorized.</Message></Error>";
        assert_eq!(
            service_message(storage).as_deref(),
            Some("This request is not authorized.")
        );
    }

    #[test]
    fn echoed_upstream_text_is_capped() {
        let huge = format!("<Error><Message>{}</Message></Error>", "x".repeat(100_000));
        let message = service_message(&huge).map(|m| capped(&m)).unwrap();
        assert!(message.chars().count() <= crate::identity::MAX_ECHOED_CHARS + 1);
    }

    #[test]
    fn problems_name_stage_and_status() {
        let e = UpstreamError {
            stage: Stage::Keyvault,
            status: Some(403),
            code: Some("ForbiddenByRbac".into()),
            message: "Caller is not authorized".into(),
            www_authenticate: None,
            content_type: None,
            required_role: None,
            claims: None,
        };
        assert!(!e.is_temporary());
        assert!(
            e.to_string()
                .contains("keyvault answered 403 (ForbiddenByRbac)")
        );
        let unreachable = UpstreamError { status: None, ..e };
        assert!(unreachable.is_temporary());
    }
}
