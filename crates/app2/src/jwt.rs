//! Access-token validation the way Microsoft tells APIs to do it: choose the
//! OIDC metadata by the token's `ver`, select the key by `kid` from its JWKS
//! (cached; re-fetched, at most every few seconds, for an unknown kid), accept
//! RS256 only, then check issuer, audience and lifetime with a small clock skew.
//! The cryptography is `jsonwebtoken`'s.
//!
//! app2 uses it on every request; devstack's EasyAuth gate and Key Vault use
//! the same code, so a token the stand-ins accept is one app2 accepts.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why a token was refused; the text is what a server would log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("algorithm {0} is not accepted; only RS256 is")]
    Algorithm(String),
    #[error("signing key {0} is not in the issuer's JWKS")]
    UnknownKid(String),
    #[error("the signature is invalid")]
    Signature,
    #[error("the token is expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("audience {found} is not accepted (expected one of {expected})")]
    Audience { found: String, expected: String },
    #[error("issuer {0} is not accepted")]
    Issuer(String),
    #[error("could not fetch signing keys: {0}")]
    Keys(String),
}

/// Entra's v1 issuer for `tenant` (`sts.windows.net`).
pub fn v1_issuer(tenant: &str) -> String {
    format!("https://sts.windows.net/{tenant}/")
}

/// Entra's v2 issuer for `tenant`.
pub fn v2_issuer(tenant: &str) -> String {
    format!("https://login.microsoftonline.com/{tenant}/v2.0")
}

/// Microsoft's public cloud authority, where discovery documents are served.
pub const PUBLIC_AUTHORITY: &str = "https://login.microsoftonline.com";

/// Validates tokens of one tenant against the issuer's published keys.
pub struct TokenValidator {
    authority: String,
    tenant: String,
    http: reqwest::Client,
    keys: Mutex<HashMap<String, (String, String)>>,
    last_fetch: Mutex<Option<Instant>>,
    leeway_secs: u64,
}

/// Re-fetch the JWKS at most this often, so unknown kids cannot cause a loop.
const REFETCH_INTERVAL: Duration = Duration::from_secs(5);

impl TokenValidator {
    /// `authority` is where discovery is served (`https://login.microsoftonline.com`,
    /// or devstack's `http://127.0.0.1:<port>`). Clock skew: 5 minutes, as
    /// Microsoft.IdentityModel allows; see [`TokenValidator::with_leeway`].
    pub fn new(authority: impl Into<String>, tenant: impl Into<String>) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            authority: authority.into().trim_end_matches('/').to_owned(),
            tenant: tenant.into(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("static reqwest configuration is valid"),
            keys: Mutex::default(),
            last_fetch: Mutex::default(),
            leeway_secs: 300,
        }
    }

    /// The clock skew allowed on `exp` and `nbf`.
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway_secs = leeway.as_secs();
        self
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Validates `token` for one of `audiences` and `issuers`; returns its claims.
    pub async fn validate(
        &self,
        token: &str,
        audiences: &[String],
        issuers: &[String],
    ) -> Result<Map<String, Value>, Rejection> {
        let alg = raw_header_alg(token).ok_or(Rejection::Malformed)?;
        if alg != "RS256" {
            return Err(Rejection::Algorithm(alg));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| Rejection::Malformed)?;
        let kid = header.kid.ok_or(Rejection::UnknownKid("(none)".into()))?;
        let version = unverified_claims(token)
            .and_then(|c| c.get("ver").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| "1.0".into());
        let (n, e) = match self.key(&kid) {
            Some(k) => k,
            None => {
                self.refresh_keys(&version).await?;
                self.key(&kid)
                    .ok_or_else(|| Rejection::UnknownKid(kid.clone()))?
            }
        };
        let key = DecodingKey::from_rsa_components(&n, &e)
            .map_err(|_| Rejection::Keys("bad key".into()))?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = self.leeway_secs;
        validation.validate_nbf = true;
        validation.validate_aud = false; // checked below, for a clearer reason
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud"]);
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::ExpiredSignature => Rejection::Expired,
                    K::ImmatureSignature => Rejection::NotYetValid,
                    K::InvalidSignature => Rejection::Signature,
                    _ => Rejection::Malformed,
                }
            })?;
        let claims = data.claims;
        let iss = claims
            .get("iss")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !issuers.iter().any(|i| i == iss) {
            return Err(Rejection::Issuer(iss.to_owned()));
        }
        let aud = claims
            .get("aud")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !audiences.iter().any(|a| a == aud) {
            return Err(Rejection::Audience {
                found: aud.to_owned(),
                expected: audiences.join(", "),
            });
        }
        Ok(claims)
    }

    /// Both issuers of this tenant (v1 and v2).
    pub fn tenant_issuers(&self) -> Vec<String> {
        vec![v1_issuer(&self.tenant), v2_issuer(&self.tenant)]
    }

    fn key(&self, kid: &str) -> Option<(String, String)> {
        self.keys.lock().unwrap().get(kid).cloned()
    }

    async fn refresh_keys(&self, version: &str) -> Result<(), Rejection> {
        {
            let mut last = self.last_fetch.lock().unwrap();
            if last.is_some_and(|t| t.elapsed() < REFETCH_INTERVAL) {
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        let v = if version == "2.0" { "/v2.0" } else { "" };
        let discovery = format!(
            "{}/{}{v}/.well-known/openid-configuration",
            self.authority, self.tenant
        );
        let get = |url: String| async move {
            self.http
                .get(url)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| Rejection::Keys(e.to_string()))?
                .json::<Value>()
                .await
                .map_err(|e| Rejection::Keys(e.to_string()))
        };
        let meta = get(discovery).await?;
        let jwks_uri = meta["jwks_uri"]
            .as_str()
            .ok_or(Rejection::Keys("no jwks_uri".into()))?;
        let jwks = get(jwks_uri.to_owned()).await?;
        let mut keys = self.keys.lock().unwrap();
        for k in jwks["keys"].as_array().into_iter().flatten() {
            if let (Some(kid), Some(n), Some(e)) =
                (k["kid"].as_str(), k["n"].as_str(), k["e"].as_str())
            {
                keys.insert(kid.to_owned(), (n.to_owned(), e.to_owned()));
            }
        }
        Ok(())
    }
}

/// The `alg` in a JWT header, read without trusting it (`none` and HS* are
/// refused before anything else).
fn raw_header_alg(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    let bytes = URL_SAFE_NO_PAD.decode(header.trim_end_matches('=')).ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    value.get("alg")?.as_str().map(str::to_owned)
}

/// Claims read without verification (only to pick the metadata document).
pub fn unverified_claims(token: &str) -> Option<Map<String, Value>> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}
