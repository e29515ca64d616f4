//! Azure clients: Key Vault and Blob Storage through the official SDK crates,
//! and app2 through reqwest, all on the handler's own token provider and one
//! shared HTTP client.

pub mod app2;
pub mod blobs;
pub mod keyvault;
mod ttl_cache;
pub mod upstream;

use crate::configuration::AzureSettings;
use crate::identity::{ManagedIdentityProvider, UserAssignedId};
use crate::problem::{Problem, Stage};
use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions, Transport};
use std::sync::Arc;

/// The clients, each either ready or the problem that explains why not.
pub struct AzureClients {
    pub secrets: Result<keyvault::SecretsService, Problem>,
    pub blobs: Result<blobs::BlobStore, Problem>,
    pub app2: Result<app2::App2Client, Problem>,
    settings: AzureSettings,
    identity: Arc<ManagedIdentityProvider>,
    http: reqwest::Client,
}

impl AzureClients {
    /// Builds every client without touching the network.
    pub fn new(
        settings: &AzureSettings,
        identity: Arc<ManagedIdentityProvider>,
        http: reqwest::Client,
    ) -> Self {
        let credential: Arc<dyn TokenCredential> = identity.clone();
        let http_for_self = http.clone();
        let options = client_options(settings, http.clone());
        let invalid = |stage, setting: &str, e: azure_core::Error| {
            Problem::new(
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                "not-configured",
                format!("{setting} is invalid: {e}"),
            )
            .stage(stage)
        };
        let secrets = match &settings.keyvault_url {
            None => Err(Problem::not_configured(
                Stage::Keyvault,
                "KEYVAULT_URL",
                "Key Vault",
            )),
            Some(url) => keyvault::SecretsService::new(
                url,
                credential.clone(),
                options.clone(),
                settings.verify_challenge_resource,
                settings.secret_cache_ttl,
            )
            .map_err(|e| invalid(Stage::Keyvault, "KEYVAULT_URL", e)),
        };
        let blobs = match &settings.storage_account_url {
            None => Err(Problem::not_configured(
                Stage::Storage,
                "STORAGE_ACCOUNT_URL",
                "Blob Storage",
            )),
            Some(url) => blobs::BlobStore::new(
                url,
                credential.clone(),
                options.clone(),
                settings.storage_api_version.clone(),
            )
            .map_err(|e| invalid(Stage::Storage, "STORAGE_ACCOUNT_URL", e)),
        };
        let app2 = match (&settings.app2_base_url, &settings.app2_resource) {
            (None, _) => Err(Problem::not_configured(
                Stage::App2,
                "APP2_BASE_URL",
                "app2",
            )),
            (_, None) => Err(Problem::not_configured(
                Stage::App2,
                "APP2_RESOURCE",
                "app2",
            )),
            (Some(base), Some(resource)) => Ok(app2::App2Client::new(
                base.clone(),
                resource.clone(),
                http,
                identity.clone(),
            )),
        };
        Self {
            secrets,
            blobs,
            app2,
            settings: settings.clone(),
            identity,
            http: http_for_self,
        }
    }

    /// A Key Vault client acting as `identity` (for `?check=` with a selector).
    pub fn secrets_as(
        &self,
        identity: Option<UserAssignedId>,
    ) -> Result<keyvault::SecretsService, Problem> {
        let url =
            self.settings.keyvault_url.as_deref().ok_or_else(|| {
                Problem::not_configured(Stage::Keyvault, "KEYVAULT_URL", "Key Vault")
            })?;
        keyvault::SecretsService::new(
            url,
            self.identity.as_identity(identity),
            client_options(&self.settings, self.http.clone()),
            self.settings.verify_challenge_resource,
            std::time::Duration::ZERO,
        )
        .map_err(|e| Problem::not_configured(Stage::Keyvault, "KEYVAULT_URL", &e.to_string()))
    }

    /// A blob client acting as `identity`.
    pub fn blobs_as(&self, identity: Option<UserAssignedId>) -> Result<blobs::BlobStore, Problem> {
        let url = self
            .settings
            .storage_account_url
            .as_deref()
            .ok_or_else(|| {
                Problem::not_configured(Stage::Storage, "STORAGE_ACCOUNT_URL", "Blob Storage")
            })?;
        blobs::BlobStore::new(
            url,
            self.identity.as_identity(identity),
            client_options(&self.settings, self.http.clone()),
            self.settings.storage_api_version.clone(),
        )
        .map_err(|e| Problem::not_configured(Stage::Storage, "STORAGE_ACCOUNT_URL", &e.to_string()))
    }
}

/// Explicit retries and timeouts: the SDK's defaults take ~82 s to give up on
/// a dead endpoint, far too long inside a Functions invocation.
fn client_options(settings: &AzureSettings, http: reqwest::Client) -> ClientOptions {
    ClientOptions {
        transport: Some(Transport::new(Arc::new(http))),
        retry: RetryOptions::exponential(ExponentialRetryOptions {
            initial_delay: azure_core::time::Duration::milliseconds(200),
            max_retries: settings.upstream_max_retries,
            max_total_elapsed: azure_core::time::Duration::seconds(20),
            max_delay: azure_core::time::Duration::seconds(4),
        }),
        ..Default::default()
    }
}
