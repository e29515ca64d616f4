//! Access-token validation the way Microsoft tells APIs to do it: choose the
//! OIDC metadata by the token's `ver`, select the key by `kid` from its JWKS
//! (cached and fetched single-flight: a cold burst waits for one fetch; an
//! unknown kid makes one re-fetch, at most every few seconds), accept
//! RS256 only, then check issuer, audience and lifetime with a small clock skew.
//! The cryptography is `jsonwebtoken`'s.
//!
//! app2 uses it on every request; devstack's EasyAuth gate and Key Vault use
//! the same code, so a token the stand-ins accept is one app2 accepts.

use app_service_identity::single_flight::{Failed, Fresh, Miss, SingleFlightCache};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

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
    /// One key set per metadata document (v1, v2), fetched single-flight: a
    /// cold burst costs one fetch, and every caller waits for it.
    key_sets: SingleFlightCache<MetadataVersion, KeySet, String>,
    leeway_secs: u64,
}

/// Which discovery document a token's `ver` selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum MetadataVersion {
    V1,
    V2,
}

/// One successful fetch of an issuer's JWKS.
#[derive(Clone)]
struct KeySet {
    keys: Arc<HashMap<String, (String, String)>>,
    fetched_at: Instant,
}

/// A `kid` missing from a key set younger than this is refused without a new
/// fetch, so unknown kids cannot make the validator hammer the issuer.
const REFETCH_INTERVAL: Duration = Duration::from_secs(5);
/// Keys are fetched again in the background this often (rollover), and a
/// key set is served for a day if the issuer cannot be reached meanwhile.
const KEYS_REFRESH: Duration = Duration::from_secs(3600);
const KEYS_USABLE: Duration = Duration::from_secs(24 * 3600);
/// After a failed fetch, callers are refused at once for this long.
const FETCH_FAILURE_MEMORY: Duration = Duration::from_secs(5);
/// The whole fetch (discovery document and JWKS) must finish within this.
const FETCH_DEADLINE: Duration = Duration::from_secs(10);

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
                .timeout(FETCH_DEADLINE)
                .build()
                .expect("static reqwest configuration is valid"),
            key_sets: SingleFlightCache::new(NonZeroUsize::new(2).expect("non-zero")),
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
        let version = if version == "2.0" {
            MetadataVersion::V2
        } else {
            MetadataVersion::V1
        };
        let (n, e) = self.key(version, &kid).await?;
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

    /// The signing key `kid`, from the cached key set or from the one fetch
    /// every caller that needs it shares.
    async fn key(
        &self,
        version: MetadataVersion,
        kid: &str,
    ) -> Result<(String, String), Rejection> {
        let has_kid_or_is_recent = |set: &KeySet| {
            set.keys.contains_key(kid) || set.fetched_at.elapsed() < REFETCH_INTERVAL
        };
        let http = self.http.clone();
        let discovery = format!(
            "{}/{}{}/.well-known/openid-configuration",
            self.authority,
            self.tenant,
            if version == MetadataVersion::V2 {
                "/v2.0"
            } else {
                ""
            }
        );
        let fetch = move || async move {
            let outcome = tokio::time::timeout(FETCH_DEADLINE, fetch_keys(&http, &discovery))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {FETCH_DEADLINE:?}")));
            match outcome {
                Ok(keys) => Ok(Fresh {
                    value: KeySet {
                        keys: Arc::new(keys),
                        fetched_at: Instant::now(),
                    },
                    refresh_in: KEYS_REFRESH,
                    usable_for: KEYS_USABLE,
                }),
                Err(error) => Err(Failed {
                    error,
                    remember_for: FETCH_FAILURE_MEMORY,
                }),
            }
        };
        match self
            .key_sets
            .get_if(&version, has_kid_or_is_recent, fetch)
            .await
        {
            Ok((set, _)) => set
                .keys
                .get(kid)
                .cloned()
                .ok_or_else(|| Rejection::UnknownKid(kid.to_owned())),
            Err(Miss::Remembered { error, retry_in }) => Err(Rejection::Keys(format!(
                "{error} (a recent attempt failed; the next is allowed in {} s)",
                retry_in.as_secs().max(1)
            ))),
            Err(miss) => Err(Rejection::Keys(miss.into_error())),
        }
    }
}

/// The issuer's keys (`kid` → RSA modulus and exponent), from its discovery
/// document's `jwks_uri`.
async fn fetch_keys(
    http: &reqwest::Client,
    discovery: &str,
) -> Result<HashMap<String, (String, String)>, String> {
    let get = |url: String| async move {
        http.get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| e.to_string())?
            .json::<Value>()
            .await
            .map_err(|e| e.to_string())
    };
    let meta = get(discovery.to_owned()).await?;
    let jwks_uri = meta["jwks_uri"]
        .as_str()
        .ok_or("the discovery document has no jwks_uri")?;
    let jwks = get(jwks_uri.to_owned()).await?;
    Ok(jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| {
            Some((
                k["kid"].as_str()?.to_owned(),
                (k["n"].as_str()?.to_owned(), k["e"].as_str()?.to_owned()),
            ))
        })
        .collect())
}

/// `text` made safe for a quoted `WWW-Authenticate` parameter (RFC 6750's
/// `error_description`: printable ASCII without `"` or `\\`), at most 300
/// characters. Rejections quote the token's own claims, which a caller chose.
pub fn challenge_text(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            ' '..='~' => c,
            _ => '?',
        })
        .take(300)
        .collect()
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
