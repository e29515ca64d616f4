//! The handler's credential: managed identity through the
//! [`app_service_identity`] crate wherever the platform provides one, and,
//! on a developer machine, the Azure CLI / azd as this app's explicit choice.
//!
//! | file | what it holds |
//! |---|---|
//! | `provider.rs` | [`IdentityProvider`]: the chain, chosen once at startup |
//! | `claims.rs` | decoding a token's claims for display |
//! | `facts.rs` | those claims and their JSON, worked out once per token |
//! | `traced_transport.rs` | the endpoint call as a client span, with `traceparent` |

pub mod claims;
mod facts;
mod provider;
mod traced_transport;

pub use app_service_identity::{
    CacheScope, ErrorKind, IdentityError, MAX_ECHOED_CHARS, ManagedIdentitySource, RetryOptions,
    SelectorKind, SourceKind, UserAssignedId, capped, error_chain, is_guid, normalize_resource,
    scope_to_resource,
};
pub use facts::{FactsCache, TokenFacts};
pub use provider::{
    CredentialSource, IdentityConfig, IdentityDescription, IdentityProvider, ProvidedToken,
    SourceMode, TokenError,
};
pub use traced_transport::TracedTransport;
