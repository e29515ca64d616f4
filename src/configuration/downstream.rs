//! The downstream-APIs section: APIs the handler calls by name, in the shape
//! of Microsoft.Identity.Web's `DownstreamApis` (`DOWNSTREAM_APIS__<NAME>__BASE_URL`
//! in the environment, `[downstream_apis.<name>]` in the file).
//!
//! Two are built in: `app2` (from `APP2_BASE_URL` and `APP2_RESOURCE`, when
//! set) and `graph` (Microsoft Graph v1.0). Either may be overridden field by
//! field; no path of any API is reachable through `/api/downstream` unless
//! its `ALLOWED_PATHS` names it.

use super::SettingsError;
use crate::identity::UserAssignedId;
use crate::names::{ApiName, ApiPath, Resource};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

/// Microsoft Graph's v1.0 endpoint and its resource.
pub const GRAPH_BASE_URL: &str = "https://graph.microsoft.com/v1.0";
pub const GRAPH_RESOURCE: &str = "https://graph.microsoft.com";

/// The environment prefix of the section (`DOWNSTREAM_APIS__<NAME>__<FIELD>`).
const ENV_PREFIX: &str = "DOWNSTREAM_APIS__";

/// The fields an API may set, as named in the file.
const FIELDS: &[&str] = &[
    "base_url",
    "scopes",
    "allowed_paths",
    "methods",
    "client_id",
    "object_id",
    "resource_id",
    "tenant_id",
    "federated_client_id",
    "token_exchange_audience",
];

/// The audience of the managed-identity token presented as a client assertion.
pub const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";

/// Methods an allow-list may name.
const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

/// One API the handler may call by name.
#[derive(Debug, Clone)]
pub struct DownstreamApi {
    pub name: ApiName,
    /// Without a trailing `/`; https, or http on loopback only.
    pub base_url: String,
    /// The one `…/.default` scope a managed identity may ask for.
    pub scope: String,
    /// `scope` without `/.default`: what the identity endpoint is asked for.
    pub resource: Resource,
    /// What `/api/downstream/{name}/…` may reach; empty means nothing.
    pub allowed_paths: Vec<PathPattern>,
    /// Upper case; default `GET`.
    pub methods: Vec<String>,
    /// This API's own user-assigned identity, if it has one.
    pub identity: Option<UserAssignedId>,
    /// When set, the API is in another tenant: its token comes from that
    /// tenant, exchanged for the managed identity's (a federated credential).
    pub federation: Option<Federation>,
}

/// Where an API in another tenant takes its token from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Federation {
    /// `DOWNSTREAM_APIS__<NAME>__TENANT_ID`: the other tenant.
    pub tenant_id: String,
    /// `__FEDERATED_CLIENT_ID`: the multitenant app registration whose
    /// federated identity credential trusts the managed identity.
    pub client_id: String,
    /// `__TOKEN_EXCHANGE_AUDIENCE`: the assertion's audience.
    pub audience: String,
}

impl DownstreamApi {
    /// The setting a field is read from, as a team would write it in app settings.
    pub fn setting(&self, field: &str) -> String {
        setting(self.name.as_str(), field)
    }

    /// Whether `/api/downstream` may call `method` on `path`.
    pub fn allows(&self, method: &str, path: &ApiPath) -> bool {
        self.methods.iter().any(|m| m == method)
            && self.allowed_paths.iter().any(|p| p.matches(path.as_str()))
    }
}

/// `DOWNSTREAM_APIS__<NAME>__<FIELD>`.
fn setting(name: &str, field: &str) -> String {
    format!(
        "{ENV_PREFIX}{}__{}",
        name.to_ascii_uppercase(),
        field.to_ascii_uppercase()
    )
}

/// The configured APIs, by name.
#[derive(Debug, Clone, Default)]
pub struct DownstreamApis(BTreeMap<ApiName, DownstreamApi>);

impl DownstreamApis {
    pub fn get(&self, name: &str) -> Option<&DownstreamApi> {
        self.0.values().find(|api| api.name.as_str() == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &DownstreamApi> {
        self.0.values()
    }

    pub fn names(&self) -> Vec<&str> {
        self.0.keys().map(ApiName::as_str).collect()
    }
}

/// A path pattern of `ALLOWED_PATHS`: literal segments, `*` for exactly one
/// segment, and a final `**` for every remaining segment (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern(Vec<String>);

impl PathPattern {
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let segments: Vec<String> = pattern
            .trim()
            .trim_start_matches('/')
            .split('/')
            .map(str::to_owned)
            .collect();
        let last = segments.len() - 1;
        for (i, s) in segments.iter().enumerate() {
            if s.is_empty() {
                return Err(format!("{pattern:?} has an empty segment"));
            }
            if s == "**" && i != last {
                return Err(format!("{pattern:?}: ** may only end a pattern"));
            }
            if s != "*" && s != "**" && (s.contains('*') || ApiPath::parse(s).is_err()) {
                return Err(format!(
                    "{pattern:?}: a segment is a literal name, * or a final **"
                ));
            }
        }
        Ok(Self(segments))
    }

    /// Whether `path` (relative, already validated) matches. Literal
    /// segments compare exactly: paths are case-sensitive.
    pub fn matches(&self, path: &str) -> bool {
        let path: Vec<&str> = path.split('/').collect();
        let mut path_segments = path.iter();
        for (i, pattern) in self.0.iter().enumerate() {
            if pattern == "**" {
                return path.len() > i && path[i..].iter().all(|s| !s.is_empty());
            }
            match path_segments.next() {
                Some(&"") => return false,
                Some(s) if pattern == "*" || pattern == s => {}
                _ => return false,
            }
        }
        path_segments.next().is_none()
    }
}

impl std::fmt::Display for PathPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("/"))
    }
}

/// One API's fields as given (file or environment), each optional.
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDownstreamApi {
    base_url: Option<String>,
    scopes: Option<String>,
    allowed_paths: Option<String>,
    methods: Option<String>,
    client_id: Option<String>,
    object_id: Option<String>,
    resource_id: Option<String>,
    tenant_id: Option<String>,
    federated_client_id: Option<String>,
    token_exchange_audience: Option<String>,
}

/// The environment's `DOWNSTREAM_APIS__<NAME>__<FIELD>` settings as
/// `(downstream_apis.<name>.<field>, value)` overrides for the loader, so
/// they layer over the file like every other setting.
pub(super) fn env_overrides(
    env: &HashMap<String, String>,
) -> Result<Vec<(String, String)>, SettingsError> {
    let mut out = vec![];
    for (key, value) in env {
        let Some(rest) = key
            .get(..ENV_PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(ENV_PREFIX))
            .map(|_| &key[ENV_PREFIX.len()..])
        else {
            continue;
        };
        let invalid = |reason: String| SettingsError::InvalidApi {
            setting: key.clone(),
            reason,
        };
        let (name, field) = rest
            .rsplit_once("__")
            .ok_or_else(|| invalid("expected DOWNSTREAM_APIS__<NAME>__<FIELD>".into()))?;
        let field = field.to_ascii_lowercase();
        if !FIELDS.contains(&field.as_str()) {
            return Err(invalid(format!(
                "unknown field {field:?}; the fields are {}",
                FIELDS.join(", ").to_ascii_uppercase()
            )));
        }
        let name =
            ApiName::parse(&name.to_ascii_lowercase()).map_err(|e| invalid(e.to_string()))?;
        out.push((format!("downstream_apis.{name}.{field}"), value.clone()));
    }
    Ok(out)
}

/// The built-in APIs' defaults, then what the settings say.
pub(super) fn validate(
    raw: Option<HashMap<String, RawDownstreamApi>>,
    app2_base_url: Option<&str>,
    app2_resource: Option<&str>,
) -> Result<DownstreamApis, SettingsError> {
    let mut given: BTreeMap<String, RawDownstreamApi> = BTreeMap::new();
    given.insert(
        "graph".into(),
        RawDownstreamApi {
            base_url: Some(GRAPH_BASE_URL.into()),
            scopes: Some(format!("{GRAPH_RESOURCE}/.default")),
            ..Default::default()
        },
    );
    let app2 = RawDownstreamApi {
        base_url: app2_base_url.map(str::to_owned),
        scopes: app2_resource.map(|r| format!("{}/.default", r.trim_end_matches('/'))),
        ..Default::default()
    };
    let raw = raw.unwrap_or_default();
    // With only one of APP2_BASE_URL and APP2_RESOURCE, app2 is not
    // configured: its function says which one is missing, as before.
    if (app2.base_url.is_some() && app2.scopes.is_some()) || raw.contains_key("app2") {
        given.insert("app2".into(), app2);
    }
    for (name, fields) in raw {
        let name = name.to_ascii_lowercase();
        let base = given.remove(&name).unwrap_or_default();
        given.insert(name, overlay(base, fields));
    }
    let mut apis = BTreeMap::new();
    for (name, raw) in given {
        let name = ApiName::parse(&name).map_err(|e| SettingsError::InvalidApi {
            setting: setting(&name, "base_url"),
            reason: e.to_string(),
        })?;
        let api = raw.validate(name.clone())?;
        apis.insert(name, api);
    }
    Ok(DownstreamApis(apis))
}

fn overlay(base: RawDownstreamApi, over: RawDownstreamApi) -> RawDownstreamApi {
    RawDownstreamApi {
        base_url: over.base_url.or(base.base_url),
        scopes: over.scopes.or(base.scopes),
        allowed_paths: over.allowed_paths.or(base.allowed_paths),
        methods: over.methods.or(base.methods),
        client_id: over.client_id.or(base.client_id),
        object_id: over.object_id.or(base.object_id),
        resource_id: over.resource_id.or(base.resource_id),
        tenant_id: over.tenant_id.or(base.tenant_id),
        federated_client_id: over.federated_client_id.or(base.federated_client_id),
        token_exchange_audience: over
            .token_exchange_audience
            .or(base.token_exchange_audience),
    }
}

impl RawDownstreamApi {
    fn validate(self, name: ApiName) -> Result<DownstreamApi, SettingsError> {
        let invalid = |field: &str, reason: String| SettingsError::InvalidApi {
            setting: setting(name.as_str(), field),
            reason,
        };
        let base_url = self
            .base_url
            .ok_or_else(|| invalid("base_url", "is not set".into()))?;
        let parsed = url::Url::parse(base_url.trim())
            .map_err(|e| invalid("base_url", format!("{base_url:?} is not a URL: {e}")))?;
        let loopback = matches!(
            parsed.host(),
            Some(url::Host::Ipv4(ip)) if ip.is_loopback()
        ) || matches!(parsed.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
            || parsed.host_str() == Some("localhost");
        match parsed.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => {
                return Err(invalid(
                    "base_url",
                    format!("{base_url:?} must be https (http only for a loopback address)"),
                ));
            }
        }
        if parsed.query().is_some() || parsed.fragment().is_some() || !parsed.username().is_empty()
        {
            return Err(invalid(
                "base_url",
                format!("{base_url:?} must have no query, fragment or credentials"),
            ));
        }
        let scopes = super::list(self.scopes.as_deref(), "");
        let scope = match scopes.as_slice() {
            [one] => one.clone(),
            [] => return Err(invalid("scopes", "is not set".into())),
            _ => {
                return Err(invalid(
                    "scopes",
                    format!(
                        "{scopes:?}: a managed identity asks for exactly one scope, <resource>/.default"
                    ),
                ));
            }
        };
        let resource = scope
            .strip_suffix("/.default")
            .ok_or_else(|| {
                invalid(
                    "scopes",
                    format!(
                        "{scope:?} does not end in /.default, the only scope form a managed identity can ask for"
                    ),
                )
            })
            .and_then(|r| Resource::parse(r).map_err(|e| invalid("scopes", e.to_string())))?;
        let allowed_paths = super::list(self.allowed_paths.as_deref(), "")
            .iter()
            .map(|p| PathPattern::parse(p).map_err(|e| invalid("allowed_paths", e)))
            .collect::<Result<Vec<_>, _>>()?;
        let methods = super::list(self.methods.as_deref(), "GET")
            .into_iter()
            .map(|m| {
                let m = m.to_ascii_uppercase();
                if METHODS.contains(&m.as_str()) {
                    Ok(m)
                } else {
                    Err(invalid(
                        "methods",
                        format!("{m:?} is not one of {}", METHODS.join(", ")),
                    ))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let selectors: Vec<(&str, &str)> = [
            ("client_id", self.client_id.as_deref()),
            ("object_id", self.object_id.as_deref()),
            ("resource_id", self.resource_id.as_deref()),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
        let identity = match selectors.as_slice() {
            [] => None,
            [(kind, value)] => {
                let kind_param = if *kind == "resource_id" {
                    "mi_res_id"
                } else {
                    kind
                };
                Some(UserAssignedId::parse(kind_param, value).map_err(|e| invalid(kind, e))?)
            }
            more => {
                let names: Vec<String> = more
                    .iter()
                    .map(|(k, _)| setting(name.as_str(), k))
                    .collect();
                return Err(SettingsError::InvalidApi {
                    setting: names.join(" and "),
                    reason: format!(
                        "API {name} may use one user-assigned identity: set at most one"
                    ),
                });
            }
        };
        let guid = |field: &str, v: String| {
            let v = v.trim().to_owned();
            if crate::identity::is_guid(&v) {
                Ok(v)
            } else {
                Err(invalid(field, format!("{v:?} is not a GUID")))
            }
        };
        let federation = match (self.tenant_id, self.federated_client_id) {
            (None, None) => None,
            (Some(tenant), Some(client)) => Some(Federation {
                tenant_id: guid("tenant_id", tenant)?,
                client_id: guid("federated_client_id", client)?,
                audience: self
                    .token_exchange_audience
                    .unwrap_or_else(|| TOKEN_EXCHANGE_AUDIENCE.to_owned()),
            }),
            (Some(_), None) => {
                return Err(invalid(
                    "federated_client_id",
                    "is not set, but TENANT_ID is: a token from another tenant needs the app registration that trusts this identity".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "tenant_id",
                    "is not set, but FEDERATED_CLIENT_ID is: name the tenant the token comes from"
                        .into(),
                ));
            }
        };
        Ok(DownstreamApi {
            federation,
            base_url: base_url.trim().trim_end_matches('/').to_owned(),
            scope,
            resource,
            allowed_paths,
            methods,
            identity,
            name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(p: &str) -> PathPattern {
        PathPattern::parse(p).unwrap()
    }

    #[test]
    fn patterns_match_segments() {
        assert!(pattern("api/whoami").matches("api/whoami"));
        assert!(!pattern("api/whoami").matches("api/whoami/x"));
        assert!(!pattern("api/whoami").matches("api/WHOAMI"));
        assert!(pattern("servicePrincipals/*").matches("servicePrincipals/abc"));
        assert!(!pattern("servicePrincipals/*").matches("servicePrincipals"));
        assert!(!pattern("servicePrincipals/*").matches("servicePrincipals/a/b"));
        assert!(!pattern("servicePrincipals/*").matches("servicePrincipals/"));
        assert!(pattern("/items/**").matches("items/a/b/c"));
        assert!(pattern("items/**").matches("items/a"));
        assert!(!pattern("items/**").matches("items"));
        assert!(!pattern("items/**").matches("items//a"));
        for bad in ["a/**/b", "a//b", "a*", "..", "a/../b", ""] {
            assert!(PathPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
