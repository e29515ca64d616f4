//! Token validation for the stand-ins: app2's own validator, so that the gate,
//! Key Vault and app2 accept and refuse exactly the same tokens.

pub use app2::jwt::{Rejection, TokenValidator, unverified_claims};
