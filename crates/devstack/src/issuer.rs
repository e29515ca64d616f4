//! The token issuer: an RSA signing key, Entra-shaped access tokens, and the
//! OIDC discovery documents and JWKS that validators use.

use crate::world::{TOKEN_EXCHANGE_AUDIENCE, World};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Which token format a resource gets (the resource's `accessTokenAcceptedVersion`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenVersion {
    V1,
    V2,
}

/// What a requested resource resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Audience {
    /// The `aud` claim: the resource as requested (v1) or the client id (v2).
    pub aud: String,
    pub version: TokenVersion,
    /// App roles the caller holds on this resource.
    pub roles: Vec<String>,
}

/// Signs tokens for one tenant.
pub struct Issuer {
    key: EncodingKey,
    kid: String,
    n: String,
    e: String,
}

impl Issuer {
    /// Generates a fresh 2048-bit key (one per devstack run).
    pub fn generate() -> anyhow::Result<Self> {
        let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)?;
        let der = private.to_pkcs1_der()?;
        let n_bytes = private.n().to_bytes_be();
        // Entra kids are 27-character base64url thumbprints.
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(&n_bytes))[..27].to_owned();
        Ok(Self {
            key: EncodingKey::from_rsa_der(der.as_bytes()),
            kid,
            n: URL_SAFE_NO_PAD.encode(&n_bytes),
            e: URL_SAFE_NO_PAD.encode(private.e().to_bytes_be()),
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs `claims` as an RS256 JWT with this key's `kid` (and `x5t` for v1).
    pub fn sign(&self, claims: &Value, version: TokenVersion) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        if version == TokenVersion::V1 {
            header.x5t = Some(self.kid.clone());
        }
        jsonwebtoken::encode(&header, claims, &self.key).expect("RS256 signing with a valid key")
    }

    /// The public key, for checking a token this issuer signed (a client assertion).
    pub fn decoding_key(&self) -> DecodingKey {
        DecodingKey::from_rsa_components(&self.n, &self.e).expect("the key's own components")
    }

    /// The JWKS served at `…/discovery/keys` (v1) and `…/discovery/v2.0/keys` (v2).
    pub fn jwks(&self, issuer: &str) -> Value {
        json!({ "keys": [{
            "kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.kid,
            "n": self.n, "e": self.e, "issuer": issuer
        }]})
    }
}

pub use app2::jwt::{v1_issuer, v2_issuer};

/// Resolves a v1 resource the way Entra does, or `None` for an unknown resource
/// (Entra's AADSTS500011). `minted_at` decides which grants the roles reflect.
pub fn resolve_audience(
    world: &World,
    resource: &str,
    caller_oid: &str,
    minted_at: i64,
) -> Option<Audience> {
    let v1 = |aud: &str| Audience {
        aud: aud.to_owned(),
        version: TokenVersion::V1,
        roles: vec![],
    };
    let trimmed = resource.trim_end_matches('/');
    let account_host = format!("https://{}.blob.core.windows.net", world.storage_account);
    match trimmed {
        "https://vault.azure.net"
        | "https://storage.azure.com"
        | "https://management.azure.com"
        | "https://database.windows.net" => return Some(v1(resource)),
        // App-only Graph tokens carry the granted permissions in `roles`.
        "https://graph.microsoft.com" => {
            return Some(Audience {
                roles: world.roles_of(&world.graph, caller_oid, minted_at),
                ..v1(resource)
            });
        }
        t if t.eq_ignore_ascii_case(&account_host) => return Some(v1(resource)),
        // The token a managed identity presents as a federated credential:
        // v2, `aud` the exchange audience, checked against the FIC.
        TOKEN_EXCHANGE_AUDIENCE => {
            return Some(Audience {
                aud: TOKEN_EXCHANGE_AUDIENCE.into(),
                version: TokenVersion::V2,
                roles: vec![],
            });
        }
        _ => {}
    }
    let app2 = &world.app2;
    if resource == app2.app_id_uri || resource == app2.client_id {
        let roles = world.roles_of(app2, caller_oid, minted_at);
        return Some(match app2.token_version {
            1 => Audience {
                aud: resource.to_owned(),
                version: TokenVersion::V1,
                roles,
            },
            _ => Audience {
                aud: app2.client_id.clone(),
                version: TokenVersion::V2,
                roles,
            },
        });
    }
    None
}

/// The claims of an app-only managed-identity access token.
pub fn access_token_claims(
    world: &World,
    identity: &crate::world::ManagedIdentity,
    audience: &Audience,
    now: i64,
) -> Value {
    let tid = &world.tenant_id;
    let exp = now + world.token_lifetime_secs;
    let mut claims = json!({
        "aud": audience.aud,
        "iat": now, "nbf": now, "exp": exp,
        "aio": "devstack",
        "idtyp": "app",
        "oid": identity.object_id,
        "sub": identity.object_id,
        "tid": tid,
        "rh": "0.devstack.",
        "uti": uuid::Uuid::new_v4().simple().to_string(),
        "xms_mirid": identity.resource_id,
    });
    let map = claims.as_object_mut().expect("object");
    match audience.version {
        TokenVersion::V1 => {
            let iss = v1_issuer(tid);
            map.insert("iss".into(), json!(iss));
            map.insert("idp".into(), json!(iss));
            map.insert("appid".into(), json!(identity.client_id));
            map.insert("appidacr".into(), json!("2"));
            map.insert("ver".into(), json!("1.0"));
        }
        TokenVersion::V2 => {
            map.insert("iss".into(), json!(v2_issuer(tid)));
            map.insert("azp".into(), json!(identity.client_id));
            map.insert("azpacr".into(), json!("2"));
            map.insert("ver".into(), json!("2.0"));
        }
    }
    if !audience.roles.is_empty() {
        map.insert("roles".into(), json!(audience.roles));
    }
    claims
}

/// OIDC discovery for `version`, with URLs under the local `authority`.
pub fn openid_configuration(authority: &str, tenant: &str, version: TokenVersion) -> Value {
    let (issuer, keys, v) = match version {
        TokenVersion::V1 => (
            v1_issuer(tenant),
            format!("{authority}/{tenant}/discovery/keys"),
            "",
        ),
        TokenVersion::V2 => (
            v2_issuer(tenant),
            format!("{authority}/{tenant}/discovery/v2.0/keys"),
            "/v2.0",
        ),
    };
    json!({
        "issuer": issuer,
        "jwks_uri": keys,
        "token_endpoint": format!("{authority}/{tenant}/oauth2{v}/token"),
        "authorization_endpoint": format!("{authority}/{tenant}/oauth2{v}/authorize"),
        "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "tenant_region_scope": "WW",
        "cloud_instance_name": "microsoftonline.com",
    })
}
