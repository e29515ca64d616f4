//! The identity endpoint as a traced hop: a client span per request, and
//! `traceparent` on the request, so the call shows in the run's trace. The
//! identity header passes through as the crate gave it and is never recorded.

use crate::telemetry::ClientCall;
use app_service_identity::{EndpointRequest, EndpointResponse, IdentityTransport};
use async_trait::async_trait;
use azure_core::credentials::Secret;
use tracing::Instrument;

/// `reqwest` with a client span around each token request.
#[derive(Debug, Clone)]
pub struct TracedTransport(pub crate::http_client::SharedClient);

/// The query parameters that name a user-assigned identity (ids, not secrets).
const SELECTORS: [&str; 4] = ["client_id", "object_id", "mi_res_id", "msi_res_id"];

#[async_trait]
impl IdentityTransport for TracedTransport {
    async fn send(&self, request: &EndpointRequest) -> Result<EndpointResponse, String> {
        let call = ClientCall::start("identity", "GET", &request.url);
        let param = |name: &str| {
            request
                .url
                .query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let identity = SELECTORS
            .iter()
            .find_map(|s| Some(format!("{s}={}", param(s)?)))
            .unwrap_or_else(|| "system_assigned".into());
        call.span().record(
            "app.token.audience",
            param("resource").unwrap_or_default().as_str(),
        );
        call.span().record("app.identity", identity.as_str());
        let mut headers = request.headers.clone();
        for (name, value) in call.trace_headers().pairs() {
            headers.push((name, Secret::new(value.to_owned())));
        }
        let traced = EndpointRequest {
            url: request.url.clone(),
            headers,
        };
        let result = self.0.send(&traced).instrument(call.span().clone()).await;
        match &result {
            Ok(response) => call.answered(response.status),
            Err(_) => call.failed("transport"),
        }
        result
    }
}
