//! Errors of the credential. Each names the identity source and carries the
//! endpoint's status and message when there was one; [`IdentityError::kind`]
//! is a stable classification an app can map to its own documentation.

use crate::source_kind::SourceKind;
use std::time::Duration;

/// A stable classification of [`IdentityError`], for mapping to an app's own
/// docs and status codes. New kinds may be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request cannot be expressed (scopes, a selector the protocol lacks);
    /// nothing was sent.
    InvalidRequest,
    /// The chosen source lacks a setting; nothing was sent.
    NotConfigured,
    /// The endpoint answered 400: usually the selected identity is not attached.
    IdentityNotFound,
    /// The endpoint refused the request's secret header (401/403).
    Unauthorized,
    /// Throttled, unavailable, unreachable or too slow: worth retrying later.
    Unavailable,
    /// Another error status, or a 2xx without a usable token.
    EndpointError,
}

/// Why no token could be obtained.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
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
        /// The protocol that cannot express it.
        via: SourceKind,
        /// The selector kind (`object_id`, `resource_id`).
        selector: crate::user_assigned::SelectorKind,
    },

    /// The endpoint answered with a non-success status.
    #[error(
        "{via} identity endpoint returned {status}: {message}{}{} (after {attempts} attempt{})",
        correlation_id.as_ref().map(|c| format!(" (correlationId {c})")).unwrap_or_default(),
        error_code.as_ref().map(|c| format!(" [{c}]")).unwrap_or_default(),
        if *attempts == 1 { "" } else { "s" }
    )]
    Endpoint {
        /// The protocol used.
        via: SourceKind,
        /// The HTTP status.
        status: u16,
        /// The body's `error` code (IMDS, Entra), if any.
        error_code: Option<String>,
        /// The body's message, capped.
        message: String,
        /// The body's correlation id (App Service), if any.
        correlation_id: Option<String>,
        /// Attempts made, retries included.
        attempts: u32,
        /// The endpoint's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },

    /// The endpoint answered 2xx, but not with a usable token.
    #[error("{via} identity endpoint sent an unusable response: {reason}")]
    InvalidResponse {
        /// The protocol used.
        via: SourceKind,
        /// What was wrong with it (never the token).
        reason: String,
    },

    /// The endpoint could not be reached or did not answer in time.
    #[error("{via} identity endpoint unreachable: {reason} (after {attempts} attempt{})", if *attempts == 1 { "" } else { "s" })]
    Transport {
        /// The protocol used.
        via: SourceKind,
        /// The transport's error, with its causes.
        reason: String,
        /// Attempts made, retries included.
        attempts: u32,
    },

    /// The overall deadline passed before a retry could be made.
    #[error("{via} identity endpoint gave no token within {deadline:?}; last error: {last}")]
    DeadlineExceeded {
        /// The protocol used.
        via: SourceKind,
        /// The deadline that passed.
        deadline: Duration,
        /// The last attempt's error.
        #[source]
        last: Box<IdentityError>,
    },

    /// A token request for this key failed moments ago, so none was sent:
    /// the endpoint is given `retry_in` to recover (see
    /// [`crate::ManagedIdentityCredentialOptions::failure_memory`]).
    #[error("{last} (remembered: no new attempt for {:.1} s)", retry_in.as_secs_f64())]
    RecentFailure {
        /// How long until the next attempt is allowed.
        retry_in: Duration,
        /// The failure being remembered.
        #[source]
        last: Box<IdentityError>,
    },
}

impl IdentityError {
    /// The stable classification of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidScopes(_) | Self::UnsupportedSelector { .. } => ErrorKind::InvalidRequest,
            Self::NotConfigured(_) => ErrorKind::NotConfigured,
            Self::Endpoint { status: 400, .. } => ErrorKind::IdentityNotFound,
            Self::Endpoint {
                status: 401 | 403, ..
            } => ErrorKind::Unauthorized,
            Self::Endpoint {
                status: 408 | 429 | 500 | 502 | 503 | 504,
                ..
            }
            | Self::Transport { .. }
            | Self::DeadlineExceeded { .. } => ErrorKind::Unavailable,
            Self::Endpoint { .. } | Self::InvalidResponse { .. } => ErrorKind::EndpointError,
            Self::RecentFailure { last, .. } => last.kind(),
        }
    }

    /// The upstream HTTP status, if the endpoint answered.
    pub fn upstream_status(&self) -> Option<u16> {
        match self {
            Self::Endpoint { status, .. } => Some(*status),
            Self::DeadlineExceeded { last, .. } | Self::RecentFailure { last, .. } => {
                last.upstream_status()
            }
            _ => None,
        }
    }

    /// The endpoint's `Retry-After`, if the failure carried one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Endpoint { retry_after, .. } => *retry_after,
            Self::DeadlineExceeded { last, .. } | Self::RecentFailure { last, .. } => {
                last.retry_after()
            }
            _ => None,
        }
    }

    /// True when the failure is temporary (throttling, outage, timeouts): an
    /// app answers 503 rather than 502 so callers know to retry later.
    pub fn is_temporary(&self) -> bool {
        match self {
            Self::Endpoint { status, .. } => matches!(status, 408 | 429 | 503 | 504),
            Self::Transport { .. } | Self::NotConfigured(_) => true,
            Self::DeadlineExceeded { last, .. } | Self::RecentFailure { last, .. } => {
                last.is_temporary()
            }
            _ => false,
        }
    }

    /// True when the request itself was wrong (nothing was sent).
    pub fn is_caller_error(&self) -> bool {
        self.kind() == ErrorKind::InvalidRequest
    }

    /// The endpoint's answer, if the failure (or the one it remembers) came from one.
    pub fn endpoint_answer(&self) -> Option<(u16, Option<&str>, &str)> {
        match self {
            Self::Endpoint {
                status,
                error_code,
                message,
                ..
            } => Some((*status, error_code.as_deref(), message)),
            Self::DeadlineExceeded { last, .. } | Self::RecentFailure { last, .. } => {
                last.endpoint_answer()
            }
            _ => None,
        }
    }
}

impl From<IdentityError> for azure_core::Error {
    fn from(err: IdentityError) -> Self {
        let message = err.to_string();
        azure_core::Error::with_error(azure_core::error::ErrorKind::Credential, err, message)
    }
}
