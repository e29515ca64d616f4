//! Remembers the claims of the last token an SDK client was handed, so a
//! refusal can be explained with the token that was actually sent, without
//! asking the identity endpoint again.

use super::error::{ClientError, UpstreamError};
use crate::identity::claims::decode_claims;
use async_trait::async_trait;
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use serde_json::{Map, Value};
use std::sync::{Arc, Mutex};

/// A `TokenCredential` that passes tokens through and keeps their claims.
#[derive(Debug)]
pub struct ClaimsRecorder {
    inner: Arc<dyn TokenCredential>,
    last: Mutex<Option<Map<String, Value>>>,
}

impl ClaimsRecorder {
    pub fn new(inner: Arc<dyn TokenCredential>) -> Self {
        Self {
            inner,
            last: Mutex::new(None),
        }
    }

    /// Adds the last token's claims to an upstream refusal.
    pub fn with_claims(&self, err: ClientError) -> ClientError {
        match err {
            ClientError::Upstream(u) => ClientError::from(UpstreamError {
                claims: self.last.lock().expect("claims poisoned").clone(),
                ..*u
            }),
            other => other,
        }
    }
}

#[async_trait]
impl TokenCredential for ClaimsRecorder {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let token = self.inner.get_token(scopes, options).await?;
        *self.last.lock().expect("claims poisoned") = decode_claims(token.token.secret());
        Ok(token)
    }
}
