//! Calling app2, the EasyAuth-protected App Service, with a token whose
//! audience is app2.

use crate::identity::{IdentityProvider, claims::decode_claims};
use crate::problem::{Problem, Stage};
use bytes::Bytes;
use serde_json::{Map, Value};
use std::sync::Arc;

/// What app2 answered, plus the claims of the token we sent (never the token).
pub struct App2Response {
    pub status: u16,
    pub content_type: Option<String>,
    pub www_authenticate: Option<String>,
    pub body: Bytes,
    pub claims: Map<String, Value>,
}

pub struct App2Client {
    base_url: String,
    resource: String,
    http: reqwest::Client,
    credential: Arc<IdentityProvider>,
}

/// A relative path for app2: no scheme, no `..`, no backslashes or control characters.
pub fn validate_path(path: &str) -> Result<(), Problem> {
    // Check the decoded form too: `..%2F` must not slip through.
    let decoded: String = percent_decode(path);
    let ok = path.len() <= 2048
        && !decoded.contains("://")
        && !decoded.starts_with('/')
        && !decoded.chars().any(|c| c.is_control() || c == '\\')
        && decoded.split('/').all(|s| s != ".." && s != ".")
        && !path.contains("://")
        && !path.starts_with('/')
        && !path.chars().any(|c| c.is_control() || c == '\\')
        && path.split('/').all(|s| s != ".." && s != ".");
    if ok {
        Ok(())
    } else {
        Err(Problem::bad_request(
            "the app2 path must be relative, without '.' or '..' segments, backslashes or control characters",
        ))
    }
}

impl App2Client {
    pub fn new(
        base_url: String,
        resource: String,
        http: reqwest::Client,
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
    pub async fn get(&self, path: &str, query: &str) -> Result<App2Response, Problem> {
        self.get_as(path, query, None).await
    }

    /// As [`App2Client::get`], as a particular identity.
    pub async fn get_as(
        &self,
        path: &str,
        query: &str,
        identity: Option<crate::identity::UserAssignedId>,
    ) -> Result<App2Response, Problem> {
        validate_path(path)?;
        let scope = format!("{}/.default", self.resource);
        let token = self
            .credential
            .as_identity(identity)
            .get_token(&[&scope], None)
            .await
            .map_err(|e| match e.downcast_ref::<crate::identity::TokenError>() {
                Some(identity) => Problem::from(identity),
                None => Problem::new(
                    actix_web::http::StatusCode::BAD_GATEWAY,
                    "identity-endpoint-error",
                    e.to_string(),
                )
                .stage(Stage::Identity),
            })?;
        let claims = decode_claims(token.token.secret()).unwrap_or_default();
        let mut url = format!("{}/{path}", self.base_url);
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        let response = self
            .http
            .get(url)
            .bearer_auth(token.token.secret())
            .send()
            .await
            .map_err(|e| {
                Problem::new(
                    actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                    "app2-error",
                    format!(
                        "app2 could not be reached: {}",
                        super::upstream::error_chain(&e.without_url())
                    ),
                )
                .stage(Stage::App2)
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

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(
        format!("p={}", s.replace('+', "%2B").replace('&', "%26")).as_bytes(),
    )
    .next()
    .map(|(_, v)| v.into_owned())
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert!(validate_path("api/whoami").is_ok());
        assert!(validate_path("").is_ok());
        for bad in [
            "../x",
            "a/../../b",
            "/abs",
            "http://evil/x",
            "a\\b",
            "a\nb",
            "./a",
        ] {
            assert!(validate_path(bad).is_err(), "{bad:?}");
        }
    }
}
