//! What every function shares: the credential, the Azure clients, the settings
//! and the request limits. Built once at startup (`startup`), read by the
//! adapters and the functions; it depends only on the layers below them.

use crate::azure::AzureClients;
use crate::configuration::{AzureSettings, Settings};
use crate::http_client::HttpClientError;
use crate::identity::IdentityProvider;
use std::sync::Arc;

/// Limits applied before any function runs.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
}

/// State shared by every function.
pub struct AppState {
    pub identity: Arc<IdentityProvider>,
    pub azure: AzureClients,
    pub settings: AzureSettings,
    pub limits: Limits,
}

impl AppState {
    /// Builds the provider and clients; no network call is made.
    pub fn new(settings: &Settings) -> Result<Self, HttpClientError> {
        // Built on first use: the readiness probe needs no TLS roots.
        let http = crate::http_client::SharedClient::new(
            settings.azure.extra_ca_cert.as_deref(),
            settings.azure.upstream_timeout,
        )?;
        let identity = Arc::new(IdentityProvider::new(
            settings.identity.clone(),
            Arc::new(crate::identity::TracedTransport(http.clone())),
        ));
        identity.log_source();
        Ok(Self::with_identity(settings, identity, http))
    }

    /// As [`AppState::new`], with a prepared provider (tests inject doubles).
    pub fn with_identity(
        settings: &Settings,
        identity: Arc<IdentityProvider>,
        http: crate::http_client::SharedClient,
    ) -> Self {
        Self {
            azure: AzureClients::new(&settings.azure, identity.clone(), http),
            identity,
            settings: settings.azure.clone(),
            limits: Limits {
                max_body_bytes: settings.azure.max_body_bytes,
            },
        }
    }
}
