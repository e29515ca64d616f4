//! Trace context at the default settings: no exporter, so app1 builds no
//! spans, yet the caller's trace still reaches every hop.

use crate::helpers::*;
use wiremock::matchers::{method, query_param};
use wiremock::{Mock, ResponseTemplate};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// The `traceparent` the identity endpoint got for `resource`.
async fn sent_for(app: &TestApp, resource: &str) -> String {
    let requests = app.identity.received_requests().await.unwrap();
    let request = requests
        .iter()
        .find(|r| {
            r.url
                .query_pairs()
                .any(|(k, v)| k == "resource" && v == resource)
        })
        .unwrap_or_else(|| panic!("no request for {resource}"));
    request.headers["traceparent"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn without_an_exporter_the_callers_trace_still_reaches_the_identity_endpoint() {
    let app = spawn_app().await;
    for resource in ["https://vault.azure.net", "https://storage.azure.com"] {
        Mock::given(method("GET"))
            .and(query_param("resource", resource))
            .respond_with(ResponseTemplate::new(200).set_body_json(token_body(resource, 3600)))
            .mount(&app.identity)
            .await;
    }

    // A caller's trace is continued: its trace id, a span id of app1's own.
    let res = app
        .client
        .get(format!(
            "{}/api/token?resource=https://vault.azure.net",
            app.address
        ))
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let sent = sent_for(&app, "https://vault.azure.net").await;
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts.len(), 4, "{sent}");
    assert_eq!(parts[1], TRACE_ID, "the caller's trace");
    assert_ne!(parts[2], CALLER_SPAN, "app1's own span id");
    assert_eq!(parts[3], "01", "the caller's flags");

    // Without one, a trace starts here, and the next hop still gets it.
    let res = app
        .get("/api/token?resource=https://storage.azure.com")
        .await;
    assert_eq!(res.status(), 200);
    let fresh = sent_for(&app, "https://storage.azure.com").await;
    assert!(fresh.starts_with("00-") && fresh.len() == 55, "{fresh}");
    assert!(!fresh.contains(TRACE_ID));
}
