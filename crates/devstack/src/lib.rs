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

/// A free IPv4 loopback port for a child process to bind (the handler under
/// the host, Azurite).
///
/// Not from `bind(0)`: the kernel may hand the same ephemeral port to the next
/// `bind(0)` in this process before the child binds it, and the host's
/// readiness probe would then be answered by another server. So ports come
/// from below the ephemeral range, each at most once per process.
pub fn free_port() -> std::io::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOWEST: u32 = 10_000;
    static TAKEN: AtomicU32 = AtomicU32::new(0);
    let highest = ephemeral_ports_start().saturating_sub(1).max(LOWEST + 1);
    let span = highest - LOWEST;
    // Processes start at different offsets, so parallel runs rarely meet.
    let offset = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let n = TAKEN.fetch_add(1, Ordering::Relaxed);
        let port = (LOWEST + (offset + n) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no free loopback port below the ephemeral range",
    ))
}

/// The first port the kernel hands out for `bind(0)` and outgoing connections.
fn ephemeral_ports_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_bindable_below_the_ephemeral_range_and_never_repeat() {
        let ports: Vec<u16> = (0..50).map(|_| free_port().unwrap()).collect();
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
        for port in ports {
            assert!(u32::from(port) < ephemeral_ports_start(), "{port}");
            std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
    }
}
