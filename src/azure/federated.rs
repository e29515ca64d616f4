//! Tokens from another tenant, with no secret: the managed identity's token
//! for `api://AzureADTokenExchange` is the client assertion of a multitenant
//! app registration whose federated identity credential (FIC) trusts it.
//!
//! The exchange is `azure_identity::ClientAssertionCredential`'s; this module
//! supplies the assertion (our own credential's token) and caches what comes
//! back with single-flight and half-life refresh, remembering a failure
//! briefly, as the identity crate does for the identity endpoint.

use super::error::{ClientError, Stage, find_identity_error};
use crate::configuration::Federation;
use crate::identity::{IdentityProvider, UserAssignedId, capped};
use app_service_identity::single_flight::{Failed, Fresh, Miss, Served, SingleFlightCache};
use azure_core::credentials::{AccessToken, TokenCredential};
use azure_core::http::{ClientMethodOptions, ClientOptions, Transport};
use azure_identity::{
    ClientAssertion, ClientAssertionCredential, ClientAssertionCredentialOptions,
};
use serde_json::{Map, Value};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a failed exchange is answered from memory, without a new one.
const FAILURE_MEMORY: Duration = Duration::from_secs(5);

/// A token from the other tenant, and the claims of both tokens (never a token).
#[derive(Clone)]
pub struct Exchanged {
    pub token: AccessToken,
    /// The exchanged token's claims (`tid`, `appid`, `roles`, …).
    pub claims: Map<String, Value>,
    /// The assertion's claims (`iss`, `sub`, `aud`): what the FIC must match.
    pub assertion: Map<String, Value>,
}

/// Why the other tenant refused the exchange, with both sides' values.
#[derive(Debug, Clone)]
pub struct ExchangeError {
    pub stage: Stage,
    pub status: Option<u16>,
    /// OAuth's `error` (`invalid_client`, `invalid_request`, …).
    pub error: Option<String>,
    /// Entra's `error_codes` (`70021`, …).
    pub codes: Vec<String>,
    /// `error_description`: the AADSTS text (capped).
    pub description: String,
    pub federation: Federation,
    pub authority: String,
    /// The claims of the assertion that was presented.
    pub assertion: Map<String, Value>,
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "tenant {} refused the token exchange for app {}",
            self.federation.tenant_id, self.federation.client_id
        )?;
        if let Some(s) = self.status {
            write!(f, " ({s})")?;
        }
        write!(f, ": {}", self.description)
    }
}

/// The managed identity's token as a client assertion; remembers the claims
/// of the last one presented, for the diagnosis.
struct ManagedIdentityAssertion {
    provider: Arc<IdentityProvider>,
    audience: String,
    identity: UserAssignedId,
    presented: Arc<Mutex<Map<String, Value>>>,
}

impl std::fmt::Debug for ManagedIdentityAssertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedIdentityAssertion")
            .field("audience", &self.audience)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl ClientAssertion for ManagedIdentityAssertion {
    async fn secret(&self, _: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        let provided = self
            .provider
            .token(&self.audience, Some(&self.identity))
            .await
            .map_err(|e| azure_core::Error::new(azure_core::error::ErrorKind::Credential, e))?;
        *self.presented.lock().unwrap_or_else(|e| e.into_inner()) =
            provided.facts.claims.clone().unwrap_or_default();
        Ok(provided.token.token.secret().to_owned())
    }
}

/// One named API's tokens from its tenant.
pub struct FederatedCredential {
    federation: Federation,
    stage: Stage,
    identity: UserAssignedId,
    provider: Arc<IdentityProvider>,
    authority: String,
    transport: crate::http_client::SharedClient,
    cache: SingleFlightCache<String, Exchanged, ClientError>,
}

impl FederatedCredential {
    pub fn new(
        federation: Federation,
        stage: Stage,
        identity: UserAssignedId,
        provider: Arc<IdentityProvider>,
        authority: String,
        transport: crate::http_client::SharedClient,
    ) -> Self {
        Self {
            federation,
            stage,
            identity,
            provider,
            authority,
            transport,
            cache: SingleFlightCache::new(NonZeroUsize::new(4).expect("non-zero")),
        }
    }

    pub fn identity(&self) -> &UserAssignedId {
        &self.identity
    }

    /// A token for `scope` from the other tenant: cached, refreshed at half
    /// its life, one exchange for every concurrent caller.
    pub async fn token(&self, scope: &str) -> Result<(Exchanged, bool), ClientError> {
        let exchange = self.exchange(scope.to_owned());
        self.cache
            .get(&scope.to_owned(), move || exchange)
            .await
            .map(|(v, served)| (v, served == Served::Cached))
            .map_err(Miss::into_error)
    }

    fn exchange(
        &self,
        scope: String,
    ) -> impl Future<Output = Result<Fresh<Exchanged>, Failed<ClientError>>> + Send + 'static {
        let presented = Arc::new(Mutex::new(Map::new()));
        let assertion = ManagedIdentityAssertion {
            provider: self.provider.clone(),
            audience: self.federation.audience.clone(),
            identity: self.identity.clone(),
            presented: presented.clone(),
        };
        let (federation, stage, authority) =
            (self.federation.clone(), self.stage, self.authority.clone());
        let transport = self.transport.clone();
        async move {
            let failed = |error: ClientError| Failed {
                error,
                remember_for: FAILURE_MEMORY,
            };
            let mut cloud = azure_core::cloud::CustomConfiguration::default();
            cloud.authority_host = authority.clone();
            let options = ClientAssertionCredentialOptions {
                client_options: ClientOptions {
                    transport: Some(Transport::new(Arc::new(transport))),
                    cloud: Some(Arc::new(cloud.into())),
                    ..Default::default()
                },
            };
            // A credential per exchange: its own cache would hand back the
            // same token until 5 minutes before expiry, defeating the refresh.
            let credential = ClientAssertionCredential::new(
                federation.tenant_id.clone(),
                federation.client_id.clone(),
                assertion,
                Some(options),
            )
            .map_err(|e| failed(refusal(stage, &federation, &authority, &e, Map::new())))?;
            match credential.get_token(&[scope.as_str()], None).await {
                Ok(token) => {
                    let claims = crate::identity::claims::decode_claims(token.token.secret())
                        .unwrap_or_default();
                    let assertion = presented.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    let left = (token.expires_on - azure_core::time::OffsetDateTime::now_utc())
                        .whole_seconds()
                        .max(0) as u64;
                    Ok(Fresh {
                        value: Exchanged {
                            token,
                            claims,
                            assertion,
                        },
                        refresh_in: Duration::from_secs(left / 2),
                        usable_for: Duration::from_secs(left.saturating_sub(60)),
                    })
                }
                Err(e) => {
                    // The assertion itself failed: that is the identity endpoint's error.
                    if let Some(identity) = find_identity_error(&e) {
                        return Err(failed(ClientError::Identity(identity.clone())));
                    }
                    let assertion = presented.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    Err(failed(refusal(
                        stage,
                        &federation,
                        &authority,
                        &e,
                        assertion,
                    )))
                }
            }
        }
    }
}

/// Entra's answer, read from the error the credential returned.
fn refusal(
    stage: Stage,
    federation: &Federation,
    authority: &str,
    err: &azure_core::Error,
    assertion: Map<String, Value>,
) -> ClientError {
    let mut error = ExchangeError {
        stage,
        status: None,
        error: None,
        codes: vec![],
        description: capped(&crate::identity::error_chain(err)),
        federation: federation.clone(),
        authority: authority.to_owned(),
        assertion,
    };
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(azure_core::error::ErrorKind::HttpResponse {
            status,
            raw_response: Some(raw),
            ..
        }) = e.downcast_ref::<azure_core::Error>().map(|e| e.kind())
        {
            error.status = Some(u16::from(*status));
            if let Ok(body) = serde_json::from_slice::<Value>(raw.body().as_ref()) {
                error.error = body["error"].as_str().map(str::to_owned);
                if let Some(d) = body["error_description"].as_str() {
                    error.description = capped(d);
                }
                error.codes = body["error_codes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| c.to_string().trim_matches('"').to_owned())
                    .collect();
            }
            break;
        }
        source = e.source();
    }
    ClientError::Exchange(Box::new(error))
}
