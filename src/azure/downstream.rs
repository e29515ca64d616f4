//! Calling a downstream API by name (app2, Microsoft Graph, any API the
//! settings name) with a token for its one `/.default` scope.

use super::error::{ClientError, Stage, UpstreamError, error_chain};
use crate::configuration::DownstreamApi;
use crate::identity::claims::authorization_claims;
use crate::identity::{IdentityProvider, UserAssignedId, capped};
use crate::names::ApiPath;
use crate::telemetry::{ClientCall, record_token};
use bytes::Bytes;
use serde_json::{Map, Value};
use std::sync::Arc;
use tracing::Instrument;

/// What the API answered, plus the claims of the token we sent (never the token).
pub struct ApiResponse {
    pub stage: Stage,
    pub status: u16,
    pub content_type: Option<String>,
    pub www_authenticate: Option<String>,
    /// Graph's `Retry-After` on a 429, in seconds (it may be fractional).
    pub retry_after: Option<f64>,
    pub body: Bytes,
    pub claims: Map<String, Value>,
}

impl ApiResponse {
    /// Whether the API refused (401, 403) or failed (5xx).
    pub fn is_refusal(&self) -> bool {
        matches!(self.status, 401 | 403) || self.status >= 500
    }

    /// The answer as a client error, with what the API (or EasyAuth) said:
    /// an RFC 9457 problem (app2), an OData error (Graph) or text.
    pub fn refusal(&self) -> ClientError {
        let said = capped(&String::from_utf8_lossy(&self.body));
        let json: Option<Value> = serde_json::from_slice(&self.body).ok();
        let field = |name: &str| {
            json.as_ref()
                .and_then(|b| b.get(name).or_else(|| b.get("error")?.get(name)))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        ClientError::from(UpstreamError {
            stage: self.stage,
            status: Some(self.status),
            code: field("title").or_else(|| field("code")),
            message: field("detail")
                .or_else(|| field("message"))
                .map(|d| capped(&d))
                .unwrap_or(said),
            www_authenticate: self.www_authenticate.clone(),
            content_type: self.content_type.clone(),
            required_role: field("required_role"),
            claims: Some(self.claims.clone()),
        })
    }
}

/// An exchange's claims: the exchanged token's, then the assertion's.
pub type FederatedClaims = (Map<String, Value>, Map<String, Value>);

/// A request to a named API: method, path and query, and the body to send.
pub struct ApiRequest<'a> {
    pub method: reqwest::Method,
    pub path: &'a ApiPath,
    /// Already encoded, without the caller's function key.
    pub query: &'a str,
    pub body: Option<(Bytes, Option<String>)>,
    /// A user-assigned identity chosen by the caller (`?check=`), else the API's own.
    pub identity: Option<UserAssignedId>,
}

impl<'a> ApiRequest<'a> {
    pub fn get(path: &'a ApiPath, query: &'a str) -> Self {
        Self {
            method: reqwest::Method::GET,
            path,
            query,
            body: None,
            identity: None,
        }
    }
}

pub struct ApiClient {
    api: DownstreamApi,
    stage: Stage,
    /// The most of an answer that is read (MAX_BODY_BYTES): an API can't
    /// make the handler buffer without bound.
    max_response_bytes: usize,
    /// For an API in another tenant: where its tokens come from.
    federated: Option<super::federated::FederatedCredential>,
    http: crate::http_client::SharedClient,
    credential: Arc<IdentityProvider>,
}

/// app2's `whoami` route, which the flow and `?check=app2` call.
pub fn app2_whoami() -> ApiPath {
    ApiPath::parse("api/whoami").expect("a valid constant path")
}

impl ApiClient {
    pub fn new(
        api: DownstreamApi,
        settings: &crate::configuration::AzureSettings,
        http: crate::http_client::SharedClient,
        credential: Arc<IdentityProvider>,
    ) -> Self {
        let stage = Stage::api(api.name.as_str());
        // Settings guarantee a user-assigned identity for a federated API.
        let federated = api.federation.clone().and_then(|federation| {
            let identity = api
                .identity
                .clone()
                .or_else(|| credential.default_identity().cloned())?;
            Some(super::federated::FederatedCredential::new(
                federation,
                stage,
                identity,
                credential.clone(),
                settings.login_authority.clone(),
                http.clone(),
            ))
        });
        Self {
            stage,
            federated,
            max_response_bytes: settings.max_body_bytes,
            api,
            http,
            credential,
        }
    }

    /// Whether its tokens come from another tenant's token exchange.
    pub fn is_federated(&self) -> bool {
        self.federated.is_some()
    }

    pub fn api(&self) -> &DownstreamApi {
        &self.api
    }

    pub fn resource(&self) -> &str {
        self.api.resource.as_str()
    }

    /// The identity a call uses: the caller's choice, else the API's own, else the app's.
    pub fn identity_for(&self, chosen: Option<UserAssignedId>) -> Option<UserAssignedId> {
        chosen.or_else(|| self.api.identity.clone())
    }

    /// For an API in another tenant, the exchanged token's and the assertion's claims.
    pub async fn federated_claims(&self) -> Option<Result<FederatedClaims, ClientError>> {
        let federated = self.federated.as_ref()?;
        Some(
            federated
                .token(&self.api.scope)
                .await
                .map(|(e, _)| (e.claims, e.assertion)),
        )
    }

    /// The claims of the token this API's calls carry (decoded once per
    /// token): who the caller is, as the API will see it.
    pub async fn token_claims(
        &self,
        identity: Option<UserAssignedId>,
    ) -> Result<Map<String, Value>, ClientError> {
        let identity = self.identity_for(identity);
        let provided = self
            .credential
            .token(self.api.resource.as_str(), identity.as_ref())
            .await?;
        Ok(provided.facts.claims.clone().unwrap_or_default())
    }

    /// GETs `{base_url}/{path}?{query}`.
    pub async fn get(&self, path: &ApiPath, query: &str) -> Result<ApiResponse, ClientError> {
        self.send(ApiRequest::get(path, query)).await
    }

    /// Sends `request` with a token for the API's scope.
    pub async fn send(&self, request: ApiRequest<'_>) -> Result<ApiResponse, ClientError> {
        let identity = self.identity_for(request.identity);
        let mut url = format!("{}/{}", self.api.base_url, request.path);
        if !request.query.is_empty() {
            url.push('?');
            url.push_str(request.query);
        }
        let url = url::Url::parse(&url).map_err(|e| ClientError::NotConfigured {
            stage: self.stage,
            setting: "DOWNSTREAM_APIS__<NAME>__BASE_URL",
            reason: format!(
                "{} does not make a valid URL with {}: {e}",
                self.api.setting("base_url"),
                request.path
            ),
        })?;
        self.send_to(url, request.method, request.body, identity)
            .await
    }

    /// Sends to an absolute URL on the API (Graph's `@odata.nextLink`), which
    /// must stay under the API's base URL: a token never leaves for another host.
    pub async fn get_url(
        &self,
        url: &str,
        identity: Option<UserAssignedId>,
    ) -> Result<ApiResponse, ClientError> {
        let under_base = url
            .strip_prefix(&self.api.base_url)
            .is_some_and(|rest| rest.starts_with(['/', '?']));
        let parsed = url::Url::parse(url).ok().filter(|_| under_base);
        let Some(url) = parsed else {
            return Err(ClientError::from(UpstreamError {
                stage: self.stage,
                status: None,
                code: None,
                message: format!(
                    "{} sent a next link outside its base URL {}; it was not followed",
                    self.api.name, self.api.base_url
                ),
                www_authenticate: None,
                content_type: None,
                required_role: None,
                claims: None,
            }));
        };
        self.send_to(url, reqwest::Method::GET, None, self.identity_for(identity))
            .await
    }

    async fn send_to(
        &self,
        url: url::Url,
        method: reqwest::Method,
        body: Option<(Bytes, Option<String>)>,
        identity: Option<UserAssignedId>,
    ) -> Result<ApiResponse, ClientError> {
        let (token, claims, cached, used) = match &self.federated {
            Some(federated) => {
                let (exchanged, cached) = federated.token(&self.api.scope).await?;
                let used = self.credential.describe(Some(federated.identity()));
                (Arc::new(exchanged.token), exchanged.claims, cached, used)
            }
            None => {
                let provided = self
                    .credential
                    .token(self.api.resource.as_str(), identity.as_ref())
                    .await?;
                let claims = provided.facts.claims.clone().unwrap_or_default();
                (provided.token, claims, provided.cached, provided.identity)
            }
        };
        let call = ClientCall::start(self.stage.as_str(), method.as_str(), &url);
        record_token(
            call.span(),
            self.api.resource.as_str(),
            cached,
            &used.to_string(),
            &serde_json::to_string(&authorization_claims(&claims)).unwrap_or_default(),
        );
        let sent = match self.http.client() {
            Ok(http) => {
                let mut request = http.request(method, url).bearer_auth(token.token.secret());
                for (name, value) in call.trace_headers().pairs() {
                    request = request.header(name, value);
                }
                if let Some((bytes, content_type)) = body {
                    if let Some(content_type) = content_type {
                        request = request.header(reqwest::header::CONTENT_TYPE, content_type);
                    }
                    request = request.body(bytes);
                }
                let sent = request.send().instrument(call.span().clone()).await;
                sent.map_err(|e| capped(&error_chain(&e.without_url())))
            }
            Err(message) => Err(message),
        };
        match &sent {
            Ok(response) => call.answered(response.status().as_u16()),
            Err(_) => call.failed("transport"),
        }
        let failed = |status: Option<u16>, message: String| {
            ClientError::from(UpstreamError {
                stage: self.stage,
                status,
                code: None,
                message,
                www_authenticate: None,
                content_type: None,
                required_role: None,
                claims: Some(claims.clone()),
            })
        };
        let response = sent.map_err(|message| failed(None, message))?;
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header(reqwest::header::CONTENT_TYPE);
        let www_authenticate = header(reqwest::header::WWW_AUTHENTICATE);
        let retry_after = header(reqwest::header::RETRY_AFTER).and_then(|v| v.trim().parse().ok());
        let status = response.status().as_u16();
        let body = read_capped(response, self.max_response_bytes)
            .await
            .map_err(|message| failed(Some(status), message))?;
        Ok(ApiResponse {
            stage: self.stage,
            status,
            content_type,
            www_authenticate,
            retry_after,
            body,
            claims,
        })
    }
}

/// One harmless authenticated GET on a named API: app2's `api/whoami`, Graph's
/// own service principal (readable without any permission), else the API's
/// first literal allowed path, or its base URL. Any answer but a refusal
/// (401, 403, 5xx) means the token was accepted.
pub async fn probe(
    client: &ApiClient,
    identity: Option<UserAssignedId>,
) -> Result<(), ClientError> {
    let api = client.api();
    let path = match api.name.as_str() {
        "app2" => app2_whoami(),
        "graph" => {
            return super::graph::own_service_principal(client, identity)
                .await
                .map(|_| ());
        }
        _ => api
            .allowed_paths
            .iter()
            .map(ToString::to_string)
            .find(|p| !p.contains('*'))
            .and_then(|p| ApiPath::parse(&p).ok())
            .unwrap_or_else(|| ApiPath::parse("").expect("the empty path is valid")),
    };
    let response = client
        .send(ApiRequest {
            identity,
            ..ApiRequest::get(&path, "")
        })
        .await?;
    if response.is_refusal() {
        return Err(response.refusal());
    }
    Ok(())
}

/// The body, or why it was not read whole (too long, or broken off).
async fn read_capped(mut response: reqwest::Response, limit: usize) -> Result<Bytes, String> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(format!(
            "the answer is longer than {limit} bytes (MAX_BODY_BYTES); it was not read"
        ));
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| capped(&error_chain(&e.without_url())))?
    {
        if body.len() + chunk.len() > limit {
            return Err(format!(
                "the answer is longer than {limit} bytes (MAX_BODY_BYTES); it was not read"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
