//! [`IdentityProvider`]: managed identity, or developer tools, chosen once.

use super::facts::{FactsCache, TokenFacts};
use app_service_identity::{
    Environment, IdentityError, IdentityTransport, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, ManagedIdentitySource, RetryOptions, SelectorKind,
    SourceKind, UserAssignedId, error_chain, scope_to_resource,
};
use async_trait::async_trait;
use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use std::{fmt, sync::Arc};
use tracing::Instrument;

/// Where the handler's tokens come from: a managed-identity protocol, the
/// developer's own sign-in, or nothing (settings that cannot work here).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialSource {
    AppService,
    AppServiceLegacy,
    Imds,
    Developer,
    Unconfigured,
}

impl CredentialSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AppService => "app_service",
            Self::AppServiceLegacy => "app_service_legacy",
            Self::Imds => "imds",
            Self::Developer => "developer",
            Self::Unconfigured => "unconfigured",
        }
    }
}

impl From<SourceKind> for CredentialSource {
    fn from(kind: SourceKind) -> Self {
        match kind {
            SourceKind::AppService => Self::AppService,
            SourceKind::AppServiceLegacy => Self::AppServiceLegacy,
            SourceKind::Imds => Self::Imds,
            // A protocol newer than this handler: shown as what it is not yet named.
            _ => Self::Unconfigured,
        }
    }
}

/// Which source and selector a token came from, as shown to users.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct IdentityDescription {
    pub source: CredentialSource,
    pub selector: SelectorKind,
    /// The selector's value (an id, never a secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl IdentityDescription {
    pub fn new(source: CredentialSource, identity: Option<&UserAssignedId>) -> Self {
        Self {
            source,
            selector: SelectorKind::of(identity),
            id: identity.map(|i| i.value().to_owned()),
        }
    }
}

/// `app-service:system-assigned`, `app-service:client_id=<guid>`: for spans.
impl fmt::Display for IdentityDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.id {
            Some(id) => write!(
                f,
                "{}:{}={id}",
                self.source.as_str(),
                self.selector.as_str()
            ),
            None => write!(f, "{}:{}", self.source.as_str(), self.selector.as_str()),
        }
    }
}

impl From<app_service_identity::IdentityDescription> for IdentityDescription {
    fn from(d: app_service_identity::IdentityDescription) -> Self {
        Self {
            source: d.source.into(),
            selector: d.selector,
            id: d.id,
        }
    }
}

/// A token plus where it came from (never shown: only its claims are).
#[derive(Debug, Clone)]
pub struct ProvidedToken {
    /// Shared with the token cache (no copy of the secret per request).
    pub token: Arc<AccessToken>,
    pub cached: bool,
    pub identity: IdentityDescription,
    /// Its claims, decoded once for this token (see [`FactsCache`]).
    pub facts: Arc<TokenFacts>,
}

/// A token as a chain hands it out, before its facts are looked up.
struct Obtained {
    token: Arc<AccessToken>,
    cached: bool,
    identity: IdentityDescription,
}

/// Which source to use (`MANAGED_IDENTITY_SOURCE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SourceMode {
    /// Managed identity when the platform provides one (`IDENTITY_*`, `MSI_*`),
    /// else developer tools. Never probes IMDS.
    #[default]
    Auto,
    /// One managed-identity protocol, whatever the environment says.
    Managed(ManagedIdentitySource),
    /// The Azure CLI, then azd: a developer's own sign-in.
    Developer,
}

impl std::str::FromStr for SourceMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(Self::Auto),
            "developer" => Ok(Self::Developer),
            other => other
                .parse::<ManagedIdentitySource>()
                .map(Self::Managed)
                .map_err(|_| {
                    format!(
                        "unknown identity source {other:?}; expected auto, app_service, app_service_legacy, imds or developer"
                    )
                }),
        }
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
    /// `AZURE_POD_IDENTITY_AUTHORITY_HOST`, for IMDS.
    pub imds_authority: Option<String>,
    /// The identity used when a caller names none, and the setting that chose it.
    pub user_assigned: Option<(UserAssignedId, &'static str)>,
    /// Overrides the source's default retry schedule.
    pub retry: Option<RetryOptions>,
}

impl fmt::Debug for IdentityConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityConfig")
            .field("mode", &self.mode)
            .field("identity_endpoint", &self.identity_endpoint)
            .field("msi_endpoint", &self.msi_endpoint)
            .field("user_assigned", &self.user_assigned)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl IdentityConfig {
    /// The variables the managed-identity crate reads, from settings rather
    /// than the process (tests and `handler.toml` set them too).
    fn environment(&self) -> Environment {
        let pairs = [
            ("IDENTITY_ENDPOINT", self.identity_endpoint.clone()),
            (
                "IDENTITY_HEADER",
                self.identity_header.as_ref().map(|s| s.secret().to_owned()),
            ),
            ("MSI_ENDPOINT", self.msi_endpoint.clone()),
            (
                "MSI_SECRET",
                self.msi_secret.as_ref().map(|s| s.secret().to_owned()),
            ),
            (
                "AZURE_POD_IDENTITY_AUTHORITY_HOST",
                self.imds_authority.clone(),
            ),
        ];
        Environment::from_vars(pairs.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))))
    }

    fn platform_has_managed_identity(&self) -> bool {
        [&self.identity_endpoint, &self.msi_endpoint]
            .iter()
            .any(|v| v.as_deref().is_some_and(|v| !v.trim().is_empty()))
            || self.identity_header.is_some()
            || self.msi_secret.is_some()
    }
}

/// Why no token could be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// Managed identity failed (the crate's error, with its kind and causes).
    #[error(transparent)]
    Managed(#[from] IdentityError),
    /// The request names a user-assigned identity, but developer tools are in use.
    #[error("{0}")]
    SelectorUnsupported(String),
    /// The developer credential (Azure CLI / azd) failed.
    #[error("developer credential failed: {0}")]
    Developer(String),
    /// The settings cannot work here; found at startup and logged once then.
    #[error("{reason}")]
    NotConfigured {
        /// The setting to fix.
        setting: &'static str,
        reason: String,
    },
}

impl TokenError {
    /// A short, stable name for spans' `error.type`.
    pub fn kind_name(&self) -> String {
        match self {
            TokenError::Managed(e) => format!("{:?}", e.kind()),
            TokenError::SelectorUnsupported(_) => "SelectorUnsupported".into(),
            TokenError::Developer(_) => "Developer".into(),
            TokenError::NotConfigured { .. } => "NotConfigured".into(),
        }
    }

    /// The identity endpoint's HTTP status, when it answered.
    pub fn upstream_status(&self) -> Option<u16> {
        match self {
            TokenError::Managed(e) => e.upstream_status(),
            _ => None,
        }
    }
}

enum Chain {
    Managed(Arc<ManagedIdentityCredential>),
    Developer(Arc<dyn TokenCredential>),
    Unavailable(TokenError),
}

/// The handler's credential. Cheap to share behind an `Arc`.
pub struct IdentityProvider {
    chain: Chain,
    facts: FactsCache,
    /// The settings that decided the source, by name (never their values).
    settings_found: Vec<&'static str>,
}

impl fmt::Debug for IdentityProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let chain = match &self.chain {
            Chain::Managed(c) => format!("{c:?}"),
            Chain::Developer(_) => "developer".into(),
            Chain::Unavailable(e) => format!("unavailable: {e}"),
        };
        f.debug_struct("IdentityProvider")
            .field("chain", &chain)
            .finish()
    }
}

impl IdentityProvider {
    /// Chooses the credential from `config`. Never fails and never touches the
    /// network: settings that cannot work are kept as the error every token
    /// request answers (a 503 naming the setting), and logged by [`log_source`].
    ///
    /// [`log_source`]: IdentityProvider::log_source
    pub fn new(config: IdentityConfig, transport: Arc<dyn IdentityTransport>) -> Self {
        let managed = |source| {
            ManagedIdentityCredential::new({
                let mut o = ManagedIdentityCredentialOptions::default();
                o.user_assigned_id = config.user_assigned.as_ref().map(|(id, _)| id.clone());
                o.source = source;
                o.retry = config.retry.clone();
                o.transport = Some(transport.clone());
                o.environment = config.environment();
                // The handler builds one credential per process, so its own
                // cache is the process's; black-box tests start many handlers
                // in one process against reused mock ports, and stay apart.
                o.cache = app_service_identity::CacheScope::Credential;
                o
            })
            .map(Chain::Managed)
            .unwrap_or_else(|e| {
                Chain::Unavailable(match &e {
                    // The configured selector cannot work with this protocol.
                    IdentityError::UnsupportedSelector { .. } => TokenError::NotConfigured {
                        setting: config
                            .user_assigned
                            .as_ref()
                            .map_or("AZURE_CLIENT_ID", |(_, s)| *s),
                        reason: e.to_string(),
                    },
                    // A missing or invalid platform setting, named in the error.
                    _ => TokenError::Managed(e),
                })
            })
        };
        let chain = match config.mode {
            SourceMode::Managed(source) => managed(source),
            SourceMode::Auto if config.platform_has_managed_identity() => {
                managed(ManagedIdentitySource::Auto)
            }
            SourceMode::Auto | SourceMode::Developer => developer(&config),
        };
        let settings_found = [
            ("MANAGED_IDENTITY_SOURCE", config.mode != SourceMode::Auto),
            ("IDENTITY_ENDPOINT", config.identity_endpoint.is_some()),
            ("IDENTITY_HEADER", config.identity_header.is_some()),
            ("MSI_ENDPOINT", config.msi_endpoint.is_some()),
            ("MSI_SECRET", config.msi_secret.is_some()),
            (
                "AZURE_POD_IDENTITY_AUTHORITY_HOST",
                config.imds_authority.is_some(),
            ),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .chain(config.user_assigned.as_ref().map(|(_, setting)| *setting))
        .collect();
        Self {
            chain,
            facts: FactsCache::default(),
            settings_found,
        }
    }

    /// The identity settings present (names only: values may be secrets).
    pub fn settings_found(&self) -> &[&'static str] {
        &self.settings_found
    }

    /// Where managed-identity tokens come from (no query, no secret), if from an endpoint.
    pub fn endpoint(&self) -> Option<String> {
        match &self.chain {
            Chain::Managed(c) => Some(c.endpoint().as_str().to_owned()),
            _ => None,
        }
    }

    /// Why no token can be had with these settings, if that is so.
    pub fn unavailable(&self) -> Option<&TokenError> {
        match &self.chain {
            Chain::Unavailable(e) => Some(e),
            _ => None,
        }
    }

    /// Logs the choice once; call at startup. Never logs a secret.
    pub fn log_source(&self) {
        match &self.chain {
            Chain::Managed(c) => {
                let d = c.describe(None);
                tracing::info!(
                    source = d.source.as_str(),
                    endpoint = c.endpoint().as_str(),
                    selector = d.selector.as_str(),
                    id = d.id.as_deref().unwrap_or_default(),
                    "managed identity source selected"
                )
            }
            Chain::Developer(_) => tracing::info!(
                source = "developer",
                "no managed identity in the environment (IDENTITY_ENDPOINT/MSI_ENDPOINT unset): using developer credentials (Azure CLI, then Azure Developer CLI)"
            ),
            Chain::Unavailable(e) => {
                tracing::error!(error = %e, "managed identity cannot work with these settings; every token request will answer 503")
            }
        }
    }

    /// Which source the tokens come from.
    pub fn source(&self) -> CredentialSource {
        match &self.chain {
            Chain::Managed(c) => c.source_kind().into(),
            Chain::Developer(_) => CredentialSource::Developer,
            Chain::Unavailable(_) => CredentialSource::Unconfigured,
        }
    }

    /// Which source and selector a request with `identity` (or the default) uses.
    pub fn describe(&self, identity: Option<&UserAssignedId>) -> IdentityDescription {
        match &self.chain {
            Chain::Managed(c) => c.describe(identity).into(),
            _ => IdentityDescription::new(self.source(), identity),
        }
    }

    /// The user-assigned identity used when a caller names none.
    pub fn default_identity(&self) -> Option<&UserAssignedId> {
        match &self.chain {
            Chain::Managed(c) => c.default_identity(),
            _ => None,
        }
    }

    /// A token for `resource` (a v1 resource, not a scope), for `identity` or
    /// the configured default.
    pub async fn token(
        &self,
        resource: &str,
        identity: Option<&UserAssignedId>,
    ) -> Result<ProvidedToken, TokenError> {
        let span = crate::telemetry::token_span(resource);
        let result = self
            .token_untraced(resource, identity)
            .instrument(span.clone())
            .await
            .map(|obtained| self.provided(resource, obtained, &span));
        if let Err(e) = &result {
            crate::telemetry::record_failure(
                &span,
                &crate::telemetry::Failed {
                    problem_type: &e.kind_name(),
                    detail: &e.to_string(),
                    fix: None,
                    stage: Some("identity"),
                    upstream_status: e.upstream_status(),
                },
            );
        }
        result
    }

    /// What [`token`](Self::token) would answer at once from a managed
    /// identity's cache (a token that needs no refresh yet), without a
    /// future to wait on; `None` means "await `token`". The same span is
    /// recorded either way.
    pub fn cached(
        &self,
        resource: &str,
        identity: Option<&UserAssignedId>,
    ) -> Option<ProvidedToken> {
        let Chain::Managed(credential) = &self.chain else {
            return None;
        };
        let cached = credential.cached_token(resource, identity)?;
        let span = crate::telemetry::token_span(resource);
        let obtained = Obtained {
            token: cached.token,
            cached: cached.cached,
            identity: cached.identity.into(),
        };
        Some(self.provided(resource, obtained, &span))
    }

    /// The token with its facts, recorded on its span.
    fn provided(&self, resource: &str, obtained: Obtained, span: &tracing::Span) -> ProvidedToken {
        let facts = self
            .facts
            .facts(resource, &obtained.identity, &obtained.token);
        if !span.is_disabled() {
            crate::telemetry::record_token(
                span,
                resource,
                obtained.cached,
                &obtained.identity.to_string(),
                &facts.authorization_json,
            );
        }
        ProvidedToken {
            token: obtained.token,
            cached: obtained.cached,
            identity: obtained.identity,
            facts,
        }
    }

    async fn token_untraced(
        &self,
        resource: &str,
        identity: Option<&UserAssignedId>,
    ) -> Result<Obtained, TokenError> {
        match &self.chain {
            Chain::Managed(c) => {
                let provided = c.token(resource, identity).await?;
                Ok(Obtained {
                    token: provided.token,
                    cached: provided.cached,
                    identity: provided.identity.into(),
                })
            }
            Chain::Developer(credential) => {
                if let Some(id) = identity {
                    return Err(TokenError::SelectorUnsupported(format!(
                        "{} selects a user-assigned managed identity, but this machine has no managed identity: developer tools sign in as you",
                        id.kind()
                    )));
                }
                let scope = format!("{}/.default", resource.trim_end_matches('/'));
                let token = credential
                    .get_token(&[&scope], None)
                    .await
                    .map_err(|e| TokenError::Developer(error_chain(&e)))?;
                Ok(Obtained {
                    token: Arc::new(token),
                    cached: false,
                    identity: IdentityDescription::new(CredentialSource::Developer, None),
                })
            }
            Chain::Unavailable(e) => Err(e.clone()),
        }
    }

    /// A `TokenCredential` that always asks for `identity` (or the default).
    pub fn as_identity(
        self: &Arc<Self>,
        identity: Option<UserAssignedId>,
    ) -> Arc<dyn TokenCredential> {
        Arc::new(Selected {
            provider: self.clone(),
            identity,
        })
    }
}

/// The developer fallback, unless a user-assigned selector is configured:
/// developer tools cannot act as a managed identity, so that setting is an
/// error found now, at startup, not a 400 blamed on every caller later.
fn developer(config: &IdentityConfig) -> Chain {
    if let Some((_, setting)) = &config.user_assigned {
        return Chain::Unavailable(TokenError::NotConfigured {
            setting,
            reason: format!(
                "{setting} selects a user-assigned managed identity, but there is no managed identity here (IDENTITY_ENDPOINT and MSI_ENDPOINT are unset) and developer tools sign in as you: unset {setting} locally, or run devstack"
            ),
        });
    }
    match azure_identity::DeveloperToolsCredential::new(None) {
        Ok(c) => Chain::Developer(c),
        Err(e) => Chain::Unavailable(TokenError::NotConfigured {
            setting: "MANAGED_IDENTITY_SOURCE",
            reason: format!("developer credentials are unavailable: {e}"),
        }),
    }
}

impl From<TokenError> for azure_core::Error {
    fn from(err: TokenError) -> Self {
        let message = err.to_string();
        azure_core::Error::with_error(azure_core::error::ErrorKind::Credential, err, message)
    }
}

/// The provider acting as one identity, for SDK clients.
#[derive(Debug)]
struct Selected {
    provider: Arc<IdentityProvider>,
    identity: Option<UserAssignedId>,
}

impl IdentityProvider {
    /// `TokenCredential::get_token` for `identity` (or the default).
    async fn token_for_scopes(
        &self,
        scopes: &[&str],
        identity: Option<&UserAssignedId>,
    ) -> azure_core::Result<AccessToken> {
        let resource = scope_to_resource(scopes).map_err(TokenError::from)?;
        Ok(Arc::unwrap_or_clone(
            self.token(resource, identity).await?.token,
        ))
    }
}

#[async_trait]
impl TokenCredential for Selected {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        self.provider
            .token_for_scopes(scopes, self.identity.as_ref())
            .await
    }
}

#[async_trait]
impl TokenCredential for IdentityProvider {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        self.token_for_scopes(scopes, None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUID: &str = "5e29463d-71da-4fe0-8e69-999b57db23b0";

    #[test]
    fn source_modes_parse() {
        assert_eq!("".parse::<SourceMode>().unwrap(), SourceMode::Auto);
        assert_eq!(
            "App-Service".parse::<SourceMode>().unwrap(),
            SourceMode::Managed(ManagedIdentitySource::AppService)
        );
        assert_eq!(
            "developer".parse::<SourceMode>().unwrap(),
            SourceMode::Developer
        );
        assert!("vm".parse::<SourceMode>().is_err());
    }

    #[tokio::test]
    async fn a_selector_on_a_developer_machine_is_a_startup_error_naming_the_setting() {
        let config = IdentityConfig {
            user_assigned: Some((UserAssignedId::ClientId(GUID.into()), "AZURE_CLIENT_ID")),
            ..Default::default()
        };
        let provider = IdentityProvider::new(config, Arc::new(crate::http_client::build()));
        match provider.token("https://vault.azure.net", None).await {
            Err(TokenError::NotConfigured { setting, reason }) => {
                assert_eq!(setting, "AZURE_CLIENT_ID");
                assert!(reason.contains("AZURE_CLIENT_ID"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
}
