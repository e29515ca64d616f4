//! The one outbound HTTP client, shared by the token provider, the Azure SDK
//! clients (as their transport) and the app2 client: one connection pool.

use std::path::Path;
use std::time::Duration;

/// Installs rustls' ring provider once; reqwest is built without a default one.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client with explicit timeouts and no automatic decompression (Azure Storage
/// downloads must see the bytes exactly as sent).
pub fn build() -> reqwest::Client {
    builder(Duration::from_secs(30))
        .build()
        .expect("static reqwest configuration is valid")
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    #[error("EXTRA_CA_CERT {path} cannot be read: {source}")]
    UnreadableCa {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("EXTRA_CA_CERT {path} is not PEM: {source}")]
    NotPem {
        path: std::path::PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("the HTTP client cannot be built: {0}")]
    Build(#[source] reqwest::Error),
}

/// As [`build`], also trusting the PEM certificates in `extra_ca` (e.g.
/// devstack's local CA) on top of the platform's roots.
pub fn build_with(
    extra_ca: Option<&Path>,
    timeout: Duration,
) -> Result<reqwest::Client, HttpClientError> {
    builder(timeout)
        .tls_certs_merge(extra_certs(extra_ca)?)
        .build()
        .map_err(HttpClientError::Build)
}

/// The PEM certificates in `extra_ca`, read and checked (none without one).
fn extra_certs(extra_ca: Option<&Path>) -> Result<Vec<reqwest::Certificate>, HttpClientError> {
    let Some(path) = extra_ca else {
        return Ok(vec![]);
    };
    let pem = std::fs::read(path).map_err(|source| HttpClientError::UnreadableCa {
        path: path.to_owned(),
        source,
    })?;
    reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| HttpClientError::NotPem {
        path: path.to_owned(),
        source,
    })
}

fn builder(timeout: Duration) -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_gzip()
        .no_deflate()
        .user_agent(concat!("app1-handler/", env!("CARGO_PKG_VERSION")))
}

/// The shared client, built on first use. Loading the platform's root
/// certificates is about nine tenths of what starting the handler costs, and
/// the host's readiness probe needs none of it; the first outbound call pays
/// instead. Cloning shares the one client (and its connection pool).
#[derive(Clone)]
pub struct SharedClient(std::sync::Arc<Lazy>);

struct Lazy {
    client: std::sync::OnceLock<Result<reqwest::Client, String>>,
    extra_certs: Vec<reqwest::Certificate>,
    timeout: Duration,
}

impl std::fmt::Debug for SharedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedClient")
            .field("built", &self.0.client.get().is_some())
            .field("extra_certs", &self.0.extra_certs.len())
            .finish()
    }
}

impl SharedClient {
    /// Reads and checks `extra_ca` now (a bad file stops startup, naming
    /// it); builds the client on first use.
    pub fn new(extra_ca: Option<&Path>, timeout: Duration) -> Result<Self, HttpClientError> {
        Ok(Self(std::sync::Arc::new(Lazy {
            client: Default::default(),
            extra_certs: extra_certs(extra_ca)?,
            timeout,
        })))
    }

    /// The client, built now if this is the first call. An error (the TLS
    /// roots could not be loaded) is kept and given to every caller.
    pub fn client(&self) -> Result<&reqwest::Client, String> {
        self.0
            .client
            .get_or_init(|| {
                builder(self.0.timeout)
                    .tls_certs_merge(self.0.extra_certs.iter().cloned())
                    .build()
                    .map_err(|e| HttpClientError::Build(e).to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

#[async_trait::async_trait]
impl azure_core::http::HttpClient for SharedClient {
    async fn execute_request(
        &self,
        request: &azure_core::http::Request,
    ) -> azure_core::Result<azure_core::http::AsyncRawResponse> {
        let client = self.client().map_err(|message| {
            azure_core::Error::with_message(azure_core::error::ErrorKind::Io, message)
        })?;
        client.execute_request(request).await
    }
}

#[async_trait::async_trait]
impl app_service_identity::IdentityTransport for SharedClient {
    async fn send(
        &self,
        request: &app_service_identity::EndpointRequest,
    ) -> Result<app_service_identity::EndpointResponse, String> {
        self.client()?.send(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_extra_ca_stops_startup_and_a_good_client_is_built_once() {
        let missing = SharedClient::new(
            Some(Path::new("/nonexistent/ca.pem")),
            Duration::from_secs(1),
        );
        assert!(matches!(missing, Err(HttpClientError::UnreadableCa { .. })));
        let shared = SharedClient::new(None, Duration::from_secs(1)).unwrap();
        assert!(format!("{shared:?}").contains("built: false"));
        let first = shared.client().unwrap() as *const _;
        let again = shared.clone();
        assert_eq!(
            again.client().unwrap() as *const _,
            first,
            "one client, shared"
        );
        assert!(format!("{shared:?}").contains("built: true"));
    }
}
