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
//!
//! | file | section |
//! |---|---|
//! | `mod.rs` | loading, the server and telemetry sections, the shared parsers |
//! | `identity.rs` | the managed-identity source, selector and retries |
//! | `azure.rs` | upstream URLs, allow-lists, limits |
//! | `downstream.rs` | the APIs called by name (`DOWNSTREAM_APIS__<NAME>__…`) |

mod azure;
mod downstream;
mod identity;

pub use azure::{AzureSettings, DEFAULT_BLOB_CONTAINERS, DEFAULT_MAX_UPLOAD_BYTES};
pub use downstream::{
    DownstreamApi, DownstreamApis, Federation, GRAPH_BASE_URL, GRAPH_RESOURCE, PathPattern,
    TOKEN_EXCHANGE_AUDIENCE,
};

use crate::identity::IdentityConfig;
use crate::names::InvalidName;
use azure::RawAzure;
use identity::RawIdentity;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;

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
    /// A `DOWNSTREAM_APIS__<NAME>__<FIELD>` setting (its name is the API's).
    #[error("setting {setting} is invalid: {reason}")]
    InvalidApi { setting: String, reason: String },
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
        let env: HashMap<String, String> = env
            .into_iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .collect();
        // Nested settings (`DOWNSTREAM_APIS__<NAME>__<FIELD>`) layer over the
        // file's tables; every other setting is flat.
        for (key, value) in downstream::env_overrides(&env)? {
            builder = builder.set_override(key, value)?;
        }
        let raw: Raw = builder
            .add_source(config::Environment::default().source(Some(env)))
            .build()?
            .try_deserialize()?;
        raw.validate()
    }
}

impl Raw {
    fn validate(self) -> Result<Settings, SettingsError> {
        let settings = Settings {
            server: self.server.validate()?,
            telemetry: self.telemetry.validate()?,
            identity: self.identity.validate()?,
            azure: self.azure.validate()?,
        };
        // Entra accepts only a user-assigned identity as a federated credential.
        for api in settings.azure.downstream.iter() {
            if api.federation.is_some()
                && api.identity.is_none()
                && settings.identity.user_assigned.is_none()
            {
                return Err(SettingsError::InvalidApi {
                    setting: api.setting("tenant_id"),
                    reason: format!(
                        "API {} takes its token from another tenant, which needs a user-assigned identity as the federated credential (Entra does not support a system-assigned one): set {} (or AZURE_CLIENT_ID)",
                        api.name,
                        api.setting("client_id")
                    ),
                });
            }
        }
        Ok(settings)
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
    use crate::identity::{ManagedIdentitySource, SourceMode, UserAssignedId};
    use crate::names::Resource;
    use std::time::Duration;

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
                "api://app2-id",
                "https://graph.microsoft.com"
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
    fn downstream_apis_layer_file_then_environment_with_builtins() {
        let s = load(&[]).unwrap().azure;
        assert_eq!(s.downstream.names(), ["graph"]);
        let graph = s.downstream.get("graph").unwrap();
        assert_eq!(graph.base_url, GRAPH_BASE_URL);
        assert_eq!(graph.scope, "https://graph.microsoft.com/.default");
        assert!(
            graph.allowed_paths.is_empty(),
            "no path is reachable by default"
        );
        assert_eq!(graph.methods, ["GET"]);

        let dir = std::env::temp_dir().join(format!("handler-apis-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("handler.toml");
        std::fs::write(
            &path,
            "[downstream_apis.partner]\nbase_url = \"https://partner.example/api/\"\nscopes = \"api://partner/.default\"\nallowed_paths = \"items/*\"\n",
        )
        .unwrap();
        let env = HashMap::from([
            (
                "APP2_BASE_URL".to_string(),
                "https://app2.example".to_string(),
            ),
            ("APP2_RESOURCE".to_string(), "api://app2-id".to_string()),
            (
                "DOWNSTREAM_APIS__PARTNER__METHODS".to_string(),
                "get, POST".to_string(),
            ),
            (
                "DOWNSTREAM_APIS__PARTNER__CLIENT_ID".to_string(),
                GUID.to_string(),
            ),
            (
                "downstream_apis__app2__allowed_paths".to_string(),
                "api/whoami".to_string(),
            ),
        ]);
        let s = Settings::from_sources(Some((path, true)), env)
            .unwrap()
            .azure;
        assert_eq!(s.downstream.names(), ["app2", "graph", "partner"]);
        let partner = s.downstream.get("partner").unwrap();
        assert_eq!(partner.base_url, "https://partner.example/api");
        assert_eq!(partner.resource.as_str(), "api://partner");
        assert_eq!(partner.methods, ["GET", "POST"]);
        assert_eq!(
            partner.identity,
            Some(UserAssignedId::ClientId(GUID.into()))
        );
        let app2 = s.app2().unwrap();
        assert_eq!(
            (app2.base_url.as_str(), app2.scope.as_str()),
            ("https://app2.example", "api://app2-id/.default")
        );
        assert_eq!(app2.allowed_paths[0].to_string(), "api/whoami");
        let allowed: Vec<&str> = s
            .token_allowed_resources
            .iter()
            .map(|r| r.as_str())
            .collect();
        assert!(
            allowed.contains(&"api://partner") && allowed.contains(&"https://graph.microsoft.com")
        );
    }

    #[test]
    fn bad_downstream_settings_stop_startup_naming_the_setting() {
        let api = |extra: &[(&str, &str)]| {
            let mut pairs = vec![
                ("DOWNSTREAM_APIS__X__BASE_URL", "https://x.example"),
                ("DOWNSTREAM_APIS__X__SCOPES", "api://x/.default"),
            ];
            pairs.extend_from_slice(extra);
            load(&pairs).map(|_| ()).unwrap_err().to_string()
        };
        for (extra, setting, says) in [
            (
                ("DOWNSTREAM_APIS__X__BASE_URL", "http://x.example"),
                "DOWNSTREAM_APIS__X__BASE_URL",
                "https",
            ),
            (
                (
                    "DOWNSTREAM_APIS__X__SCOPES",
                    "api://x/.default,api://y/.default",
                ),
                "DOWNSTREAM_APIS__X__SCOPES",
                "exactly one",
            ),
            (
                ("DOWNSTREAM_APIS__X__SCOPES", "api://x/read"),
                "DOWNSTREAM_APIS__X__SCOPES",
                "/.default",
            ),
            (
                ("DOWNSTREAM_APIS__X__METHODS", "FETCH"),
                "DOWNSTREAM_APIS__X__METHODS",
                "FETCH",
            ),
            (
                ("DOWNSTREAM_APIS__X__ALLOWED_PATHS", "a/**/b"),
                "DOWNSTREAM_APIS__X__ALLOWED_PATHS",
                "**",
            ),
            (
                ("DOWNSTREAM_APIS__X__CLIENT_ID", "not-a-guid"),
                "DOWNSTREAM_APIS__X__CLIENT_ID",
                "GUID",
            ),
            (
                ("DOWNSTREAM_APIS__X__BASEURL", "typo"),
                "DOWNSTREAM_APIS__X__BASEURL",
                "unknown field",
            ),
        ] {
            let err = api(&[extra]);
            assert!(
                err.contains(setting) && err.contains(says),
                "{extra:?}: {err}"
            );
        }
        let two = api(&[
            ("DOWNSTREAM_APIS__X__CLIENT_ID", GUID),
            ("DOWNSTREAM_APIS__X__OBJECT_ID", GUID),
        ]);
        assert!(
            two.contains("DOWNSTREAM_APIS__X__CLIENT_ID and DOWNSTREAM_APIS__X__OBJECT_ID"),
            "{two}"
        );
        // Loopback may be plain http (devstack, tests).
        assert!(
            load(&[
                ("DOWNSTREAM_APIS__X__BASE_URL", "http://127.0.0.1:8080"),
                ("DOWNSTREAM_APIS__X__SCOPES", "api://x/.default"),
            ])
            .is_ok()
        );
    }

    #[test]
    fn a_federated_api_needs_guids_https_and_a_user_assigned_identity() {
        let tenant = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d";
        let base = [
            ("DOWNSTREAM_APIS__P__BASE_URL", "https://p.example"),
            ("DOWNSTREAM_APIS__P__SCOPES", "api://p/.default"),
            ("DOWNSTREAM_APIS__P__TENANT_ID", tenant),
            ("DOWNSTREAM_APIS__P__FEDERATED_CLIENT_ID", GUID),
        ];
        let with = |extra: &[(&str, &str)]| {
            let mut pairs = base.to_vec();
            pairs.extend_from_slice(extra);
            load(&pairs)
        };
        let system = with(&[]).unwrap_err().to_string();
        assert!(
            system.contains("system-assigned") && system.contains("DOWNSTREAM_APIS__P__CLIENT_ID"),
            "{system}"
        );
        let ok = with(&[("DOWNSTREAM_APIS__P__CLIENT_ID", GUID)])
            .unwrap()
            .azure;
        let federation = ok.downstream.get("p").unwrap().federation.clone().unwrap();
        assert_eq!(federation.tenant_id, tenant);
        assert_eq!(federation.audience, TOKEN_EXCHANGE_AUDIENCE);
        assert_eq!(ok.login_authority, "https://login.microsoftonline.com");
        // The app's own user-assigned identity serves too.
        assert!(with(&[("AZURE_CLIENT_ID", GUID)]).is_ok());
        let bad = with(&[
            ("AZURE_CLIENT_ID", GUID),
            ("DOWNSTREAM_APIS__P__TENANT_ID", "contoso"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            bad.contains("DOWNSTREAM_APIS__P__TENANT_ID") && bad.contains("GUID"),
            "{bad}"
        );
        let http = with(&[
            ("AZURE_CLIENT_ID", GUID),
            ("LOGIN_AUTHORITY", "http://127.0.0.1:1"),
        ])
        .unwrap_err()
        .to_string();
        assert!(http.contains("LOGIN_AUTHORITY"), "{http}");
        let half = load(&[
            ("DOWNSTREAM_APIS__P__BASE_URL", "https://p.example"),
            ("DOWNSTREAM_APIS__P__SCOPES", "api://p/.default"),
            ("DOWNSTREAM_APIS__P__TENANT_ID", tenant),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            half.contains("DOWNSTREAM_APIS__P__FEDERATED_CLIENT_ID"),
            "{half}"
        );
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
