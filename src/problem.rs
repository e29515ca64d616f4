//! Error responses as RFC 9457 problem details (`application/problem+json`).
//!
//! Every error the handler returns has `type`, `title`, `status` and `detail`;
//! `stage` says which hop failed, `upstream_status` what that hop answered, and
//! `hint` what to do. A problem never carries a token or a secret value.

pub use crate::azure::Stage;
use crate::azure::{ClientError, UpstreamError};
use crate::identity::{ErrorKind, IdentityError, TokenError};
use crate::names::InvalidName;

/// Problem `type`s are `TROUBLESHOOTING.md#<section>`.
pub const TROUBLESHOOTING_BASE: &str = "TROUBLESHOOTING.md";
use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use serde::Serialize;
use std::fmt;

/// Every problem `type` the handler emits. Each is a section of
/// TROUBLESHOOTING.md, and a test checks that every one of them has its section.
macro_rules! problem_types {
    ($($variant:ident => $anchor:literal,)*) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ProblemType {
            $($variant,)*
        }

        impl ProblemType {
            /// All of them, for the documentation test.
            pub const ALL: &[ProblemType] = &[$(ProblemType::$variant,)*];

            /// The TROUBLESHOOTING.md section (`#anchor`).
            pub fn anchor(self) -> &'static str {
                match self {
                    $(ProblemType::$variant => $anchor,)*
                }
            }
        }
    };
}

problem_types! {
    BadRequest => "bad-request",
    NotFound => "not-found",
    NotConfigured => "not-configured",
    PayloadTooLarge => "payload-too-large",
    BinaryInPayloadMode => "binary-in-payload-mode",
    SecretNotFound => "secret-not-found",
    BlobNotFound => "blob-not-found",
    IdentityBadRequest => "identity-bad-request",
    IdentityNotConfigured => "identity-not-configured",
    IdentityEndpoint400 => "identity-endpoint-400",
    IdentityEndpointRejectedHeader => "identity-endpoint-rejected-header",
    IdentityEndpointUnavailable => "identity-endpoint-unavailable",
    IdentityEndpointError => "identity-endpoint-error",
    DeveloperCredential => "developer-credential",
    KeyvaultError => "keyvault-error",
    StorageError => "storage-error",
    App2Error => "app2-error",
    GraphError => "graph-error",
    FederationError => "federation-error",
    FicNoMatch => "fic-no-match",
    FicIssuerMismatch => "fic-issuer-mismatch",
    FicAudienceMismatch => "fic-audience-mismatch",
    FicSubjectMismatch => "fic-subject-mismatch",
    FicSubjectCase => "fic-subject-case",
    PartnerNotProvisioned => "partner-not-provisioned",
    PartnerMissingAppRole => "partner-missing-app-role",
    DownstreamError => "downstream-error",
    PathNotAllowed => "path-not-allowed",
    UnknownApi => "unknown-api",
    KeyvaultForbiddenByRbac => "keyvault-forbidden-by-rbac",
    KeyvaultAccessPolicy => "keyvault-access-policy",
    KeyvaultUnauthorized => "keyvault-unauthorized",
    StorageAuthorizationPermissionMismatch => "storage-authorization-permission-mismatch",
    StorageAuthenticationFailed => "storage-authentication-failed",
    App2AudienceNotAllowed => "app2-audience-not-allowed",
    App2TenantMismatch => "app2-tenant-mismatch",
    App2IssuerNotAccepted => "app2-issuer-not-accepted",
    App2SigningKeysUnavailable => "app2-signing-keys-unavailable",
    App2TokenSignature => "app2-token-signature",
    App2TokenExpired => "app2-token-expired",
    App2TokenRejected => "app2-token-rejected",
    App2NotAllowed => "app2-not-allowed",
    App2MissingAppRole => "app2-missing-app-role",
    RoleNeverAssigned => "role-never-assigned",
    RoleNotYetInToken => "role-not-yet-in-token",
    RoleNotForApplications => "role-not-for-applications",
    RoleMissingOnApi => "role-missing-on-api",
    IdentityNotAttached => "identity-not-attached",
    IdentityInvalidResource => "identity-invalid-resource",
    ContainerNotAllowed => "container-not-allowed",
    ContainerReadOnly => "container-read-only",
    ResourceNotAllowed => "resource-not-allowed",
    BlobExists => "blob-exists",
    BlobTooLarge => "blob-too-large",
    RangeNotSatisfiable => "range-not-satisfiable",
}

impl ProblemType {
    /// `{stage}-error`: an upstream failed or refused, undiagnosed.
    pub fn upstream_error(stage: Stage) -> Self {
        match stage {
            Stage::Keyvault => ProblemType::KeyvaultError,
            Stage::Storage => ProblemType::StorageError,
            Stage::Api("app2") => ProblemType::App2Error,
            Stage::Api("graph") => ProblemType::GraphError,
            Stage::Api(_) => ProblemType::DownstreamError,
            Stage::Identity => ProblemType::IdentityEndpointError,
            Stage::Request => ProblemType::BadRequest,
        }
    }
}

/// A problem document. Boxed, so `Result<_, Problem>` stays one pointer wide.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Problem(Box<ProblemDetails>);

/// The members of a [`Problem`].
#[derive(Debug, Clone, Serialize)]
pub struct ProblemDetails {
    /// A stable identifier: `TROUBLESHOOTING.md#<section>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Extension members (RFC 9457 §3.2), e.g. the flow's step report.
    #[serde(flatten, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extensions: serde_json::Map<String, serde_json::Value>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: ProblemType, detail: impl Into<String>) -> Self {
        Self(Box::new(ProblemDetails {
            kind: format!("{TROUBLESHOOTING_BASE}#{}", kind.anchor()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            stage: None,
            upstream_status: None,
            hint: None,
            extensions: serde_json::Map::new(),
        }))
    }

    /// 400 for a malformed request; nothing was sent upstream.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ProblemType::BadRequest, detail).stage(Stage::Request)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ProblemType::NotFound, detail).stage(Stage::Request)
    }

    /// 413: the body is larger than `MAX_BODY_BYTES`; nothing was stored.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ProblemType::PayloadTooLarge,
            format!("the request body is larger than {limit} bytes"),
        )
        .stage(Stage::Request)
        .hint("Raise MAX_BODY_BYTES, or upload large blobs directly to storage.")
    }

    /// A diagnosed refusal: its specific `type`, the fix as `hint`, and the
    /// `diagnosis` member.
    pub fn diagnosed(mut self, kind: ProblemType, fix: String, diagnosis: &impl Serialize) -> Self {
        self.0.kind = format!("{TROUBLESHOOTING_BASE}#{}", kind.anchor());
        self.0.hint = Some(fix);
        self.0.extensions.insert(
            "diagnosis".into(),
            serde_json::to_value(diagnosis).unwrap_or_default(),
        );
        self
    }

    /// Marks `span` failed with this problem: its type (the anchor), detail,
    /// fix, stage and upstream status. A problem never holds a token.
    pub fn record_on(&self, span: &tracing::Span) {
        crate::telemetry::record_failure(
            span,
            &crate::telemetry::Failed {
                problem_type: self.0.kind.rsplit('#').next().unwrap_or_default(),
                detail: &self.0.detail,
                fix: self.0.hint.as_deref(),
                stage: self.0.stage.map(Stage::as_str),
                upstream_status: self.0.upstream_status,
            },
        );
    }

    /// The same problem with another status, and the title that goes with it.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.0.status = status.as_u16();
        self.0.title = status.canonical_reason().unwrap_or("Error").to_owned();
        self
    }

    /// Adds an extension member (RFC 9457 §3.2), e.g. the flow's step report.
    pub fn with_extension(mut self, name: &str, value: serde_json::Value) -> Self {
        self.0.extensions.insert(name.to_owned(), value);
        self
    }

    pub fn stage(mut self, stage: Stage) -> Self {
        self.0.stage = Some(stage);
        self
    }

    pub fn upstream(mut self, status: Option<u16>) -> Self {
        self.0.upstream_status = status;
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.0.hint = Some(hint.into());
        self
    }
}

impl std::ops::Deref for Problem {
    type Target = ProblemDetails;
    fn deref(&self) -> &ProblemDetails {
        &self.0
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.title, self.detail)
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .content_type("application/problem+json")
            .json(self)
    }
}

impl From<InvalidName> for Problem {
    fn from(err: InvalidName) -> Self {
        Problem::bad_request(err.0)
    }
}

impl From<ClientError> for Problem {
    fn from(err: ClientError) -> Self {
        Problem::from(&err)
    }
}

/// The one place a client's typed error becomes an HTTP problem.
impl From<&ClientError> for Problem {
    fn from(err: &ClientError) -> Self {
        match err {
            ClientError::Identity(e) => Problem::from(e),
            ClientError::Upstream(u) => Problem::from(u.as_ref()),
            // An exchange refused is the identity step failing, in the other tenant.
            ClientError::Exchange(e) => Problem::new(
                StatusCode::BAD_GATEWAY,
                ProblemType::FederationError,
                e.to_string(),
            )
            .stage(e.stage)
            .upstream(e.status),
            ClientError::NotFound { stage, what } => {
                let kind = if *stage == Stage::Keyvault {
                    ProblemType::SecretNotFound
                } else {
                    ProblemType::BlobNotFound
                };
                let detail = if *stage == Stage::Keyvault {
                    format!("Key Vault has no {what}")
                } else {
                    format!("{what} does not exist")
                };
                Problem::new(StatusCode::NOT_FOUND, kind, detail)
                    .stage(*stage)
                    .upstream(Some(404))
            }
            ClientError::NotConfigured {
                stage,
                setting,
                reason,
            } => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ProblemType::NotConfigured,
                reason.clone(),
            )
            .stage(*stage)
            .hint(format!("Set the app setting {setting}.")),
            ClientError::BlobExists { .. } => Problem::new(
                StatusCode::CONFLICT,
                ProblemType::BlobExists,
                err.to_string(),
            )
            .stage(Stage::Storage)
            .upstream(Some(409)),
            ClientError::BlobTooLarge { .. } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ProblemType::BlobTooLarge,
                err.to_string(),
            )
            .stage(Stage::Request)
            .hint("The host buffers whole responses in forward and payload mode, so downloads stop at MAX_BODY_BYTES there. Turn on customHandler.enableProxyingHttpRequest in host.json (current hosts) and the handler streams blobs of any size; or raise MAX_BODY_BYTES."),
            ClientError::UploadTooLarge { .. } => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ProblemType::PayloadTooLarge,
                err.to_string(),
            )
            .stage(Stage::Request)
            .hint("Raise MAX_UPLOAD_BYTES, and the host's FUNCTIONS_REQUEST_BODY_SIZE_LIMIT with it (both 100 MB by default)."),
            ClientError::RequestBody { .. } => {
                Problem::new(StatusCode::BAD_REQUEST, ProblemType::BadRequest, err.to_string())
                    .stage(Stage::Request)
            }
        }
    }
}

impl From<&UpstreamError> for Problem {
    fn from(u: &UpstreamError) -> Self {
        let status = if u.is_temporary() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::BAD_GATEWAY
        };
        Problem::new(status, ProblemType::upstream_error(u.stage), u.to_string())
            .stage(u.stage)
            .upstream(u.status)
    }
}

impl From<TokenError> for Problem {
    fn from(err: TokenError) -> Self {
        Problem::from(&err)
    }
}

impl From<&TokenError> for Problem {
    fn from(err: &TokenError) -> Self {
        let see = |kind: ProblemType| format!("See {TROUBLESHOOTING_BASE}#{}.", kind.anchor());
        match err {
            TokenError::Managed(e) => Problem::from(e),
            TokenError::SelectorUnsupported(reason) => {
                Problem::new(StatusCode::BAD_REQUEST, ProblemType::IdentityBadRequest, reason.clone())
                    .stage(Stage::Identity)
                    .hint(see(ProblemType::IdentityBadRequest))
            }
            TokenError::Developer(_) => Problem::new(
                StatusCode::BAD_GATEWAY, ProblemType::DeveloperCredential,
                err.to_string(),
            )
            .stage(Stage::Identity)
            .hint(format!(
                "No managed identity is present, so the handler used developer credentials: run `az login` (or `azd auth login`), or start devstack for a local identity endpoint. {}",
                see(ProblemType::DeveloperCredential)
            )),
            TokenError::NotConfigured { setting, reason } => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE, ProblemType::NotConfigured,
                format!("{setting}: {reason}"),
            )
            .stage(Stage::Identity)
            .hint(format!("Fix the app setting {setting}; the handler logged this at startup.")),
        }
    }
}

impl From<&IdentityError> for Problem {
    fn from(err: &IdentityError) -> Self {
        let status = if err.is_caller_error() {
            StatusCode::BAD_REQUEST
        } else if err.is_temporary() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::BAD_GATEWAY
        };
        let anchor = identity_anchor(err);
        Problem::new(status, anchor, err.to_string())
            .stage(Stage::Identity)
            .upstream(err.upstream_status())
            .hint(identity_hint(err, anchor))
    }
}

/// The TROUBLESHOOTING.md section for an identity error, from the crate's
/// stable [`ErrorKind`].
fn identity_anchor(err: &IdentityError) -> ProblemType {
    match (err.kind(), err) {
        (ErrorKind::InvalidRequest, _) => ProblemType::IdentityBadRequest,
        (ErrorKind::NotConfigured, _) => ProblemType::IdentityNotConfigured,
        (ErrorKind::IdentityNotFound, _) => ProblemType::IdentityEndpoint400,
        (ErrorKind::Unauthorized, _) => ProblemType::IdentityEndpointRejectedHeader,
        (ErrorKind::Unavailable, _) if err.is_temporary() || err.upstream_status().is_none() => {
            ProblemType::IdentityEndpointUnavailable
        }
        (ErrorKind::Unavailable, IdentityError::DeadlineExceeded { .. }) => {
            ProblemType::IdentityEndpointUnavailable
        }
        _ => ProblemType::IdentityEndpointError,
    }
}

fn identity_hint(err: &IdentityError, kind: ProblemType) -> String {
    let see = format!("See {TROUBLESHOOTING_BASE}#{}.", kind.anchor());
    let text = match err.kind() {
        ErrorKind::IdentityNotFound => {
            "The selected user-assigned identity is not attached to this app, or several are attached and none is selected. Check AZURE_CLIENT_ID / MANAGED_IDENTITY_OBJECT_ID / MANAGED_IDENTITY_RESOURCE_ID against the identities shown under the app's Identity blade."
        }
        ErrorKind::Unauthorized => {
            "The identity endpoint refused the request header. IDENTITY_HEADER is rotated by the platform: read it from the environment at startup, never copy it into settings."
        }
        ErrorKind::NotConfigured => {
            "Enable a managed identity on the app (it sets IDENTITY_ENDPOINT and IDENTITY_HEADER), or set MANAGED_IDENTITY_SOURCE to match your environment."
        }
        _ if err.is_temporary() => {
            "The identity endpoint is throttling or unavailable. Retry later; tokens are cached, so this is rare once the app is warm."
        }
        _ => "",
    };
    if text.is_empty() {
        see
    } else {
        format!("{text} {see}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_type_has_a_troubleshooting_section() {
        let guide = include_str!("../TROUBLESHOOTING.md");
        for kind in ProblemType::ALL {
            let anchor = kind.anchor();
            assert!(
                guide.contains(&format!("<a id=\"{anchor}\"></a>")),
                "TROUBLESHOOTING.md lacks {anchor}"
            );
        }
    }
}
