//! [`ManagedIdentityCredential`]: picks a source once, then serves cached
//! tokens, fetching with bounded retries when needed.

use crate::error::IdentityError;
use crate::response::{parse_error, parse_token};
use crate::retry::{RetryOptions, is_retriable, parse_retry_after};
use crate::single_flight::{Failed, Fresh, Miss, Served};
use crate::source::{IMDS_TOKEN_URL, IdentitySource, SourceKind};
use crate::token_cache::{self, EndpointKey, KeyParts, KeyRef, TokenCache};
use crate::transport::{EndpointRequest, IdentityTransport};
use crate::user_assigned::{SelectorKind, UserAssignedId};
use async_trait::async_trait;
use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};
use std::{fmt, sync::Arc};
use time::OffsetDateTime;
use tokio::time::Instant;
use url::Url;

/// Microsoft's guidance for IMDS: keep retrying a 410 for at least 70 s.
pub const IMDS_GONE_RETRY: Duration = Duration::from_secs(70);

/// How long a failed token request is remembered by default.
pub const DEFAULT_FAILURE_MEMORY: Duration = Duration::from_secs(5);

/// Which protocol to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ManagedIdentitySource {
    /// `IDENTITY_ENDPOINT` + `IDENTITY_HEADER` (2019-08-01), else `MSI_ENDPOINT`
    /// + `MSI_SECRET` (2017-09-01). Never probes IMDS: probing stalls local runs.
    #[default]
    Auto,
    /// App Service, Functions, Container Apps: api-version 2019-08-01.
    AppService,
    /// App Service's legacy protocol: api-version 2017-09-01.
    AppServiceLegacy,
    /// The instance metadata service (VMs, scale sets, AKS nodes).
    Imds,
}

impl std::str::FromStr for ManagedIdentitySource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(
            match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
                "" | "auto" => Self::Auto,
                "app_service" => Self::AppService,
                "app_service_legacy" | "app_service_2017" => Self::AppServiceLegacy,
                "imds" => Self::Imds,
                other => {
                    return Err(format!(
                        "unknown managed identity source {other:?}; expected auto, app_service, app_service_legacy or imds"
                    ));
                }
            },
        )
    }
}

/// Which token cache a credential uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheScope {
    /// One cache for the whole process: credentials with equivalent options
    /// (same endpoint, identity and resource) share tokens and in-flight requests.
    #[default]
    Process,
    /// A cache of this credential's own (tests and benchmarks).
    Credential,
}

/// The environment variables the credential reads, and the wall clock: the
/// process's by default, a fixed set in tests.
#[derive(Clone, Default)]
pub struct Environment {
    vars: Option<Arc<HashMap<String, String>>>,
}

impl Environment {
    /// The process environment.
    pub fn process() -> Self {
        Self::default()
    }

    /// A fixed set of variables, nothing else.
    pub fn from_vars<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            vars: Some(Arc::new(
                vars.into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            )),
        }
    }

    /// A variable's value; empty counts as unset, as an app setting cleared in the portal.
    pub fn var(&self, name: &str) -> Option<String> {
        match &self.vars {
            Some(vars) => vars.get(name).cloned(),
            None => std::env::var(name).ok(),
        }
        .filter(|v| !v.trim().is_empty())
    }

    /// The wall clock, for converting `expires_on` into a refresh schedule.
    /// (Schedules themselves run on tokio's clock, which tests pause.)
    pub fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names only: values include IDENTITY_HEADER.
        let names: Vec<&String> = self.vars.iter().flat_map(|v| v.keys()).collect();
        f.debug_struct("Environment")
            .field(
                "vars",
                &if self.vars.is_some() {
                    format!("{names:?}")
                } else {
                    "process".into()
                },
            )
            .finish()
    }
}

/// Options for [`ManagedIdentityCredential::new`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ManagedIdentityCredentialOptions {
    /// The user-assigned identity to use; `None` for the system-assigned one.
    pub user_assigned_id: Option<UserAssignedId>,
    /// Which protocol to use.
    pub source: ManagedIdentitySource,
    /// Overrides the source's retry schedule ([`RetryOptions::app_service`],
    /// [`RetryOptions::imds`]).
    pub retry: Option<RetryOptions>,
    /// How requests are sent; a `reqwest::Client` with timeouts by default.
    pub transport: Option<Arc<dyn IdentityTransport>>,
    /// Where settings come from, and the wall clock.
    pub environment: Environment,
    /// Which token cache to use.
    pub cache: CacheScope,
    /// After a failed request, fail fast with the same error for this long
    /// (or the endpoint's `Retry-After`, if longer) without calling again.
    /// A still-valid cached token is served meanwhile. Zero turns it off.
    pub failure_memory: Duration,
}

impl Default for ManagedIdentityCredentialOptions {
    fn default() -> Self {
        Self {
            user_assigned_id: None,
            source: ManagedIdentitySource::Auto,
            retry: None,
            transport: None,
            environment: Environment::process(),
            cache: CacheScope::Process,
            failure_memory: DEFAULT_FAILURE_MEMORY,
        }
    }
}

/// Which source and selector a token came from, as shown to users.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct IdentityDescription {
    /// The protocol.
    pub source: SourceKind,
    /// `system_assigned`, or how the user-assigned identity was selected.
    pub selector: SelectorKind,
    /// The selector's value (an id, never a secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl IdentityDescription {
    /// The description of `identity` (or the system identity) on `source`.
    pub fn new(source: SourceKind, identity: Option<&UserAssignedId>) -> Self {
        Self {
            source,
            selector: SelectorKind::of(identity),
            id: identity.map(|i| i.value().to_owned()),
        }
    }
}

/// A token plus where it came from.
#[derive(Debug, Clone)]
pub struct ProvidedToken {
    /// The token (its `Debug` is redacted), shared with the cache: handing
    /// it out copies no secret.
    pub token: Arc<AccessToken>,
    /// True when no request was made for it.
    pub cached: bool,
    /// The source and identity used.
    pub identity: IdentityDescription,
}

/// What a fetch needs, shared with the task that runs it.
struct Fetcher {
    source: IdentitySource,
    retry: RetryOptions,
    transport: Arc<dyn IdentityTransport>,
    environment: Environment,
    failure_memory: Duration,
}

/// A managed-identity credential for App Service (2019-08-01 and 2017-09-01)
/// and IMDS, usable by every official Azure SDK client as a [`TokenCredential`].
pub struct ManagedIdentityCredential {
    fetcher: Arc<Fetcher>,
    default_identity: Option<UserAssignedId>,
    cache: Arc<TokenCache>,
    /// The source and endpoint, part of every cache key.
    endpoint_key: EndpointKey,
}

impl fmt::Debug for ManagedIdentityCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedIdentityCredential")
            .field("source", &self.fetcher.source)
            .field("default_identity", &self.default_identity)
            .finish_non_exhaustive()
    }
}

impl ManagedIdentityCredential {
    /// Chooses the source from `options` and the environment, without any
    /// network call. Fails early when the source cannot honour the options:
    /// a missing or invalid setting, or a user-assigned selector the protocol
    /// cannot express.
    pub fn new(options: ManagedIdentityCredentialOptions) -> Result<Arc<Self>, IdentityError> {
        let source = select_source(options.source, &options.environment)
            .map_err(IdentityError::NotConfigured)?;
        source.check_selector(options.user_assigned_id.as_ref())?;
        let retry = options.retry.unwrap_or_else(|| match &source {
            IdentitySource::Imds { .. } => RetryOptions::imds(),
            _ => RetryOptions::app_service(),
        });
        let transport = options.transport.unwrap_or_else(|| {
            let _ = rustls::crypto::ring::default_provider().install_default();
            Arc::new(
                reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .expect("static reqwest configuration is valid"),
            )
        });
        let endpoint_key =
            EndpointKey::new(format!("{}|{}", source.kind().as_str(), source.endpoint()));
        Ok(Arc::new(Self {
            fetcher: Arc::new(Fetcher {
                source,
                retry,
                transport,
                environment: options.environment,
                failure_memory: options.failure_memory,
            }),
            default_identity: options.user_assigned_id,
            cache: match options.cache {
                CacheScope::Process => token_cache::shared(),
                CacheScope::Credential => token_cache::isolated(),
            },
            endpoint_key,
        }))
    }

    /// The protocol in use.
    pub fn source_kind(&self) -> SourceKind {
        self.fetcher.source.kind()
    }

    /// The endpoint in use (never a secret; the header is not part of it).
    pub fn endpoint(&self) -> &Url {
        self.fetcher.source.endpoint()
    }

    /// The user-assigned identity used when a caller names none.
    pub fn default_identity(&self) -> Option<&UserAssignedId> {
        self.default_identity.as_ref()
    }

    /// Which source and selector a request with `identity` (or the default) uses.
    pub fn describe(&self, identity: Option<&UserAssignedId>) -> IdentityDescription {
        IdentityDescription::new(
            self.source_kind(),
            identity.or(self.default_identity.as_ref()),
        )
    }

    /// A token for `resource` (a v1 resource such as `https://vault.azure.net`,
    /// not a scope), as `identity` or the configured default.
    pub async fn token(
        &self,
        resource: &str,
        identity: Option<&UserAssignedId>,
    ) -> Result<ProvidedToken, IdentityError> {
        let identity = identity.or(self.default_identity.as_ref());
        if resource.trim().is_empty() {
            return Err(IdentityError::InvalidScopes("the resource is empty".into()));
        }
        self.fetcher.source.check_selector(identity)?;
        let key = self.key(&normalized(resource), identity).to_owned_key();
        let fetch = || {
            // Built only when a fetch starts (never on cache hits).
            let fetcher = self.fetcher.clone();
            let request = fetcher.source.request(resource, identity);
            async move {
                let outcome = match request {
                    Ok(request) => fetcher.fetch(&request).await,
                    Err(e) => Err(e),
                };
                match outcome {
                    Ok(token) => {
                        let (refresh_in, usable_for) =
                            token_cache::schedule(&token, fetcher.environment.now());
                        Ok(Fresh {
                            value: Arc::new(token),
                            refresh_in,
                            usable_for,
                        })
                    }
                    Err(error) => {
                        let remember_for =
                            if error.is_caller_error() || fetcher.failure_memory.is_zero() {
                                Duration::ZERO
                            } else {
                                fetcher
                                    .failure_memory
                                    .max(error.retry_after().unwrap_or_default())
                            };
                        Err(Failed {
                            error,
                            remember_for,
                        })
                    }
                }
            }
        };
        let (token, served) = self
            .cache
            .get(&key, fetch)
            .await
            .map_err(|miss| match miss {
                Miss::Failed(error) => error,
                Miss::Remembered { error, retry_in } => IdentityError::RecentFailure {
                    retry_in,
                    last: Box::new(error),
                },
            })?;
        Ok(ProvidedToken {
            token,
            cached: served == Served::Cached,
            identity: IdentityDescription::new(self.source_kind(), identity),
        })
    }

    /// The token [`token`](Self::token) would hand out from the cache without
    /// waiting: `Some` while a cached token needs no refresh, else `None`
    /// (then await `token`). For hot paths that need no future on a hit.
    pub fn cached_token(
        &self,
        resource: &str,
        identity: Option<&UserAssignedId>,
    ) -> Option<ProvidedToken> {
        let identity = identity.or(self.default_identity.as_ref());
        let resource = normalized(resource);
        let token = self
            .cache
            .fresh(&self.key(&resource, identity) as &dyn KeyParts)?;
        Some(ProvidedToken {
            token,
            cached: true,
            identity: IdentityDescription::new(self.source_kind(), identity),
        })
    }

    /// What a token for `resource` (normalized: variants Entra treats as one
    /// resource share one entry, and one token) as `identity` is cached under.
    fn key<'a>(&'a self, resource: &'a str, identity: Option<&'a UserAssignedId>) -> KeyRef<'a> {
        KeyRef {
            endpoint: &self.endpoint_key,
            identity,
            resource,
        }
    }

    /// A `TokenCredential` that always asks for `identity` (or the default).
    pub fn as_identity(
        self: &Arc<Self>,
        identity: Option<UserAssignedId>,
    ) -> Arc<dyn TokenCredential> {
        match identity {
            None => self.clone(),
            Some(id) => Arc::new(SelectedIdentity {
                credential: self.clone(),
                identity: id,
            }),
        }
    }
}

impl Fetcher {
    /// One token request with bounded, jittered retries; see [`RetryOptions`].
    async fn fetch(&self, request: &EndpointRequest) -> Result<AccessToken, IdentityError> {
        let kind = self.source.kind();
        let retry = &self.retry;
        let started = Instant::now();
        let mut deadline = started + retry.deadline;
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
                        return parse_token(kind, &response.body, self.environment.now());
                    }
                    Ok(Ok(response)) => {
                        let details = parse_error(&response);
                        let retry_after = response
                            .retry_after
                            .as_deref()
                            .and_then(|v| parse_retry_after(v, SystemTime::now()));
                        let error = IdentityError::Endpoint {
                            via: kind,
                            status: response.status,
                            error_code: details.error_code,
                            message: details.message,
                            correlation_id: details.correlation_id,
                            attempts: attempt,
                            retry_after,
                        };
                        if !is_retriable(response.status, kind == SourceKind::Imds) {
                            return Err(error);
                        }
                        (error, retry_after)
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
            // IMDS answers 410 while it updates: keep trying for at least 70 s.
            let imds_updating = kind == SourceKind::Imds && error.upstream_status() == Some(410);
            if imds_updating {
                // Room for one more full back-off and attempt past the 70 s mark.
                deadline = deadline.max(
                    started
                        + IMDS_GONE_RETRY
                        + retry.max_delay.mul_f64(1.2)
                        + retry.attempt_timeout,
                );
            }
            let keep_going = imds_updating && started.elapsed() < IMDS_GONE_RETRY;
            if attempt > retry.max_retries && !keep_going {
                return Err(error);
            }
            let delay = retry.backoff(attempt).max(retry_after.unwrap_or_default());
            if Instant::now() + delay >= deadline {
                return Err(IdentityError::DeadlineExceeded {
                    via: kind,
                    deadline: deadline - started,
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
    normalized(resource).into_owned()
}

/// [`normalize_resource`], borrowing a resource that is already normalized.
fn normalized(resource: &str) -> Cow<'_, str> {
    let resource = trim(resource).trim_end_matches('/');
    // Most resources are lower case already: nothing to find or fold.
    // (A fold, not `any`: with no early exit it runs many bytes at a time.)
    if !resource
        .bytes()
        .fold(false, |upper, b| upper | b.is_ascii_uppercase())
    {
        return Cow::Borrowed(resource);
    }
    // Plain byte scans: `str::find` sets up a searcher on each call.
    let bytes = resource.as_bytes();
    let scheme_end = (0..bytes.len().saturating_sub(2))
        .find(|&i| bytes[i] == b':' && bytes[i + 1] == b'/' && bytes[i + 2] == b'/');
    let host_end = scheme_end.map_or(0, |i| {
        let authority = i + 3;
        bytes[authority..]
            .iter()
            .position(|&b| b == b'/')
            .map_or(bytes.len(), |j| authority + j)
    });
    let mut out = resource.to_owned();
    // `host_end` is at an ASCII `/` or the end, so on a char boundary.
    out[..host_end].make_ascii_lowercase();
    Cow::Owned(out)
}

/// `str::trim`, without its per-char decoding when there is nothing to trim:
/// an ASCII graphic byte at each end is not white space.
fn trim(s: &str) -> &str {
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(first), Some(last)) if first.is_ascii_graphic() && last.is_ascii_graphic() => s,
        _ => s.trim(),
    }
}

/// The credential acting as one particular user-assigned identity.
#[derive(Debug)]
struct SelectedIdentity {
    credential: Arc<ManagedIdentityCredential>,
    identity: UserAssignedId,
}

impl ManagedIdentityCredential {
    /// `TokenCredential::get_token` as `identity` (or the default).
    async fn token_for_scopes(
        &self,
        scopes: &[&str],
        identity: Option<&UserAssignedId>,
    ) -> azure_core::Result<AccessToken> {
        let resource = scope_to_resource(scopes)?;
        Ok(Arc::unwrap_or_clone(
            self.token(resource, identity).await?.token,
        ))
    }
}

#[async_trait]
impl TokenCredential for SelectedIdentity {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        self.credential
            .token_for_scopes(scopes, Some(&self.identity))
            .await
    }
}

#[async_trait]
impl TokenCredential for ManagedIdentityCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        self.token_for_scopes(scopes, None).await
    }
}

fn select_source(mode: ManagedIdentitySource, env: &Environment) -> Result<IdentitySource, String> {
    let url = |name: &str| -> Result<Url, String> {
        let value = env.var(name).ok_or_else(|| format!("{name} is not set"))?;
        Url::parse(value.trim()).map_err(|e| format!("{name} is not a valid URL: {e}"))
    };
    let secret = |name: &str| -> Result<Secret, String> {
        env.var(name)
            .map(Secret::from)
            .ok_or_else(|| format!("{name} is not set"))
    };
    let app_service = || -> Result<IdentitySource, String> {
        Ok(IdentitySource::AppService {
            endpoint: url("IDENTITY_ENDPOINT")?,
            header: secret("IDENTITY_HEADER")?,
        })
    };
    let legacy = || -> Result<IdentitySource, String> {
        Ok(IdentitySource::AppServiceLegacy {
            endpoint: url("MSI_ENDPOINT")?,
            secret: secret("MSI_SECRET")?,
        })
    };
    match mode {
        ManagedIdentitySource::AppService => app_service(),
        ManagedIdentitySource::AppServiceLegacy => legacy(),
        ManagedIdentitySource::Imds => Ok(IdentitySource::Imds {
            endpoint: match env.var("AZURE_POD_IDENTITY_AUTHORITY_HOST") {
                Some(host) => Url::parse(&format!(
                    "{}/metadata/identity/oauth2/token",
                    host.trim_end_matches('/')
                ))
                .map_err(|e| {
                    format!("AZURE_POD_IDENTITY_AUTHORITY_HOST is not a valid URL: {e}")
                })?,
                None => Url::parse(IMDS_TOKEN_URL).expect("constant URL"),
            },
        }),
        ManagedIdentitySource::Auto => {
            // The newer protocol wins when both are present, as in every SDK.
            if env.var("IDENTITY_ENDPOINT").is_some() || env.var("IDENTITY_HEADER").is_some() {
                app_service()
            } else if env.var("MSI_ENDPOINT").is_some() || env.var("MSI_SECRET").is_some() {
                legacy()
            } else {
                Err("no managed identity in this environment: IDENTITY_ENDPOINT and MSI_ENDPOINT are not set (enable an identity on the app, or choose a source)".into())
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
            " https://vault.azure.net\t",
            "\u{a0}https://vault.azure.net/\u{3000}",
        ] {
            assert_eq!(normalize_resource(variant), "https://vault.azure.net");
        }
        assert_eq!(normalize_resource("api://AbC/Path/"), "api://abc/Path");
        assert_eq!(normalize_resource("5e29463d-71DA"), "5e29463d-71DA");
        assert_eq!(normalize_resource("api://abc/path//"), "api://abc/path");
    }

    #[test]
    fn sources_parse() {
        assert_eq!(
            "".parse::<ManagedIdentitySource>().unwrap(),
            ManagedIdentitySource::Auto
        );
        assert_eq!(
            "App-Service".parse::<ManagedIdentitySource>().unwrap(),
            ManagedIdentitySource::AppService
        );
        assert!("vm".parse::<ManagedIdentitySource>().is_err());
    }

    fn both() -> Environment {
        Environment::from_vars([
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token"),
            ("IDENTITY_HEADER", "h"),
            ("MSI_ENDPOINT", "http://127.0.0.1:2/msi/token"),
            ("MSI_SECRET", "s"),
        ])
    }

    #[test]
    fn newer_protocol_wins_and_legacy_is_the_fallback() {
        // I6, I7
        let kind = |env| {
            select_source(ManagedIdentitySource::Auto, &env)
                .unwrap()
                .kind()
        };
        assert_eq!(kind(both()), SourceKind::AppService);
        let legacy = Environment::from_vars([
            ("MSI_ENDPOINT", "http://127.0.0.1:2/msi/token"),
            ("MSI_SECRET", "s"),
        ]);
        assert_eq!(kind(legacy), SourceKind::AppServiceLegacy);
    }

    #[test]
    fn half_configured_sources_name_the_missing_setting() {
        let half = Environment::from_vars([("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token")]);
        assert_eq!(
            select_source(ManagedIdentitySource::Auto, &half).unwrap_err(),
            "IDENTITY_HEADER is not set"
        );
        let bad =
            Environment::from_vars([("IDENTITY_ENDPOINT", "not a url"), ("IDENTITY_HEADER", "h")]);
        assert!(
            select_source(ManagedIdentitySource::Auto, &bad)
                .unwrap_err()
                .starts_with("IDENTITY_ENDPOINT is not a valid URL")
        );
        let none = Environment::from_vars::<String, String>([]);
        assert!(
            select_source(ManagedIdentitySource::Auto, &none).is_err(),
            "IMDS is never probed"
        );
    }

    #[test]
    fn imds_only_when_selected() {
        let src = select_source(
            ManagedIdentitySource::Imds,
            &Environment::from_vars::<String, String>([]),
        )
        .unwrap();
        assert_eq!(src.endpoint().as_str(), IMDS_TOKEN_URL);
    }

    #[test]
    fn construction_fails_early() {
        let legacy = Environment::from_vars([
            ("MSI_ENDPOINT", "http://127.0.0.1:2/msi/token"),
            ("MSI_SECRET", "s"),
        ]);
        let err = ManagedIdentityCredential::new(ManagedIdentityCredentialOptions {
            user_assigned_id: Some(UserAssignedId::ObjectId(
                "5e29463d-71da-4fe0-8e69-999b57db23b0".into(),
            )),
            environment: legacy,
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            matches!(err, IdentityError::UnsupportedSelector { .. }),
            "{err}"
        );
        let err = ManagedIdentityCredential::new(ManagedIdentityCredentialOptions {
            environment: Environment::from_vars::<String, String>([]),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::NotConfigured);
    }

    #[test]
    fn debug_never_shows_the_header() {
        let c = ManagedIdentityCredential::new(ManagedIdentityCredentialOptions {
            environment: both(),
            ..Default::default()
        })
        .unwrap();
        let text = format!("{c:?} {:?}", both());
        assert!(
            !text.contains("\"h\"") && !text.contains("secret: "),
            "{text}"
        );
    }
}
