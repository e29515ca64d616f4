//! Azure clients: Key Vault and Blob Storage through the official SDK crates,
//! and app2 through reqwest, all on the handler's own token provider and one
//! shared HTTP client.

pub mod blobs;
mod claims_recorder;
pub mod downstream;
pub mod error;
pub mod federated;
pub mod graph;
pub mod keyvault;
mod trace_policy;

pub use error::{ClientError, Stage, UpstreamError};

use crate::configuration::AzureSettings;
use crate::identity::{IdentityProvider, UserAssignedId};

use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions, Transport};
use std::sync::Arc;
use std::time::Duration;

/// The clients, each either ready or the problem that explains why not.
pub struct AzureClients {
    pub secrets: Result<keyvault::SecretsService, ClientError>,
    pub blobs: Result<blobs::BlobStore, ClientError>,
    /// app2: the named API `app2`, or why it is not configured.
    pub app2: Result<Arc<downstream::ApiClient>, ClientError>,
    /// Every named API, app2 and graph included.
    pub apis: std::collections::BTreeMap<String, Arc<downstream::ApiClient>>,
    /// The directory, through the named API `graph`.
    pub graph: graph::Graph,
    settings: AzureSettings,
    identity: Arc<IdentityProvider>,
    http: crate::http_client::SharedClient,
}

impl AzureClients {
    /// Builds every client without touching the network.
    pub fn new(
        settings: &AzureSettings,
        identity: Arc<IdentityProvider>,
        http: crate::http_client::SharedClient,
    ) -> Self {
        let credential: Arc<dyn TokenCredential> = identity.clone();
        let apis: std::collections::BTreeMap<_, _> = settings
            .downstream
            .iter()
            .map(|api| {
                let client = downstream::ApiClient::new(
                    api.clone(),
                    settings,
                    http.clone(),
                    identity.clone(),
                );
                (api.name.to_string(), Arc::new(client))
            })
            .collect();
        let app2 = apis
            .get("app2")
            .cloned()
            .ok_or_else(|| not_configured(Stage::api("app2"), settings.app2_missing, "app2"));
        let graph = graph::Graph::new(
            apis.get("graph")
                .cloned()
                .expect("graph is a built-in named API"),
            settings.graph_cache_ttl,
        );
        Self {
            graph,
            secrets: secrets_client(
                settings,
                credential.clone(),
                &http,
                settings.secret_cache_ttl,
            ),
            blobs: blob_client(settings, credential, &http),
            app2,
            apis,
            settings: settings.clone(),
            identity,
            http,
        }
    }

    /// A Key Vault client acting as `identity`, uncached (for `?check=`).
    pub fn secrets_as(
        &self,
        identity: Option<UserAssignedId>,
    ) -> Result<keyvault::SecretsService, ClientError> {
        secrets_client(
            &self.settings,
            self.identity.as_identity(identity),
            &self.http,
            Duration::ZERO,
        )
    }

    /// A blob client acting as `identity` (for `?check=`).
    pub fn blobs_as(
        &self,
        identity: Option<UserAssignedId>,
    ) -> Result<blobs::BlobStore, ClientError> {
        blob_client(
            &self.settings,
            self.identity.as_identity(identity),
            &self.http,
        )
    }
}

/// A setting the client needs is not set.
fn not_configured(stage: Stage, setting: &'static str, what: &str) -> ClientError {
    ClientError::NotConfigured {
        stage,
        setting,
        reason: format!("{setting} is not set, so this function cannot reach {what}"),
    }
}

/// A setting is set but unusable.
fn invalid(stage: Stage, setting: &'static str, e: azure_core::Error) -> ClientError {
    ClientError::NotConfigured {
        stage,
        setting,
        reason: format!("{setting} is invalid: {e}"),
    }
}

fn secrets_client(
    settings: &AzureSettings,
    credential: Arc<dyn TokenCredential>,
    http: &crate::http_client::SharedClient,
    ttl: Duration,
) -> Result<keyvault::SecretsService, ClientError> {
    let url = settings
        .keyvault_url
        .as_deref()
        .ok_or_else(|| not_configured(Stage::Keyvault, "KEYVAULT_URL", "Key Vault"))?;
    keyvault::SecretsService::new(
        url,
        credential,
        client_options(settings, http.clone(), Stage::Keyvault),
        settings.verify_challenge_resource,
        ttl,
    )
    .map_err(|e| invalid(Stage::Keyvault, "KEYVAULT_URL", e))
}

fn blob_client(
    settings: &AzureSettings,
    credential: Arc<dyn TokenCredential>,
    http: &crate::http_client::SharedClient,
) -> Result<blobs::BlobStore, ClientError> {
    let url = settings
        .storage_account_url
        .as_deref()
        .ok_or_else(|| not_configured(Stage::Storage, "STORAGE_ACCOUNT_URL", "Blob Storage"))?;
    blobs::BlobStore::new(
        url,
        credential,
        client_options(settings, http.clone(), Stage::Storage),
        settings.storage_api_version.clone(),
    )
    .map_err(|e| invalid(Stage::Storage, "STORAGE_ACCOUNT_URL", e))
}

/// Explicit retries and timeouts: the SDK's defaults take ~82 s to give up on
/// a dead endpoint, far too long inside a Functions invocation.
fn client_options(
    settings: &AzureSettings,
    http: crate::http_client::SharedClient,
    stage: Stage,
) -> ClientOptions {
    trace_policy::traced(
        ClientOptions {
            transport: Some(Transport::new(Arc::new(http))),
            retry: RetryOptions::exponential(ExponentialRetryOptions {
                initial_delay: azure_core::time::Duration::milliseconds(200),
                max_retries: settings.upstream_max_retries,
                max_total_elapsed: azure_core::time::Duration::seconds(20),
                max_delay: azure_core::time::Duration::seconds(4),
            }),
            ..Default::default()
        },
        stage,
    )
}
