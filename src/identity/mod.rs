//! The handler's own managed-identity token provider.
//!
//! It speaks the App Service identity protocols itself (2019-08-01 and the legacy
//! 2017-09-01), IMDS when asked to, and falls back to the Azure CLI / azd for local
//! development. It implements `azure_core`'s [`TokenCredential`], so the official
//! SDK clients use it unchanged.
//!
//! | file | what it holds |
//! |---|---|
//! | `provider.rs` | [`ManagedIdentityProvider`]: source choice, retries, cache |
//! | `source.rs` | the sources and each protocol's request shape |
//! | `response.rs`, `expires_on.rs` | reading token and error bodies |
//! | `cache.rs` | single-flight cache with proactive refresh |
//! | `retry.rs` | back-off, retriable statuses, `Retry-After` |
//! | `transport.rs` | the HTTP exchange, behind a trait for tests |
//! | `claims.rs` | decoding a token's claims for display |
//!
//! [`TokenCredential`]: azure_core::credentials::TokenCredential

mod cache;
pub mod claims;
mod error;
mod expires_on;
mod provider;
mod response;
mod retry;
mod source;
mod transport;
mod user_assigned;

pub use cache::Freshness;
pub use error::{IdentityError, TROUBLESHOOTING};
pub use expires_on::parse_expires_on;
pub use provider::{
    IdentityConfig, IdentityDescription, ManagedIdentityProvider, ProvidedToken, SelectedIdentity,
    SourceMode, error_chain, normalize_resource, scope_to_resource,
};
pub use response::{MAX_ECHOED_CHARS, capped};
pub use retry::RetryOptions;
pub use source::{IMDS_TOKEN_URL, IdentitySource, SourceKind};
pub use transport::{EndpointRequest, EndpointResponse, IdentityTransport};
pub use user_assigned::{UserAssignedId, is_guid};
