//! The Azure section: where the functions' upstreams are, the allow-lists
//! and the limits.

use super::downstream::{self, DownstreamApis, RawDownstreamApi};
use super::{SettingsError, flag, list, named, opt};
use crate::names::{ContainerName, KEY_VAULT_RESOURCE, Resource, STORAGE_RESOURCE, SecretName};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// Where the functions' upstreams are and how to call them. Every URL is
/// optional: a function whose setting is missing answers a problem naming it.
#[derive(Debug, Clone)]
pub struct AzureSettings {
    pub keyvault_url: Option<String>,
    /// Keep `true` in production. `false` (KEYVAULT_SKIP_CHALLENGE_RESOURCE_CHECK)
    /// lets a vault at 127.0.0.1 (devstack) pass the SDK's challenge check.
    pub verify_challenge_resource: bool,
    pub secret_cache_ttl: Duration,
    /// `GRAPH_CACHE_TTL_SECS`: how long the directory's answers are reused
    /// (`whoami`, the 403 diagnosis), default 60 s.
    pub graph_cache_ttl: Duration,
    /// Demo only: return secret values from `/api/secrets`.
    pub expose_secret_values: bool,
    pub storage_account_url: Option<String>,
    /// Pins `x-ms-version` (e.g. for an older emulator); `None` uses the SDK's.
    pub storage_api_version: Option<String>,
    pub max_body_bytes: usize,
    /// `MAX_UPLOAD_BYTES`: the largest blob a PUT may stream to Storage
    /// (default 100 MB, the host's own request limit).
    pub max_upload_bytes: u64,
    pub audit_container: ContainerName,
    /// `BLOB_CONTAINERS`: the only containers `blobs` may read and write.
    pub blob_containers: Vec<ContainerName>,
    /// `TOKEN_ALLOWED_RESOURCES`: the only resources `/api/token` mints for,
    /// normalized as Entra compares them (every named API's is added).
    pub token_allowed_resources: Vec<Resource>,
    /// The APIs called by name: `graph`, `app2` (from APP2_BASE_URL and
    /// APP2_RESOURCE) and any `DOWNSTREAM_APIS__<NAME>__…`.
    pub downstream: DownstreamApis,
    /// The setting to name when app2 is not configured: APP2_BASE_URL, or
    /// APP2_RESOURCE when only the base URL is set.
    pub app2_missing: &'static str,
    /// `LOGIN_AUTHORITY`: where another tenant's tokens are exchanged
    /// (`{authority}/{tenant}/oauth2/v2.0/token`); https only.
    pub login_authority: String,
    pub flow_secret_name: SecretName,
    /// Extra CA certificates (PEM) to trust, e.g. devstack's local CA.
    pub extra_ca_cert: Option<PathBuf>,
    pub upstream_max_retries: u32,
    pub upstream_timeout: Duration,
}

#[derive(Deserialize, Default)]
pub(super) struct RawAzure {
    keyvault_url: Option<String>,
    keyvault_skip_challenge_resource_check: Option<String>,
    secret_cache_ttl_secs: Option<String>,
    graph_cache_ttl_secs: Option<String>,
    expose_secret_values: Option<String>,
    storage_account_url: Option<String>,
    storage_api_version: Option<String>,
    max_body_bytes: Option<String>,
    max_upload_bytes: Option<String>,
    audit_container: Option<String>,
    blob_containers: Option<String>,
    token_allowed_resources: Option<String>,
    app2_base_url: Option<String>,
    app2_resource: Option<String>,
    downstream_apis: Option<HashMap<String, RawDownstreamApi>>,
    login_authority: Option<String>,
    flow_secret_name: Option<String>,
    extra_ca_cert: Option<String>,
    upstream_max_retries: Option<String>,
    upstream_timeout_ms: Option<String>,
}

impl RawAzure {
    pub(super) fn validate(self) -> Result<AzureSettings, SettingsError> {
        let blob_containers = list(self.blob_containers.as_deref(), DEFAULT_BLOB_CONTAINERS)
            .iter()
            .map(|c| named("BLOB_CONTAINERS", c, ContainerName::parse))
            .collect::<Result<Vec<_>, _>>()?;
        let app2_missing = if self.app2_base_url.is_some() {
            "APP2_RESOURCE"
        } else {
            "APP2_BASE_URL"
        };
        let downstream = downstream::validate(
            self.downstream_apis,
            self.app2_base_url.as_deref(),
            self.app2_resource.as_deref(),
        )?;
        let default_resources = [
            Some(KEY_VAULT_RESOURCE),
            Some(STORAGE_RESOURCE),
            self.app2_resource.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(",");
        let mut token_allowed_resources =
            list(self.token_allowed_resources.as_deref(), &default_resources)
                .iter()
                .map(|r| named("TOKEN_ALLOWED_RESOURCES", r, Resource::parse))
                .collect::<Result<Vec<_>, _>>()?;
        // A named API is one the app calls, so its tokens may be inspected.
        for api in downstream.iter() {
            if !token_allowed_resources.contains(&api.resource) {
                token_allowed_resources.push(api.resource.clone());
            }
        }

        let login_authority = self
            .login_authority
            .unwrap_or_else(|| DEFAULT_LOGIN_AUTHORITY.to_owned())
            .trim()
            .trim_end_matches('/')
            .to_owned();
        if url::Url::parse(&login_authority)
            .map(|u| u.scheme() != "https")
            .unwrap_or(true)
        {
            return Err(SettingsError::Invalid {
                name: "LOGIN_AUTHORITY",
                reason: format!(
                    "{login_authority:?} must be an https URL (token exchanges carry credentials)"
                ),
            });
        }
        Ok(AzureSettings {
            login_authority,
            blob_containers,
            token_allowed_resources,
            verify_challenge_resource: !flag(
                "KEYVAULT_SKIP_CHALLENGE_RESOURCE_CHECK",
                &self.keyvault_skip_challenge_resource_check,
            )?,
            secret_cache_ttl: Duration::from_secs(
                opt("SECRET_CACHE_TTL_SECS", &self.secret_cache_ttl_secs)?.unwrap_or(300),
            ),
            graph_cache_ttl: Duration::from_secs(
                opt("GRAPH_CACHE_TTL_SECS", &self.graph_cache_ttl_secs)?.unwrap_or(60),
            ),
            expose_secret_values: flag("EXPOSE_SECRET_VALUES", &self.expose_secret_values)?,
            max_body_bytes: opt("MAX_BODY_BYTES", &self.max_body_bytes)?
                .unwrap_or(10 * 1024 * 1024),
            max_upload_bytes: opt("MAX_UPLOAD_BYTES", &self.max_upload_bytes)?
                .unwrap_or(DEFAULT_MAX_UPLOAD_BYTES),
            audit_container: named(
                "AUDIT_CONTAINER",
                self.audit_container.as_deref().unwrap_or("audit"),
                ContainerName::parse,
            )?,
            flow_secret_name: named(
                "FLOW_SECRET_NAME",
                self.flow_secret_name
                    .as_deref()
                    .unwrap_or("app1-demo-secret"),
                SecretName::parse,
            )?,
            upstream_max_retries: opt("UPSTREAM_MAX_RETRIES", &self.upstream_max_retries)?
                .unwrap_or(2),
            upstream_timeout: Duration::from_millis(
                opt("UPSTREAM_TIMEOUT_MS", &self.upstream_timeout_ms)?.unwrap_or(10_000),
            ),
            keyvault_url: self.keyvault_url,
            storage_account_url: self
                .storage_account_url
                .map(|u| u.trim_end_matches('/').to_owned()),
            storage_api_version: self.storage_api_version,
            downstream,
            app2_missing,
            extra_ca_cert: self.extra_ca_cert.map(PathBuf::from),
        })
    }
}

impl AzureSettings {
    /// app2, when APP2_BASE_URL and APP2_RESOURCE (or its DOWNSTREAM_APIS__APP2__…) are set.
    pub fn app2(&self) -> Option<&downstream::DownstreamApi> {
        self.downstream.get("app2")
    }
}

/// Entra's public-cloud authority.
pub const DEFAULT_LOGIN_AUTHORITY: &str = "https://login.microsoftonline.com";

/// The containers `blobs` may reach when `BLOB_CONTAINERS` is not set.
pub const DEFAULT_BLOB_CONTAINERS: &str = "app1-data";

/// The host's own default request-body limit (`FUNCTIONS_REQUEST_BODY_SIZE_LIMIT`
/// unset): an upload the host accepts is one the handler accepts by default.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 104_857_600;
