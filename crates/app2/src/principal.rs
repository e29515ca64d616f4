//! Reading the caller that App Service Authentication injects.
//!
//! `X-MS-CLIENT-PRINCIPAL` is base64 JSON `{auth_typ, claims:[{typ,val}], name_typ,
//! role_typ}`. The platform strips client-sent copies, so the header is only
//! trustworthy when app2 is reachable solely through EasyAuth (see README).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

const OID: &str = "http://schemas.microsoft.com/identity/claims/objectidentifier";
const TID: &str = "http://schemas.microsoft.com/identity/claims/tenantid";

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    claims: Vec<Claim>,
    #[serde(default)]
    role_typ: Option<String>,
}

#[derive(Deserialize)]
struct Claim {
    typ: String,
    val: String,
}

/// The caller as app2 sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// `appid` (v1) or `azp` (v2): the calling application's client id.
    pub app_id: Option<String>,
    pub object_id: Option<String>,
    pub tenant_id: Option<String>,
    pub roles: Vec<String>,
}

impl Principal {
    /// Decodes the header value; `None` if it is not valid base64 JSON.
    pub fn from_header(value: &str) -> Option<Self> {
        let bytes = STANDARD.decode(value.trim()).ok()?;
        let raw: Raw = serde_json::from_slice(&bytes).ok()?;
        let find = |names: &[&str]| {
            raw.claims
                .iter()
                .find(|c| names.contains(&c.typ.as_str()))
                .map(|c| c.val.clone())
        };
        let role_typ = raw.role_typ.as_deref().unwrap_or("roles");
        Some(Self {
            app_id: find(&["appid", "azp"]),
            object_id: find(&[OID, "oid"]),
            tenant_id: find(&[TID, "tid"]),
            // Roles appear as "roles" or under role_typ, one claim per role.
            roles: raw
                .claims
                .iter()
                .filter(|c| c.typ == "roles" || c.typ == role_typ)
                .map(|c| c.val.clone())
                .collect(),
        })
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn encode(v: serde_json::Value) -> String {
        STANDARD.encode(v.to_string())
    }

    #[test]
    fn reads_v1_principal() {
        let p = Principal::from_header(&encode(json!({
            "auth_typ": "aad",
            "claims": [
                {"typ": "appid", "val": "a1"},
                {"typ": OID, "val": "o1"},
                {"typ": TID, "val": "t1"},
                {"typ": "roles", "val": "App2.Access"},
                {"typ": "roles", "val": "Other"}
            ],
            "name_typ": "n",
            "role_typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
        })))
        .unwrap();
        assert_eq!(p.app_id.as_deref(), Some("a1"));
        assert_eq!(p.object_id.as_deref(), Some("o1"));
        assert_eq!(p.tenant_id.as_deref(), Some("t1"));
        assert!(p.has_role("App2.Access") && p.has_role("Other"));
    }

    #[test]
    fn reads_azp_and_role_typ() {
        let p = Principal::from_header(&encode(json!({
            "claims": [{"typ": "azp", "val": "a2"}, {"typ": "r", "val": "X"}],
            "role_typ": "r"
        })))
        .unwrap();
        assert_eq!(p.app_id.as_deref(), Some("a2"));
        assert!(p.has_role("X"));
    }

    #[test]
    fn rejects_garbage() {
        assert!(Principal::from_header("!!!").is_none());
        assert!(Principal::from_header(&STANDARD.encode("not json")).is_none());
    }
}
