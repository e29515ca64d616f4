//! The one outbound HTTP client, shared by the token provider and (later) the
//! Azure SDK clients, so every call reuses one connection pool.

use std::time::Duration;

/// Installs rustls' ring provider once; reqwest is built without a default one.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client with explicit timeouts and no automatic decompression (Azure Storage
/// downloads must see the bytes exactly as sent).
pub fn build() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .no_gzip()
        .no_deflate()
        .user_agent(concat!("app1-handler/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("static reqwest configuration is valid")
}
