//! [`ManagedIdentityProvider`]: picks a source once, then serves cached tokens,
//! fetching with bounded retries when needed.

use super::cache::{Freshness, TokenCache};
use super::error::IdentityError;
use super::response::{parse_error, parse_token};
use super::retry::{RetryOptions, is_retriable, parse_retry_after};
use super::source::{IMDS_TOKEN_URL, IdentitySource, SourceKind};
use super::transport::{EndpointRequest, IdentityTransport};
use super::user_assigned::UserAssignedId;
use async_trait::async_trait;
use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use std::{fmt, sync::Arc, time::SystemTime};
use time::OffsetDateTime;
use tokio::time::Instant;
use url::Url;

/// Which source to use. `Auto` never probes IMDS: probing stalls local runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SourceMode {
    /// `IDENTITY_*` (2019-08-01), else `MSI_*` (2017-09-01), else developer tools.
    #[default]
    Auto,
    AppService,
    AppServiceLegacy,
    Imds,
    Developer,
}

impl std::str::FromStr for SourceMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(
            match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
                "" | "auto" => Self::Auto,
                "app_service" => Self::AppService,
                "app_service_legacy" | "app_service_2017" => Self::AppServiceLegacy,
                "imds" => Self::Imds,
                "developer" => Self::Developer,
                other => {
                    return Err(format!(
                        "unknown identity source {other:?}; expected auto, app_service, app_service_legacy, imds or developer"
                    ));
                }
            },
        )
    }
}

/// Everything the provider reads from settings. Built by `configuration`.
#[derive(Clone, Default)]
pub struct IdentityConfig {
    pub mode: SourceMode,
    pub identity_endpoint: Option<String>,
    pub identity_header: Option<Secret>,
    pub msi_endpoint: Option<String>,
    pub msi_secret: Option<Secret>,
    /// IMDS token URL; `None` means the well-known 169.254.169.254 address.
    pub imds_endpoint: Option<String>,
    /// The identity used when a caller names none.
    pub user_assigned: Option<UserAssignedId>,
    /// Overrides the source's default retry schedule.
    pub retry: Option<RetryOptions>,
}

impl fmt::Debug for IdentityConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityConfig")
            .field("mode", &self.mode)
            .field("identity_endpoint", &self.identity_endpoint)
            .field("msi_endpoint", &self.msi_endpoint)
            .field("imds_endpoint", &self.imds_endpoint)
            .field("user_assigned", &self.user_assigned)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// Which source and selector a token came from, as shown to users.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct IdentityDescription {
    /// `app_service`, `app_service_legacy`, `imds`, `developer`, or `unconfigured`.
    pub source: &'static str,
    /// `system_assigned`, or the user-assigned selector kind.
    pub selector: &'static str,
    /// The selector's value (an id, never a secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl IdentityDescription {
    fn new(source: &'static str, identity: Option<&UserAssignedId>) -> Self {
        Self {
            source,
            selector: identity.map_or("system_assigned", UserAssignedId::kind),
            id: identity.map(|i| i.value().to_owned()),
        }
    }
}

/// A token plus where it came from.
#[derive(Debug, Clone)]
pub struct ProvidedToken {
    pub token: AccessToken,
    pub cached: bool,
    pub identity: IdentityDescription,
}

type CacheKey = (String, Option<UserAssignedId>);

/// The token provider. Cheap to share behind an `Arc`; see the module docs.
pub struct ManagedIdentityProvider {
    source: Result<IdentitySource, String>,
    default_identity: Option<UserAssignedId>,
    retry: RetryOptions,
    transport: Arc<dyn IdentityTransport>,
    cache: TokenCache<CacheKey>,
}

impl fmt::Debug for ManagedIdentityProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedIdentityProvider")
            .field("source", &self.source)
            .field("default_identity", &self.default_identity)
            .finish_non_exhaustive()
    }
}

impl ManagedIdentityProvider {
    /// Chooses the source from `config`. Never fails and never touches the
    /// network: a source that lacks a setting reports it on every token request.
    pub fn new(config: IdentityConfig, transport: Arc<dyn IdentityTransport>) -> Self {
        let source = select_source(&config);
        let retry = config.retry.clone().unwrap_or_else(|| match &source {
            Ok(IdentitySource::Imds { .. }) => RetryOptions::imds(),
            _ => RetryOptions::app_service(),
        });
        Self {
            source,
            default_identity: config.user_assigned,
            retry,
            transport,
            cache: TokenCache::default(),
        }
    }

    /// Uses an explicit source, e.g. a test double or another `TokenCredential`.
    pub fn with_source(
        source: IdentitySource,
        default_identity: Option<UserAssignedId>,
        retry: RetryOptions,
        transport: Arc<dyn IdentityTransport>,
    ) -> Self {
        Self {
            source: Ok(source),
            default_identity,
            retry,
            transport,
            cache: TokenCache::default(),
        }
    }

    /// Logs the choice once; call at startup. Never logs a secret.
    pub fn log_source(&self) {
        let d = self.describe(None);
        match &self.source {
            Ok(IdentitySource::Developer(_)) => tracing::info!(
                source = d.source,
                "no managed identity in the environment (IDENTITY_ENDPOINT/MSI_ENDPOINT unset): using developer credentials (Azure CLI, then Azure Developer CLI)"
            ),
            Ok(src) => tracing::info!(
                source = d.source,
                endpoint = src.endpoint().map(Url::as_str).unwrap_or_default(),
                selector = d.selector,
                id = d.id.as_deref().unwrap_or_default(),
                "managed identity source selected"
            ),
            Err(reason) => {
                tracing::warn!(%reason, "managed identity is not configured; token requests will fail")
            }
        }
    }

    /// Which source and selector a request with `identity` (or the default) uses.
    pub fn describe(&self, identity: Option<&UserAssignedId>) -> IdentityDescription {
        let identity = identity.or(self.default_identity.as_ref());
        let source = self
            .source
            .as_ref()
            .map_or("unconfigured", |s| s.kind().as_str());
        IdentityDescription::new(source, identity)
    }

    /// The user-assigned identity used when a caller names none.
    pub fn default_identity(&self) -> Option<&UserAssignedId> {
        self.default_identity.as_ref()
    }

    /// The source kind, when configured.
    pub fn source_kind(&self) -> Option<SourceKind> {
        self.source.as_ref().ok().map(IdentitySource::kind)
    }

    /// A token for `resource` (a v1 resource, not a scope), for `identity` or the
    /// configured default.
    pub async fn token(
        &self,
        resource: &str,
        identity: Option<&UserAssignedId>,
    ) -> Result<ProvidedToken, IdentityError> {
        let source = self
            .source
            .as_ref()
            .map_err(|reason| IdentityError::NotConfigured(reason.clone()))?;
        let identity = identity.or(self.default_identity.as_ref());
        if resource.trim().is_empty() {
            return Err(IdentityError::InvalidScopes("the resource is empty".into()));
        }
        // Variants Entra treats as one resource share one entry (and one token).
        let key = (normalize_resource(resource), identity.cloned());
        let (token, freshness) = self
            .cache
            .get_or_fetch(&key, || async {
                // Built only when a fetch is due (not on cache hits). A selector the
                // protocol cannot express fails here, before anything is sent.
                match source.request(resource, identity)? {
                    Some(request) => self.fetch(source.kind(), &request).await,
                    None => fetch_developer(source, resource).await,
                }
            })
            .await?;
        Ok(ProvidedToken {
            token,
            cached: freshness == Freshness::Cached,
            identity: IdentityDescription::new(source.kind().as_str(), identity),
        })
    }

    /// One token request with bounded, jittered retries; see [`RetryOptions`].
    async fn fetch(
        &self,
        kind: SourceKind,
        request: &EndpointRequest,
    ) -> Result<AccessToken, IdentityError> {
        let retry = &self.retry;
        let deadline = Instant::now() + retry.deadline;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let timeout = retry
                .attempt_timeout
                .min(deadline.saturating_duration_since(Instant::now()));
            let (error, retry_after) =
                match tokio::time::timeout(timeout, self.transport.send(request)).await {
                    Ok(Ok(response)) if (200..300).contains(&response.status) => {
                        tracing::debug!(source = kind.as_str(), attempt, "token acquired");
                        return parse_token(kind, &response.body, OffsetDateTime::now_utc());
                    }
                    Ok(Ok(response)) => {
                        let details = parse_error(&response);
                        let error = IdentityError::Endpoint {
                            via: kind,
                            status: response.status,
                            error_code: details.error_code,
                            message: details.message,
                            correlation_id: details.correlation_id,
                            attempts: attempt,
                        };
                        if !is_retriable(response.status, kind == SourceKind::Imds) {
                            return Err(error);
                        }
                        let after = response
                            .retry_after
                            .as_deref()
                            .and_then(|v| parse_retry_after(v, SystemTime::now()));
                        (error, after)
                    }
                    Ok(Err(reason)) => (
                        IdentityError::Transport {
                            via: kind,
                            reason,
                            attempts: attempt,
                        },
                        None,
                    ),
                    Err(_elapsed) => (
                        IdentityError::Transport {
                            via: kind,
                            reason: format!("no response within {timeout:?}"),
                            attempts: attempt,
                        },
                        None,
                    ),
                };
            if attempt > retry.max_retries {
                return Err(error);
            }
            let delay = retry.backoff(attempt).max(retry_after.unwrap_or_default());
            if Instant::now() + delay >= deadline {
                return Err(IdentityError::DeadlineExceeded {
                    via: kind,
                    deadline: retry.deadline,
                    last: Box::new(error),
                });
            }
            tracing::info!(
                source = kind.as_str(),
                attempt,
                status = error.upstream_status(),
                delay_ms = delay.as_millis() as u64,
                error = %error,
                "token request failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }
}

async fn fetch_developer(
    source: &IdentitySource,
    resource: &str,
) -> Result<AccessToken, IdentityError> {
    let IdentitySource::Developer(credential) = source else {
        unreachable!("only the developer source has no HTTP request");
    };
    let scope = format!("{}/.default", resource.trim_end_matches('/'));
    credential
        .get_token(&[&scope], None)
        .await
        .map_err(|e| IdentityError::Developer(error_chain(&e)))
}

/// An error and its causes on one line (SDK errors hide the cause in `Display`).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Maps scopes to the v1 resource the identity endpoints want: exactly one
/// scope, and only a trailing `/.default` is stripped.
pub fn scope_to_resource<'a>(scopes: &[&'a str]) -> Result<&'a str, IdentityError> {
    match scopes {
        [scope] => {
            let resource = scope.strip_suffix("/.default").unwrap_or(scope);
            if resource.trim().is_empty() {
                Err(IdentityError::InvalidScopes("the scope is empty".into()))
            } else {
                Ok(resource)
            }
        }
        _ => Err(IdentityError::InvalidScopes(format!(
            "managed identity takes exactly one scope per token request, got {}",
            scopes.len()
        ))),
    }
}

/// A resource as Entra compares it: the scheme and host in lower case and no
/// trailing `/`, so `HTTPS://Vault.Azure.NET/` and `https://vault.azure.net`
/// are one resource. The path keeps its case (App ID URIs may use it).
pub fn normalize_resource(resource: &str) -> String {
    let resource = resource.trim().trim_end_matches('/');
    match resource.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            format!(
                "{}://{}{path}",
                scheme.to_ascii_lowercase(),
                authority.to_ascii_lowercase()
            )
        }
        None => resource.to_owned(),
    }
}

/// The provider acting as one particular identity (e.g. a user-assigned one
/// named in a request), for SDK clients built for that identity.
#[derive(Debug)]
pub struct SelectedIdentity {
    provider: Arc<ManagedIdentityProvider>,
    identity: Option<UserAssignedId>,
}

impl ManagedIdentityProvider {
    /// A `TokenCredential` that always asks for `identity` (or the default).
    pub fn as_identity(
        self: &Arc<Self>,
        identity: Option<UserAssignedId>,
    ) -> Arc<dyn TokenCredential> {
        match identity {
            None => self.clone(),
            Some(id) => Arc::new(SelectedIdentity {
                provider: self.clone(),
                identity: Some(id),
            }),
        }
    }
}

#[async_trait]
impl TokenCredential for SelectedIdentity {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let resource = scope_to_resource(scopes)?;
        Ok(self
            .provider
            .token(resource, self.identity.as_ref())
            .await?
            .token)
    }
}

#[async_trait]
impl TokenCredential for ManagedIdentityProvider {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let resource = scope_to_resource(scopes)?;
        Ok(self.token(resource, None).await?.token)
    }
}

fn select_source(config: &IdentityConfig) -> Result<IdentitySource, String> {
    let url = |name: &str, value: &Option<String>| -> Result<Url, String> {
        let value = value
            .as_deref()
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| format!("{name} is not set"))?;
        Url::parse(value.trim()).map_err(|e| format!("{name} is not a valid URL: {e}"))
    };
    let secret = |name: &str, value: &Option<Secret>| -> Result<Secret, String> {
        value
            .clone()
            .filter(|v| !v.secret().is_empty())
            .ok_or_else(|| format!("{name} is not set"))
    };
    let present = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
    let app_service = || -> Result<IdentitySource, String> {
        Ok(IdentitySource::AppService {
            endpoint: url("IDENTITY_ENDPOINT", &config.identity_endpoint)?,
            header: secret("IDENTITY_HEADER", &config.identity_header)?,
        })
    };
    let legacy = || -> Result<IdentitySource, String> {
        Ok(IdentitySource::AppServiceLegacy {
            endpoint: url("MSI_ENDPOINT", &config.msi_endpoint)?,
            secret: secret("MSI_SECRET", &config.msi_secret)?,
        })
    };
    let developer = || -> Result<IdentitySource, String> {
        azure_identity::DeveloperToolsCredential::new(None)
            .map(|c| IdentitySource::Developer(c as Arc<dyn TokenCredential>))
            .map_err(|e| format!("developer credentials are unavailable: {e}"))
    };
    match config.mode {
        SourceMode::AppService => app_service(),
        SourceMode::AppServiceLegacy => legacy(),
        SourceMode::Imds => Ok(IdentitySource::Imds {
            endpoint: match &config.imds_endpoint {
                Some(_) => url("IMDS endpoint", &config.imds_endpoint)?,
                None => Url::parse(IMDS_TOKEN_URL).expect("constant URL"),
            },
        }),
        SourceMode::Developer => developer(),
        SourceMode::Auto => {
            // The newer protocol wins when both are present, as in every SDK.
            if present(&config.identity_endpoint) || config.identity_header.is_some() {
                app_service()
            } else if present(&config.msi_endpoint) || config.msi_secret.is_some() {
                legacy()
            } else {
                developer()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_map_to_resources() {
        // I1, I2, I3
        assert_eq!(
            scope_to_resource(&["https://vault.azure.net/.default"]).unwrap(),
            "https://vault.azure.net"
        );
        assert_eq!(
            scope_to_resource(&["https://management.azure.com/"]).unwrap(),
            "https://management.azure.com/"
        );
        assert_eq!(scope_to_resource(&["api://X/.default"]).unwrap(), "api://X");
        assert!(scope_to_resource(&[]).is_err());
        assert!(scope_to_resource(&["a", "b"]).is_err());
        assert!(scope_to_resource(&["/.default"]).is_err());
    }

    #[test]
    fn resources_compare_as_entra_does() {
        for variant in [
            "https://vault.azure.net",
            "HTTPS://VAULT.AZURE.NET/",
            "https://Vault.Azure.Net//",
        ] {
            assert_eq!(normalize_resource(variant), "https://vault.azure.net");
        }
        assert_eq!(normalize_resource("api://AbC/Path/"), "api://abc/Path");
        assert_eq!(normalize_resource("5e29463d-71DA"), "5e29463d-71DA");
    }

    #[test]
    fn source_modes_parse() {
        assert_eq!("".parse::<SourceMode>().unwrap(), SourceMode::Auto);
        assert_eq!(
            "App-Service".parse::<SourceMode>().unwrap(),
            SourceMode::AppService
        );
        assert_eq!("imds".parse::<SourceMode>().unwrap(), SourceMode::Imds);
        assert!("vm".parse::<SourceMode>().is_err());
    }

    fn config() -> IdentityConfig {
        IdentityConfig {
            identity_endpoint: Some("http://127.0.0.1:1/msi/token".into()),
            identity_header: Some(Secret::from("h")),
            msi_endpoint: Some("http://127.0.0.1:2/msi/token".into()),
            msi_secret: Some(Secret::from("s")),
            ..Default::default()
        }
    }

    #[test]
    fn newer_protocol_wins_and_legacy_is_the_fallback() {
        // I6, I7
        assert_eq!(
            select_source(&config()).unwrap().kind(),
            SourceKind::AppService
        );
        let legacy_only = IdentityConfig {
            identity_endpoint: None,
            identity_header: None,
            ..config()
        };
        assert_eq!(
            select_source(&legacy_only).unwrap().kind(),
            SourceKind::AppServiceLegacy
        );
    }

    #[test]
    fn half_configured_sources_name_the_missing_setting() {
        let half = IdentityConfig {
            identity_header: None,
            ..config()
        };
        assert_eq!(
            select_source(&half).unwrap_err(),
            "IDENTITY_HEADER is not set"
        );
        let bad = IdentityConfig {
            identity_endpoint: Some("not a url".into()),
            ..config()
        };
        assert!(
            select_source(&bad)
                .unwrap_err()
                .starts_with("IDENTITY_ENDPOINT is not a valid URL")
        );
    }

    #[test]
    fn imds_only_when_selected() {
        let none = IdentityConfig::default();
        assert_ne!(select_source(&none).map(|s| s.kind()), Ok(SourceKind::Imds));
        let imds = IdentityConfig {
            mode: SourceMode::Imds,
            ..Default::default()
        };
        let src = select_source(&imds).unwrap();
        assert_eq!(src.endpoint().unwrap().as_str(), IMDS_TOKEN_URL);
    }
}
