//! Typed settings, layered like Azure delivers them.
//!
//! 1. built-in defaults;
//! 2. an optional TOML file (`HANDLER_CONFIG_FILE`, else `handler.toml` in the
//!    working directory if present);
//! 3. environment variables, which is how Azure app settings and
//!    `local.settings.json` `Values` reach the handler.
//!
//! Keys are the app-setting names in lower case in the file
//! (`azure_client_id = "…"`) and as-is in the environment (`AZURE_CLIENT_ID`).
//! Every setting is listed in the README's configuration table.

use crate::identity::{
    IdentityConfig, ManagedIdentitySource, RetryOptions, SourceMode, UserAssignedId,
};
use crate::names::{
    ContainerName, InvalidName, KEY_VAULT_RESOURCE, Resource, STORAGE_RESOURCE, SecretName,
};
use app_service_identity::SelectorSettingError;
use azure_core::credentials::Secret;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// The app settings a deployment must set for the functions to reach Azure
/// (infra/main.bicep sets each; devstack sets each locally; tests check both).
pub const AZURE_APP_SETTINGS: &[&str] = &[
    "KEYVAULT_URL",
    "STORAGE_ACCOUNT_URL",
    "BLOB_CONTAINERS",
    "AUDIT_CONTAINER",
    "FLOW_SECRET_NAME",
    "APP2_BASE_URL",
    "APP2_RESOURCE",
];

/// Port used when the handler runs outside the Functions host.
pub const DEV_DEFAULT_PORT: u16 = 3000;

/// Everything the handler needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub identity: IdentityConfig,
    pub telemetry: TelemetrySettings,
    pub azure: AzureSettings,
}

/// Where the functions' upstreams are and how to call them. Every URL is
/// optional: a function whose setting is missing answers a problem naming it.
#[derive(Debug, Clone)]
pub struct AzureSettings {
    pub keyvault_url: Option<String>,
    /// Keep `true` in production. `false` (KEYVAULT_SKIP_CHALLENGE_RESOURCE_CHECK)
    /// lets a vault at 127.0.0.1 (devstack) pass the SDK's challenge check.
    pub verify_challenge_resource: bool,
    pub secret_cache_ttl: Duration,
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
    /// normalized as Entra compares them.
    pub token_allowed_resources: Vec<Resource>,
    pub app2_base_url: Option<String>,
    pub app2_resource: Option<String>,
    pub flow_secret_name: SecretName,
    /// Extra CA certificates (PEM) to trust, e.g. devstack's local CA.
    pub extra_ca_cert: Option<PathBuf>,
    pub upstream_max_retries: u32,
    pub upstream_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Always bound on IPv4 loopback: the host dials 127.0.0.1. 0 picks a free port.
    pub port: u16,
}

// Defined beside the subscriber that reads them; parsed here with the rest.
pub use crate::telemetry::{LogFormat, TelemetrySettings};

/// A setting that cannot be used. Startup stops with this message.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("could not read settings: {0}")]
    Load(#[from] config::ConfigError),
    #[error("setting {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
    /// More than one of AZURE_CLIENT_ID, MANAGED_IDENTITY_OBJECT_ID and
    /// MANAGED_IDENTITY_RESOURCE_ID is set.
    #[error(
        "{0} (AZURE_CLIENT_ID, MANAGED_IDENTITY_OBJECT_ID, MANAGED_IDENTITY_RESOURCE_ID: at most one)"
    )]
    ConflictingIdentitySelectors(String),
}

/// The raw shape: one optional string per app setting, in one struct per
/// section. The settings are flat (app settings, environment variables), so
/// each section is flattened in; each validates itself.
#[derive(Deserialize, Default)]
struct Raw {
    #[serde(flatten)]
    server: RawServer,
    #[serde(flatten)]
    telemetry: RawTelemetry,
    #[serde(flatten)]
    identity: RawIdentity,
    #[serde(flatten)]
    azure: RawAzure,
}

#[derive(Deserialize, Default)]
struct RawServer {
    functions_customhandler_port: Option<String>,
    functions_httpworker_port: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawTelemetry {
    log_format: Option<String>,
    rust_log: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawIdentity {
    managed_identity_source: Option<String>,
    identity_endpoint: Option<String>,
    identity_header: Option<String>,
    msi_endpoint: Option<String>,
    msi_secret: Option<String>,
    azure_pod_identity_authority_host: Option<String>,
    azure_client_id: Option<String>,
    managed_identity_object_id: Option<String>,
    managed_identity_resource_id: Option<String>,
    identity_max_retries: Option<String>,
    identity_attempt_timeout_ms: Option<String>,
    identity_deadline_ms: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawAzure {
    keyvault_url: Option<String>,
    keyvault_skip_challenge_resource_check: Option<String>,
    secret_cache_ttl_secs: Option<String>,
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
    flow_secret_name: Option<String>,
    extra_ca_cert: Option<String>,
    upstream_max_retries: Option<String>,
    upstream_timeout_ms: Option<String>,
}

impl Settings {
    /// Loads from the process environment and the optional file.
    pub fn load() -> Result<Self, SettingsError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let file = env
            .get("HANDLER_CONFIG_FILE")
            .map(|p| (PathBuf::from(p), true))
            .unwrap_or_else(|| (PathBuf::from("handler.toml"), false));
        Self::from_sources(Some(file), env)
    }

    /// Loads from an explicit file and environment map (tests use this instead
    /// of mutating the process environment).
    pub fn from_sources(
        file: Option<(PathBuf, bool)>,
        env: HashMap<String, String>,
    ) -> Result<Self, SettingsError> {
        let mut builder = config::Config::builder()
            .set_default("log_format", "json")?
            .set_default("rust_log", "info")?;
        if let Some((path, required)) = file {
            builder = builder.add_source(
                config::File::from(path)
                    .format(config::FileFormat::Toml)
                    .required(required),
            );
        }
        // Empty values count as unset, as an app setting cleared in the portal.
        let env = env
            .into_iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .collect();
        let raw: Raw = builder
            .add_source(config::Environment::default().source(Some(env)))
            .build()?
            .try_deserialize()?;
        raw.validate()
    }
}

impl Raw {
    fn validate(self) -> Result<Settings, SettingsError> {
        Ok(Settings {
            server: self.server.validate()?,
            telemetry: self.telemetry.validate()?,
            identity: self.identity.validate()?,
            azure: self.azure.validate()?,
        })
    }
}

impl RawServer {
    fn validate(self) -> Result<ServerSettings, SettingsError> {
        let port = match self
            .functions_customhandler_port
            .as_deref()
            .map(|p| ("FUNCTIONS_CUSTOMHANDLER_PORT", p))
            .or(self
                .functions_httpworker_port
                .as_deref()
                .map(|p| ("FUNCTIONS_HTTPWORKER_PORT", p)))
        {
            Some((name, value)) => parse(name, value)?,
            None => DEV_DEFAULT_PORT,
        };

        Ok(ServerSettings { port })
    }
}

impl RawTelemetry {
    fn validate(self) -> Result<TelemetrySettings, SettingsError> {
        let format = match self
            .log_format
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("json") | None => LogFormat::Json,
            Some("pretty") | Some("text") => LogFormat::Pretty,
            Some(other) => {
                return Err(SettingsError::Invalid {
                    name: "LOG_FORMAT",
                    reason: format!("expected json or pretty, got {other:?}"),
                });
            }
        };

        Ok(TelemetrySettings {
            format,
            filter: self.rust_log.unwrap_or_else(|| "info".into()),
        })
    }
}

impl RawIdentity {
    fn validate(self) -> Result<IdentityConfig, SettingsError> {
        let selector_settings = (
            ("AZURE_CLIENT_ID", self.azure_client_id.as_deref()),
            (
                "MANAGED_IDENTITY_OBJECT_ID",
                self.managed_identity_object_id.as_deref(),
            ),
            (
                "MANAGED_IDENTITY_RESOURCE_ID",
                self.managed_identity_resource_id.as_deref(),
            ),
        );
        let user_assigned = UserAssignedId::from_settings(
            selector_settings.0,
            selector_settings.1,
            selector_settings.2,
        )
        .map_err(|e| match e {
            SelectorSettingError::Invalid { name, reason } => {
                SettingsError::Invalid { name, reason }
            }
            other => SettingsError::ConflictingIdentitySelectors(other.to_string()),
        })?
        .map(|id| {
            let setting = match id {
                UserAssignedId::ObjectId(_) => "MANAGED_IDENTITY_OBJECT_ID",
                UserAssignedId::ResourceId(_) => "MANAGED_IDENTITY_RESOURCE_ID",
                _ => "AZURE_CLIENT_ID",
            };
            (id, setting)
        });

        let mode = self
            .managed_identity_source
            .as_deref()
            .unwrap_or_default()
            .parse::<SourceMode>()
            .map_err(|reason| SettingsError::Invalid {
                name: "MANAGED_IDENTITY_SOURCE",
                reason,
            })?;

        let retry = if self.identity_max_retries.is_some()
            || self.identity_attempt_timeout_ms.is_some()
            || self.identity_deadline_ms.is_some()
        {
            let base = if mode == SourceMode::Managed(ManagedIdentitySource::Imds) {
                RetryOptions::imds()
            } else {
                RetryOptions::app_service()
            };
            let ms =
                |name, v: &Option<String>, default: Duration| -> Result<Duration, SettingsError> {
                    v.as_deref()
                        .map(|v| parse::<u64>(name, v).map(Duration::from_millis))
                        .unwrap_or(Ok(default))
                };
            Some(RetryOptions {
                max_retries: self
                    .identity_max_retries
                    .as_deref()
                    .map(|v| parse("IDENTITY_MAX_RETRIES", v))
                    .transpose()?
                    .unwrap_or(base.max_retries),
                attempt_timeout: ms(
                    "IDENTITY_ATTEMPT_TIMEOUT_MS",
                    &self.identity_attempt_timeout_ms,
                    base.attempt_timeout,
                )?,
                deadline: ms(
                    "IDENTITY_DEADLINE_MS",
                    &self.identity_deadline_ms,
                    base.deadline,
                )?,
                ..base
            })
        } else {
            None
        };

        Ok(IdentityConfig {
            mode,
            identity_endpoint: self.identity_endpoint,
            identity_header: self.identity_header.map(Secret::from),
            msi_endpoint: self.msi_endpoint,
            msi_secret: self.msi_secret.map(Secret::from),
            imds_authority: self.azure_pod_identity_authority_host,
            user_assigned,
            retry,
        })
    }
}

impl RawAzure {
    fn validate(self) -> Result<AzureSettings, SettingsError> {
        let blob_containers = list(self.blob_containers.as_deref(), DEFAULT_BLOB_CONTAINERS)
            .iter()
            .map(|c| named("BLOB_CONTAINERS", c, ContainerName::parse))
            .collect::<Result<Vec<_>, _>>()?;
        let app_resources = [
            Some(KEY_VAULT_RESOURCE),
            Some(STORAGE_RESOURCE),
            self.app2_resource.as_deref(),
        ];
        let default_resources: Vec<&str> = app_resources.into_iter().flatten().collect();
        let token_allowed_resources = list(
            self.token_allowed_resources.as_deref(),
            &default_resources.join(","),
        )
        .iter()
        .map(|r| named("TOKEN_ALLOWED_RESOURCES", r, Resource::parse))
        .collect::<Result<Vec<_>, _>>()?;

        Ok(AzureSettings {
            blob_containers,
            token_allowed_resources,
            verify_challenge_resource: !flag(
                "KEYVAULT_SKIP_CHALLENGE_RESOURCE_CHECK",
                &self.keyvault_skip_challenge_resource_check,
            )?,
            secret_cache_ttl: Duration::from_secs(
                opt("SECRET_CACHE_TTL_SECS", &self.secret_cache_ttl_secs)?.unwrap_or(300),
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
            app2_base_url: self
                .app2_base_url
                .map(|u| u.trim_end_matches('/').to_owned()),
            app2_resource: self.app2_resource,
            extra_ca_cert: self.extra_ca_cert.map(PathBuf::from),
        })
    }
}

/// The containers `blobs` may reach when `BLOB_CONTAINERS` is not set.
pub const DEFAULT_BLOB_CONTAINERS: &str = "app1-data";

/// The host's own default request-body limit (`FUNCTIONS_REQUEST_BODY_SIZE_LIMIT`
/// unset): an upload the host accepts is one the handler accepts by default.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 104_857_600;

/// A setting's value parsed into its name type, or an error naming the setting.
fn named<T>(
    name: &'static str,
    value: &str,
    parse: fn(&str) -> Result<T, InvalidName>,
) -> Result<T, SettingsError> {
    parse(value).map_err(|e| SettingsError::Invalid {
        name,
        reason: format!("{value:?}: {e}"),
    })
}

/// A comma-separated list setting, trimmed, without empty items.
fn list(value: Option<&str>, default: &str) -> Vec<String> {
    value
        .unwrap_or(default)
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn opt<T: std::str::FromStr>(
    name: &'static str,
    value: &Option<String>,
) -> Result<Option<T>, SettingsError>
where
    T::Err: std::fmt::Display,
{
    value.as_deref().map(|v| parse(name, v)).transpose()
}

fn flag(name: &'static str, value: &Option<String>) -> Result<bool, SettingsError> {
    match value
        .as_deref()
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("false") | Some("0") | Some("no") => Ok(false),
        Some("true") | Some("1") | Some("yes") => Ok(true),
        Some(other) => Err(SettingsError::Invalid {
            name,
            reason: format!("expected true or false, got {other:?}"),
        }),
    }
}

fn parse<T: std::str::FromStr>(name: &'static str, value: &str) -> Result<T, SettingsError>
where
    T::Err: std::fmt::Display,
{
    value
        .trim()
        .parse()
        .map_err(|e: T::Err| SettingsError::Invalid {
            name,
            reason: format!("{value:?}: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUID: &str = "5e29463d-71da-4fe0-8e69-999b57db23b0";

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let env = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_sources(None, env)
    }

    #[test]
    fn port_prefers_customhandler_then_httpworker_then_default() {
        assert_eq!(load(&[]).unwrap().server.port, DEV_DEFAULT_PORT);
        assert_eq!(
            load(&[("FUNCTIONS_HTTPWORKER_PORT", "4001")])
                .unwrap()
                .server
                .port,
            4001
        );
        let both = load(&[
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "4000"),
            ("FUNCTIONS_HTTPWORKER_PORT", "4001"),
        ]);
        assert_eq!(both.unwrap().server.port, 4000);
        assert!(load(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "http")]).is_err());
    }

    #[test]
    fn missing_identity_settings_do_not_fail_startup() {
        let s = load(&[("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token")]).unwrap();
        assert!(s.identity.identity_header.is_none());
    }

    #[test]
    fn more_than_one_selector_is_an_error() {
        let err = load(&[
            ("AZURE_CLIENT_ID", GUID),
            ("MANAGED_IDENTITY_OBJECT_ID", GUID),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("AZURE_CLIENT_ID and MANAGED_IDENTITY_OBJECT_ID"),
            "{err}"
        );
        assert!(err.contains("at most one"), "{err}");
    }

    #[test]
    fn selector_and_source_are_typed() {
        let s = load(&[
            ("AZURE_CLIENT_ID", GUID),
            ("MANAGED_IDENTITY_SOURCE", "imds"),
        ])
        .unwrap();
        assert_eq!(
            s.identity.user_assigned,
            Some((UserAssignedId::ClientId(GUID.into()), "AZURE_CLIENT_ID"))
        );
        assert_eq!(
            s.identity.mode,
            SourceMode::Managed(ManagedIdentitySource::Imds)
        );
        let bad = load(&[("AZURE_CLIENT_ID", "my-app")])
            .unwrap_err()
            .to_string();
        assert!(bad.contains("AZURE_CLIENT_ID"), "{bad}");
    }

    #[test]
    fn retry_overrides() {
        let s = load(&[
            ("IDENTITY_MAX_RETRIES", "1"),
            ("IDENTITY_DEADLINE_MS", "1500"),
        ])
        .unwrap();
        let r = s.identity.retry.unwrap();
        assert_eq!(
            (r.max_retries, r.deadline),
            (1, Duration::from_millis(1500))
        );
    }

    #[test]
    fn file_layer_is_overridden_by_environment() {
        let dir = std::env::temp_dir().join(format!("handler-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("handler.toml");
        std::fs::write(
            &path,
            "log_format = \"pretty\"\nfunctions_customhandler_port = \"5000\"\n",
        )
        .unwrap();
        let env = HashMap::from([(
            "FUNCTIONS_CUSTOMHANDLER_PORT".to_string(),
            "5001".to_string(),
        )]);
        let s = Settings::from_sources(Some((path, true)), env).unwrap();
        assert_eq!(s.telemetry.format, LogFormat::Pretty);
        assert_eq!(s.server.port, 5001);
    }

    #[test]
    fn azure_settings_defaults_and_flags() {
        let s = load(&[]).unwrap().azure;
        assert!(
            s.verify_challenge_resource,
            "challenge-resource verification is on by default"
        );
        assert!(
            !s.expose_secret_values,
            "secret values are hidden by default"
        );
        assert_eq!(s.secret_cache_ttl, Duration::from_secs(300));
        let s = load(&[
            ("KEYVAULT_SKIP_CHALLENGE_RESOURCE_CHECK", "true"),
            ("EXPOSE_SECRET_VALUES", "1"),
            (
                "STORAGE_ACCOUNT_URL",
                "https://127.0.0.1:10000/devstoreaccount1/",
            ),
        ])
        .unwrap()
        .azure;
        assert!(!s.verify_challenge_resource && s.expose_secret_values);
        assert_eq!(
            s.storage_account_url.as_deref(),
            Some("https://127.0.0.1:10000/devstoreaccount1")
        );
        assert!(load(&[("EXPOSE_SECRET_VALUES", "maybe")]).is_err());
    }

    #[test]
    fn allow_lists_default_to_what_the_app_uses() {
        let s = load(&[("APP2_RESOURCE", "api://App2-Id/")]).unwrap().azure;
        let text = |v: &[Resource]| v.iter().map(|r| r.as_str().to_owned()).collect::<Vec<_>>();
        assert_eq!(s.blob_containers[0].as_str(), "app1-data");
        assert_eq!(
            text(&s.token_allowed_resources),
            [
                "https://vault.azure.net",
                "https://storage.azure.com",
                "api://app2-id"
            ]
        );
        let s = load(&[
            ("BLOB_CONTAINERS", " data-a , data-b,"),
            ("TOKEN_ALLOWED_RESOURCES", "HTTPS://Graph.Microsoft.com/"),
        ])
        .unwrap()
        .azure;
        let names: Vec<&str> = s.blob_containers.iter().map(|c| c.as_str()).collect();
        assert_eq!(names, ["data-a", "data-b"]);
        assert_eq!(
            text(&s.token_allowed_resources),
            ["https://graph.microsoft.com"]
        );
        let bad = load(&[("BLOB_CONTAINERS", "ok-name,Bad_Name")]).unwrap_err();
        assert!(bad.to_string().contains("BLOB_CONTAINERS"), "{bad}");
    }

    #[test]
    fn debug_hides_secrets() {
        let s = load(&[
            ("IDENTITY_HEADER", "very-secret-header"),
            ("MSI_SECRET", "legacy-secret"),
        ])
        .unwrap();
        let text = format!("{s:?}");
        assert!(
            !text.contains("very-secret-header") && !text.contains("legacy-secret"),
            "{text}"
        );
    }
}
