//! app1, an Azure Functions custom handler that uses managed identity end to end.
//!
//! | module | role |
//! |---|---|
//! | [`startup`] | binds 127.0.0.1, wires state and routes ([`Application`]) |
//! | [`configuration`] | layered, typed settings |
//! | [`telemetry`] | JSON logs, per-request spans with the invocation id |
//! | [`problem`] | `application/problem+json` errors with stage and hint |
//! | [`identity`] | the managed-identity token provider (`TokenCredential`) |
//! | [`functions`] | one module per function folder |
//! | [`http_client`] | the shared outbound HTTP client |

pub mod azure;
pub mod configuration;
pub mod diagnosis;
pub mod functions;
pub mod http_client;
pub mod identity;
pub mod invocation;
pub mod names;
pub mod problem;
pub mod protocol;
pub mod startup;
pub mod state;
pub mod telemetry;

pub use startup::Application;
pub use state::AppState;
