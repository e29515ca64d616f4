//! Reading secrets through the official `azure_security_keyvault_secrets`
//! client, on our token provider, with a TTL cache.

use super::claims_recorder::ClaimsRecorder;
use super::error::{ClientError, Stage, UpstreamError};
use crate::names::{SecretName, SecretVersion};
use app_service_identity::single_flight::{Failed, Fresh, Miss, Served, SingleFlightCache};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::ClientOptions;
use azure_security_keyvault_secrets::models::SecretClientGetSecretOptions;
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use serde_json::{Value, json};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;
use time::format_description::well_known::Rfc3339;

/// The resource Key Vault tokens are issued for.
pub const RESOURCE: &str = crate::names::KEY_VAULT_RESOURCE;

/// A secret as read, with its value kept in a redacting `Secret`.
#[derive(Debug)]
pub struct FetchedSecret {
    pub name: String,
    pub version: String,
    pub enabled: Option<bool>,
    pub content_type: Option<String>,
    pub created: Option<String>,
    pub updated: Option<String>,
    pub value: Secret,
}

impl FetchedSecret {
    /// The metadata a function returns; the value only when `expose` (demo only).
    ///
    /// A value is identified by its Key Vault `version` and `updated` time, never
    /// by a hash: an unsalted hash lets anyone guess a low-entropy secret offline.
    pub fn to_json(&self, expose: bool) -> Value {
        let mut v = json!({
            "name": self.name,
            "version": self.version,
            "enabled": self.enabled,
            "content_type": self.content_type,
            "created": self.created,
            "updated": self.updated,
        });
        if expose {
            v["value"] = json!(self.value.secret());
        }
        v
    }
}

/// Key Vault's guidance: cache secrets in memory and re-read them only when
/// the copy is stale or stops working. Concurrent misses of one secret make one
/// request (the identity crate's single-flight cache, without failure memory).
pub struct SecretsService {
    client: Arc<SecretClient>,
    cache: SingleFlightCache<(String, Option<String>), Arc<FetchedSecret>, ClientError>,
    ttl: Duration,
    credential: Arc<ClaimsRecorder>,
}

/// Secrets kept at most (keys come from request paths).
const MAX_CACHED_SECRETS: NonZeroUsize = NonZeroUsize::new(1024).unwrap();

impl SecretsService {
    pub fn new(
        vault_url: &str,
        credential: Arc<dyn TokenCredential>,
        client_options: ClientOptions,
        verify_challenge_resource: bool,
        ttl: Duration,
    ) -> azure_core::Result<Self> {
        let credential = Arc::new(ClaimsRecorder::new(credential));
        let client = SecretClient::new(
            vault_url,
            credential.clone(),
            Some(SecretClientOptions {
                client_options,
                verify_challenge_resource: Some(verify_challenge_resource),
                ..Default::default()
            }),
        )?;
        Ok(Self {
            client: Arc::new(client),
            cache: SingleFlightCache::new(MAX_CACHED_SECRETS),
            ttl,
            credential,
        })
    }

    /// A secret (latest or `version`); `bool` is true when served from the cache.
    pub async fn get(
        &self,
        name: &SecretName,
        version: Option<&SecretVersion>,
    ) -> Result<(Arc<FetchedSecret>, bool), ClientError> {
        // Key Vault's names are case-insensitive: one cache entry per secret.
        let key = (
            name.as_str().to_ascii_lowercase(),
            version.map(|v| v.as_str().to_ascii_lowercase()),
        );
        let (client, ttl) = (self.client.clone(), self.ttl);
        let (name, version) = (name.clone(), version.cloned());
        let result = self
            .cache
            .get(&key, move || async move {
                fetch(&client, &name, version.as_ref())
                    .await
                    .map(|secret| Fresh {
                        value: Arc::new(secret),
                        refresh_in: ttl,
                        usable_for: ttl,
                    })
                    .map_err(|error| Failed {
                        error,
                        remember_for: Duration::ZERO,
                    })
            })
            .await
            .map(|(secret, served)| (secret, served == Served::Cached))
            // Secrets keep no failure memory: every miss is the fetch's own error.
            .map_err(Miss::into_error);
        if let Err(ClientError::Upstream(e)) = &result
            && matches!(e.status, Some(401 | 403))
        {
            // Access changed: never serve a copy read with access we no longer have.
            self.cache.invalidate(&key);
        }
        result.map_err(|e| self.credential.with_claims(e))
    }

    /// A harmless authenticated call, for `?check=keyvault`: reading a
    /// secret. A 404 still proves the caller may read the vault.
    pub async fn probe(&self, name: &SecretName) -> Result<(), ClientError> {
        match self.client.get_secret(name.as_str(), None).await {
            Ok(_) => Ok(()),
            Err(e) if e.http_status() == Some(azure_core::http::StatusCode::NotFound) => Ok(()),
            Err(e) => Err(self
                .credential
                .with_claims(UpstreamError::from_azure(Stage::Keyvault, &e))),
        }
    }
}

async fn fetch(
    client: &SecretClient,
    name: &SecretName,
    version: Option<&SecretVersion>,
) -> Result<FetchedSecret, ClientError> {
    let options = SecretClientGetSecretOptions {
        secret_version: version.map(|v| v.as_str().to_owned()),
        ..Default::default()
    };
    let response = client
        .get_secret(name.as_str(), Some(options))
        .await
        .map_err(|e| classify(e, name, version))?;
    let secret = response
        .into_model()
        .map_err(|e| classify(e, name, version))?;
    let version = secret
        .id
        .as_deref()
        .and_then(|id| id.rsplit('/').next())
        .unwrap_or_default()
        .to_owned();
    let time = |t: Option<time::OffsetDateTime>| t.and_then(|t| t.format(&Rfc3339).ok());
    let attributes = secret.attributes.as_ref();
    Ok(FetchedSecret {
        name: name.as_str().to_owned(),
        version,
        enabled: attributes.and_then(|a| a.enabled),
        content_type: secret.content_type.clone(),
        created: time(attributes.and_then(|a| a.created)),
        updated: time(attributes.and_then(|a| a.updated)),
        value: Secret::from(secret.value.unwrap_or_default()),
    })
}

/// A 404 is "no such secret"; anything else is the upstream's refusal.
fn classify(
    e: azure_core::Error,
    name: &SecretName,
    version: Option<&SecretVersion>,
) -> ClientError {
    if e.http_status() == Some(azure_core::http::StatusCode::NotFound) {
        return ClientError::NotFound {
            stage: Stage::Keyvault,
            what: format!(
                "secret {name}{}",
                version.map(|v| format!(" version {v}")).unwrap_or_default()
            ),
        };
    }
    UpstreamError::from_azure(Stage::Keyvault, &e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_hides_the_value_unless_exposed() {
        let s = FetchedSecret {
            name: "n".into(),
            version: "v".into(),
            enabled: Some(true),
            content_type: None,
            created: None,
            updated: None,
            value: Secret::from("hunter2"),
        };
        let hidden = s.to_json(false);
        assert!(hidden.get("value").is_none());
        assert!(!hidden.to_string().contains("hunter2"));
        // No fingerprint of the value either: an unsalted hash can be guessed offline.
        assert!(hidden.get("value_sha256").is_none());
        let sha = "f52fbd32b2b3b86ff88ef6c490628285f482af15ddcb29541f94bcf526a3f6c7";
        assert!(!hidden.to_string().contains(sha));
        assert_eq!(s.to_json(true)["value"], "hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
