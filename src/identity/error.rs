//! Errors of the token provider. Each names the identity source, carries the
//! upstream status and message when there was one, and points at a
//! troubleshooting section.

use super::source::SourceKind;
use std::time::Duration;

/// Where users find help; each variant links a section of `TROUBLESHOOTING.md`.
pub const TROUBLESHOOTING: &str = "TROUBLESHOOTING.md";

/// Why no token could be obtained.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Managed identity needs exactly one non-empty scope; nothing was sent.
    #[error("invalid scopes: {0}")]
    InvalidScopes(String),

    /// The selected source lacks a setting (e.g. `IDENTITY_HEADER`); nothing was sent.
    #[error("managed identity is not configured: {0}")]
    NotConfigured(String),

    /// The selector cannot be expressed on this source; nothing was sent.
    #[error("the {via} identity source cannot select a user-assigned identity by {selector}")]
    UnsupportedSelector {
        via: SourceKind,
        selector: &'static str,
    },

    /// The endpoint answered with a non-success status.
    #[error(
        "{via} identity endpoint returned {status}: {message}{}{} (after {attempts} attempt{})",
        correlation_id.as_ref().map(|c| format!(" (correlationId {c})")).unwrap_or_default(),
        error_code.as_ref().map(|c| format!(" [{c}]")).unwrap_or_default(),
        if *attempts == 1 { "" } else { "s" }
    )]
    Endpoint {
        via: SourceKind,
        status: u16,
        error_code: Option<String>,
        message: String,
        correlation_id: Option<String>,
        attempts: u32,
    },

    /// The endpoint answered 2xx, but not with a usable token.
    #[error("{via} identity endpoint sent an unusable response: {reason}")]
    InvalidResponse { via: SourceKind, reason: String },

    /// The endpoint could not be reached or did not answer in time.
    #[error("{via} identity endpoint unreachable: {reason} (after {attempts} attempt{})", if *attempts == 1 { "" } else { "s" })]
    Transport {
        via: SourceKind,
        reason: String,
        attempts: u32,
    },

    /// The overall deadline passed before a retry could be made.
    #[error("{via} identity endpoint gave no token within {deadline:?}; last error: {last}")]
    DeadlineExceeded {
        via: SourceKind,
        deadline: Duration,
        last: Box<IdentityError>,
    },

    /// The local developer credential (Azure CLI / azd) failed.
    #[error("developer credential failed: {0}")]
    Developer(String),
}

impl IdentityError {
    /// The upstream HTTP status, if the endpoint answered.
    pub fn upstream_status(&self) -> Option<u16> {
        match self {
            Self::Endpoint { status, .. } => Some(*status),
            Self::DeadlineExceeded { last, .. } => last.upstream_status(),
            _ => None,
        }
    }

    /// True when the failure is temporary (throttling, outage, timeouts): the
    /// handler answers 503 rather than 502 so callers know to retry later.
    pub fn is_temporary(&self) -> bool {
        match self {
            Self::Endpoint { status, .. } => matches!(status, 408 | 429 | 503 | 504),
            Self::Transport { .. } | Self::NotConfigured(_) => true,
            Self::DeadlineExceeded { last, .. } => last.is_temporary(),
            _ => false,
        }
    }

    /// True when the caller's request itself was wrong (nothing was sent).
    pub fn is_caller_error(&self) -> bool {
        matches!(
            self,
            Self::InvalidScopes(_) | Self::UnsupportedSelector { .. }
        )
    }

    /// The `TROUBLESHOOTING.md` section that explains this failure.
    pub fn anchor(&self) -> &'static str {
        match self {
            Self::InvalidScopes(_) | Self::UnsupportedSelector { .. } => "identity-bad-request",
            Self::NotConfigured(_) => "identity-not-configured",
            Self::Endpoint { status: 400, .. } => "identity-endpoint-400",
            Self::Endpoint {
                status: 401 | 403, ..
            } => "identity-endpoint-rejected-header",
            Self::Endpoint {
                status: 429 | 503 | 504,
                ..
            }
            | Self::Transport { .. }
            | Self::DeadlineExceeded { .. } => "identity-endpoint-unavailable",
            Self::Endpoint { .. } | Self::InvalidResponse { .. } => "identity-endpoint-error",
            Self::Developer(_) => "developer-credential",
        }
    }

    /// `TROUBLESHOOTING.md#<anchor>`, as shown in messages and problem bodies.
    pub fn help_link(&self) -> String {
        format!("{TROUBLESHOOTING}#{}", self.anchor())
    }
}

impl From<IdentityError> for azure_core::Error {
    fn from(err: IdentityError) -> Self {
        let message = format!("{err}. See {}", err.help_link());
        azure_core::Error::with_error(azure_core::error::ErrorKind::Credential, err, message)
    }
}
