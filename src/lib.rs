//! app1, an Azure Functions custom handler that uses managed identity end to end.
//!
//! Layers, top to bottom; dependencies only point down (`tests/architecture.rs`):
//!
//! | module | role |
//! |---|---|
//! | [`startup`] | binds 127.0.0.1, wires state and routes ([`Application`]) |
//! | [`protocol`] | the adapters: proxy and forward mode, invocation payloads |
//! | [`functions`] | one module per function folder; problems are built here, at the edge |
//! | [`doctor`] | every identity check in one report (`handler doctor`, `/api/doctor`) |
//! | [`azure`] | the clients: Key Vault, Blob, named APIs, Graph; typed [`azure::ClientError`] |
//! | [`identity`] | the credential chain over the `app-service-identity` crate |
//!
//! Shared below the adapters: [`invocation`], [`state`], [`names`],
//! [`problem`], [`diagnosis`], [`configuration`], [`telemetry`], [`http_client`],
//! [`body_stream`].

pub mod azure;
pub mod body_stream;
pub mod configuration;
pub mod diagnosis;
pub mod doctor;
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
