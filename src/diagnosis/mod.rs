//! Explaining 401s and 403s the way an expert would.
//!
//! [`explain`] is pure: it takes the [`Facts`] of a refusal (stage, upstream
//! status and code, the claims of the token that was actually sent, the identity
//! in force) and returns the cause and the exact fix, with ids filled in.
//! [`diagnose`] gathers those facts from a client's typed error and, for a
//! missing app role, from the directory (Microsoft Graph) before the rules
//! run; the edge (`functions::invoke`) adds the result to the problem.

mod attach;
mod federation;
mod refusal;
mod roles;
mod rules;

pub use attach::{diagnose, problem_for};
pub use rules::explain;

use crate::azure::UpstreamError;
use crate::identity::{CredentialSource, IdentityDescription, SelectorKind};
use serde::Serialize;
use serde_json::{Map, Value};

/// Everything a diagnosis may use. None of it is a token or a secret.
#[derive(Debug, Clone)]
pub struct Facts {
    /// What the upstream (or the identity endpoint) said, and the claims of
    /// the token that was sent (none for identity-stage failures).
    pub upstream: UpstreamError,
    pub identity: IdentityDescription,
    /// The setting (or request parameter) that chose the identity, if any.
    pub selector_setting: Option<String>,
    pub target: Target,
    /// When the facts were gathered (unix seconds), to read `exp` and `nbf`.
    pub now: i64,
    /// What the directory says about the role a 403 names, when it was asked.
    pub directory: Option<Directory>,
}

/// The directory's answer for a missing-role 403.
#[derive(Debug, Clone)]
pub enum Directory {
    Read(std::sync::Arc<crate::azure::graph::RoleDirectory>),
    /// Graph refused (no `Application.Read.All`), throttled or was down.
    Unreadable(crate::azure::graph::GraphUnreadable),
}

/// What the handler was talking to.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub vault: Option<String>,
    pub storage_account: Option<String>,
    /// The resource of the named API that refused (app2's APP2_RESOURCE, …).
    pub api_resource: Option<String>,
    /// For an API in another tenant: that tenant and the app that trusts the identity.
    pub federation: Option<crate::configuration::Federation>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Principal {
    pub oid: Option<String>,
    pub appid: Option<String>,
    pub azp: Option<String>,
    pub tid: Option<String>,
    pub xms_mirid: Option<String>,
    pub source: CredentialSource,
    pub selector: SelectorKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TokenView {
    pub aud: Option<String>,
    pub iss: Option<String>,
    pub roles: Vec<String>,
    pub exp: Option<i64>,
    pub ver: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UpstreamView {
    pub status: Option<u16>,
    pub code: Option<String>,
    /// `WWW-Authenticate` parameters (`authorization`, `resource`, `authorization_uri`, `resource_id`, …).
    pub www_authenticate: Map<String, Value>,
    pub message: String,
}

/// The `diagnosis` member of a problem.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Diagnosis {
    pub principal: Principal,
    /// Absent when no token was obtained.
    pub token: Option<TokenView>,
    pub upstream: UpstreamView,
    pub cause: String,
    pub fix: String,
}

/// Parses `Bearer a="b", c=d …` into its parameters.
pub fn challenge_params(header: &str) -> Map<String, Value> {
    let mut out = Map::new();
    let rest = header.trim();
    let rest = rest.strip_prefix("Bearer").unwrap_or(rest);
    let mut chars = rest.char_indices().peekable();
    let bytes = rest.as_bytes();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() || c == ',' {
            chars.next();
            continue;
        }
        let mut key_end = start;
        while let Some(&(i, c)) = chars.peek() {
            if c == '=' {
                key_end = i;
                break;
            }
            chars.next();
            key_end = i + c.len_utf8();
        }
        let key = rest[start..key_end].trim().to_owned();
        if chars.next().is_none() {
            break; // no '='
        }
        let value = if chars.peek().is_some_and(|&(_, c)| c == '"') {
            chars.next();
            let mut v = String::new();
            for (_, c) in chars.by_ref() {
                if c == '"' {
                    break;
                }
                v.push(c);
            }
            v
        } else {
            let mut v = String::new();
            while let Some(&(i, c)) = chars.peek() {
                if c.is_whitespace() || c == ',' || bytes[i] == b',' {
                    break;
                }
                v.push(c);
                chars.next();
            }
            v
        };
        if !key.is_empty() {
            out.insert(key, Value::String(value));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let kv = challenge_params(
            r#"Bearer authorization="https://login.microsoftonline.com/t1", resource="https://vault.azure.net""#,
        );
        assert_eq!(kv["authorization"], "https://login.microsoftonline.com/t1");
        assert_eq!(kv["resource"], "https://vault.azure.net");
        let easyauth = challenge_params(
            r#"Bearer realm="app2.azurewebsites.net" authorization_uri="https://login.microsoftonline.com/t2/oauth2/v2.0/authorize" resource_id="c2" error="invalid_token""#,
        );
        assert_eq!(easyauth["resource_id"], "c2");
        assert_eq!(easyauth["error"], "invalid_token");
        let storage = challenge_params(
            "Bearer authorization_uri=https://login.microsoftonline.com/t3/oauth2/authorize resource_id=https://storage.azure.com",
        );
        assert_eq!(storage["resource_id"], "https://storage.azure.com");
    }
}
