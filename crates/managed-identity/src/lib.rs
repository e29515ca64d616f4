#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod credential;
mod error;
mod expires_on;
mod response;
mod retry;
pub mod single_flight;
mod source;
mod source_kind;
mod token_cache;
mod transport;
mod user_assigned;

pub use credential::{
    CacheScope, DEFAULT_FAILURE_MEMORY, Environment, IMDS_GONE_RETRY, IdentityDescription,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, ManagedIdentitySource,
    ProvidedToken, error_chain, normalize_resource, scope_to_resource,
};
pub use error::{ErrorKind, IdentityError};
pub use expires_on::parse_expires_on;
pub use response::{MAX_ECHOED_CHARS, capped};
pub use retry::RetryOptions;
pub use source::{IMDS_TOKEN_URL, SourceKind};
pub use token_cache::MAX_CACHED_TOKENS;
pub use transport::{EndpointRequest, EndpointResponse, IdentityTransport};
pub use user_assigned::{
    ConflictingSelectors, SelectorKind, SelectorSettingError, UserAssignedId, is_guid,
};
