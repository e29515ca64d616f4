//! Calling app2, the EasyAuth-protected App Service, with a token whose
//! audience is app2.

use super::error::{ClientError, Stage, UpstreamError, error_chain};
use crate::identity::claims::{authorization_claims, decode_claims};
use crate::identity::{IdentityProvider, UserAssignedId, capped};
use crate::names::App2Path;
use crate::telemetry::{ClientCall, record_token};
use bytes::Bytes;
use serde_json::{Map, Value};
use std::sync::Arc;
use tracing::Instrument;

/// What app2 answered, plus the claims of the token we sent (never the token).
pub struct App2Response {
    pub status: u16,
    pub content_type: Option<String>,
    pub www_authenticate: Option<String>,
    pub body: Bytes,
    pub claims: Map<String, Value>,
}

impl App2Response {
    /// Whether app2 refused (401, 403) or failed (5xx).
    pub fn is_refusal(&self) -> bool {
        matches!(self.status, 401 | 403) || self.status >= 500
    }

    /// The refusal as a client error, with what app2 (or EasyAuth) said.
    pub fn refusal(&self) -> ClientError {
        let said = capped(&String::from_utf8_lossy(&self.body));
        let json: Option<Value> = serde_json::from_slice(&self.body).ok();
        let field = |name: &str| {
            json.as_ref()
                .and_then(|b| b.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        ClientError::from(UpstreamError {
            stage: Stage::App2,
            status: Some(self.status),
            code: field("title"),
            // app2's problem says why in `detail`; EasyAuth answers in text.
            message: field("detail").map(|d| capped(&d)).unwrap_or(said),
            www_authenticate: self.www_authenticate.clone(),
            content_type: self.content_type.clone(),
            required_role: field("required_role"),
            claims: Some(self.claims.clone()),
        })
    }
}

pub struct App2Client {
    base_url: String,
    resource: String,
    http: crate::http_client::SharedClient,
    credential: Arc<IdentityProvider>,
}

/// app2's `whoami` route, which the flow and `?check=app2` call.
pub fn whoami() -> App2Path {
    App2Path::parse("api/whoami").expect("a valid constant path")
}

impl App2Client {
    pub fn new(
        base_url: String,
        resource: String,
        http: crate::http_client::SharedClient,
        credential: Arc<IdentityProvider>,
    ) -> Self {
        Self {
            base_url,
            resource,
            http,
            credential,
        }
    }

    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// GETs `{APP2_BASE_URL}/{path}?{query}` with a token for `{APP2_RESOURCE}/.default`.
    pub async fn get(&self, path: &App2Path, query: &str) -> Result<App2Response, ClientError> {
        self.get_as(path, query, None).await
    }

    /// As [`App2Client::get`], as a particular identity.
    pub async fn get_as(
        &self,
        path: &App2Path,
        query: &str,
        identity: Option<UserAssignedId>,
    ) -> Result<App2Response, ClientError> {
        let provided = self
            .credential
            .token(&self.resource, identity.as_ref())
            .await?;
        let token = provided.token;
        let claims = decode_claims(token.token.secret()).unwrap_or_default();
        let mut url = format!("{}/{path}", self.base_url);
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        let url = url::Url::parse(&url).map_err(|e| ClientError::NotConfigured {
            stage: Stage::App2,
            setting: "APP2_BASE_URL",
            reason: format!("APP2_BASE_URL does not make a valid URL with {path}: {e}"),
        })?;
        let call = ClientCall::start("app2", "GET", &url);
        record_token(
            call.span(),
            &self.resource,
            provided.cached,
            &provided.identity.to_string(),
            &serde_json::to_string(&authorization_claims(&claims)).unwrap_or_default(),
        );
        let sent = match self.http.client() {
            Ok(http) => {
                let mut request = http.get(url).bearer_auth(token.token.secret());
                for (name, value) in call.trace_headers().pairs() {
                    request = request.header(name, value);
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
        let response = sent.map_err(|message| {
            ClientError::from(UpstreamError {
                stage: Stage::App2,
                status: None,
                code: None,
                message,
                www_authenticate: None,
                content_type: None,
                required_role: None,
                claims: Some(claims.clone()),
            })
        })?;
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header(reqwest::header::CONTENT_TYPE);
        let www_authenticate = header(reqwest::header::WWW_AUTHENTICATE);
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap_or_default();
        Ok(App2Response {
            status,
            content_type,
            www_authenticate,
            body,
            claims,
        })
    }
}
