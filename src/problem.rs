//! Error responses as RFC 9457 problem details (`application/problem+json`).
//!
//! Every error the handler returns has `type`, `title`, `status` and `detail`;
//! `stage` says which hop failed, `upstream_status` what that hop answered, and
//! `hint` what to do. A problem never carries a token or a secret value.

use crate::identity::{ErrorKind, IdentityError, TokenError};

/// Problem `type`s are `TROUBLESHOOTING.md#<section>`.
pub const TROUBLESHOOTING_BASE: &str = "TROUBLESHOOTING.md";
use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use serde::Serialize;
use std::fmt;

/// Every problem `type` the handler emits: each is a section of TROUBLESHOOTING.md
/// (a test checks), and `Problem::new` refuses others in debug builds.
pub const ANCHORS: &[&str] = &[
    "bad-request",
    "not-found",
    "not-configured",
    "payload-too-large",
    "binary-in-payload-mode",
    "secret-not-found",
    "blob-not-found",
    "identity-bad-request",
    "identity-not-configured",
    "identity-endpoint-400",
    "identity-endpoint-rejected-header",
    "identity-endpoint-unavailable",
    "identity-endpoint-error",
    "developer-credential",
    "keyvault-error",
    "storage-error",
    "app2-error",
    "keyvault-forbidden-by-rbac",
    "keyvault-access-policy",
    "keyvault-unauthorized",
    "storage-authorization-permission-mismatch",
    "storage-authentication-failed",
    "app2-audience-not-allowed",
    "app2-tenant-mismatch",
    "app2-not-allowed",
    "app2-missing-app-role",
    "identity-not-attached",
    "identity-invalid-resource",
    "container-not-allowed",
    "container-read-only",
    "resource-not-allowed",
    "blob-exists",
    "blob-too-large",
];

/// Which hop of a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// The caller's request itself.
    Request,
    Identity,
    Keyvault,
    Storage,
    App2,
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
    pub fn new(status: StatusCode, anchor: &str, detail: impl Into<String>) -> Self {
        debug_assert!(
            ANCHORS.contains(&anchor),
            "problem type {anchor} is not in ANCHORS (add it there and to TROUBLESHOOTING.md)"
        );
        Self(Box::new(ProblemDetails {
            kind: format!("{TROUBLESHOOTING_BASE}#{anchor}"),
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
        Self::new(StatusCode::BAD_REQUEST, "bad-request", detail).stage(Stage::Request)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", detail).stage(Stage::Request)
    }

    /// 413: the body is larger than `MAX_BODY_BYTES`; nothing was stored.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            format!("the request body is larger than {limit} bytes"),
        )
        .stage(Stage::Request)
        .hint("Raise MAX_BODY_BYTES, or upload large blobs directly to storage.")
    }

    /// 503: the function needs a setting this deployment does not have.
    pub fn not_configured(stage: Stage, setting: &str, what: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-configured",
            format!("{setting} is not set, so this function cannot reach {what}"),
        )
        .stage(stage)
        .hint(format!("Set the app setting {setting}."))
    }

    pub fn stage(mut self, stage: Stage) -> Self {
        self.stage = Some(stage);
        self
    }

    pub fn upstream(mut self, status: Option<u16>) -> Self {
        self.upstream_status = status;
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl std::ops::Deref for Problem {
    type Target = ProblemDetails;
    fn deref(&self) -> &ProblemDetails {
        &self.0
    }
}

impl std::ops::DerefMut for Problem {
    fn deref_mut(&mut self) -> &mut ProblemDetails {
        &mut self.0
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

impl From<TokenError> for Problem {
    fn from(err: TokenError) -> Self {
        Problem::from(&err)
    }
}

impl From<&TokenError> for Problem {
    fn from(err: &TokenError) -> Self {
        let see = |anchor: &str| format!("See {TROUBLESHOOTING_BASE}#{anchor}.");
        match err {
            TokenError::Managed(e) => Problem::from(e),
            TokenError::SelectorUnsupported(reason) => {
                Problem::new(StatusCode::BAD_REQUEST, "identity-bad-request", reason.clone())
                    .stage(Stage::Identity)
                    .hint(see("identity-bad-request"))
            }
            TokenError::Developer(_) => Problem::new(
                StatusCode::BAD_GATEWAY,
                "developer-credential",
                err.to_string(),
            )
            .stage(Stage::Identity)
            .hint(format!(
                "No managed identity is present, so the handler used developer credentials: run `az login` (or `azd auth login`), or start devstack for a local identity endpoint. {}",
                see("developer-credential")
            )),
            TokenError::NotConfigured { setting, reason } => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not-configured",
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
        let mut problem = Problem::new(status, anchor, err.to_string())
            .stage(Stage::Identity)
            .upstream(err.upstream_status())
            .hint(identity_hint(err, anchor));
        if let Some((status, code, message)) = err.endpoint_answer() {
            problem.extensions.insert(
                "upstream".into(),
                serde_json::json!({ "status": status, "code": code, "message": message }),
            );
        }
        problem
    }
}

/// The TROUBLESHOOTING.md section for an identity error, from the crate's
/// stable [`ErrorKind`].
fn identity_anchor(err: &IdentityError) -> &'static str {
    match (err.kind(), err) {
        (ErrorKind::InvalidRequest, _) => "identity-bad-request",
        (ErrorKind::NotConfigured, _) => "identity-not-configured",
        (ErrorKind::IdentityNotFound, _) => "identity-endpoint-400",
        (ErrorKind::Unauthorized, _) => "identity-endpoint-rejected-header",
        (ErrorKind::Unavailable, _) if err.is_temporary() || err.upstream_status().is_none() => {
            "identity-endpoint-unavailable"
        }
        (ErrorKind::Unavailable, IdentityError::DeadlineExceeded { .. }) => {
            "identity-endpoint-unavailable"
        }
        _ => "identity-endpoint-error",
    }
}

fn identity_hint(err: &IdentityError, anchor: &str) -> String {
    let see = format!("See {TROUBLESHOOTING_BASE}#{anchor}.");
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
        for anchor in ANCHORS {
            assert!(
                guide.contains(&format!("<a id=\"{anchor}\"></a>")),
                "TROUBLESHOOTING.md lacks {anchor}"
            );
        }
    }
}
