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
    let mut b = builder(timeout);
    if let Some(path) = extra_ca {
        let pem = std::fs::read(path).map_err(|source| HttpClientError::UnreadableCa {
            path: path.to_owned(),
            source,
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| {
            HttpClientError::NotPem {
                path: path.to_owned(),
                source,
            }
        })?;
        b = b.tls_certs_merge(certs);
    }
    b.build().map_err(HttpClientError::Build)
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
