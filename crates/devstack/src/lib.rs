//! devstack: faithful local stand-ins for the Azure services app1 talks to.
//!
//! | module | stands in for |
//! |---|---|
//! | [`identity_endpoint`] | the App Service identity endpoint (2019/2017), IMDS, OIDC discovery |
//! | [`issuer`] | Entra ID: RS256 access tokens with real v1/v2 claim sets, JWKS |
//! | [`keyvault`] | Key Vault secrets (challenge, RBAC, error shapes) |
//! | [`azurite`] | Blob Storage, via the real Azurite emulator |
//! | [`easyauth`] | App Service Authentication in front of app2 |
//! | [`graph`] | Microsoft Graph v1.0: service principals and app role assignments |
//! | [`login`] | Entra's token endpoint for a partner tenant: client assertions checked against FICs |
//! | [`validate`] | token validation shared by the vault and the gate |
//! | [`world`] | the simulated tenant: identities, roles, allow-lists |
//! | [`tls`] | one local CA for every HTTPS endpoint |
//! | [`stack`] | starts and stops all of it, writes the env file |
//! | [`scenario`] | the classic failures, one at a time |
//! | [`host`] | the Functions host stand-in |
//! | [`http_path`] | one normalized path for routing, auth and dispatch |
//! | [`demo`] | `devstack demo`: the flow once, in a world of its own |
//! | [`traces`] | an OTLP/HTTP receiver and a page drawing each run |
//!
//! None of this ships in `handler`: it is test and development infrastructure.

pub mod azurite;
pub mod conformance;
pub mod demo;
pub mod easyauth;
pub mod graph;
pub mod host;
pub mod http_path;
pub mod identity_endpoint;
pub mod issuer;
pub mod keyvault;
pub mod login;
pub mod report;
pub mod scenario;
pub mod stack;
pub mod tls;
pub mod traces;
pub mod validate;
pub mod world;

/// `8-4-4-4-12` hex: the shape of tenant, client and object ids.
pub fn world_guid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok()
}

/// A free IPv4 loopback port (bound and released).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
