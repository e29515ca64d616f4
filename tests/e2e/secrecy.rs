//! No token and no secret value in any response or handler log line, with the
//! handlers logging at TRACE.

use crate::helpers::*;
use reqwest::Method;

#[tokio::test]
async fn responses_and_logs_never_carry_tokens_or_secret_values() {
    let w = world();
    let mut bodies = String::new();
    for (_, base) in modes() {
        for (method, path) in [
            (Method::POST, "/api/flow"),
            (Method::GET, "/api/token?resource=https://storage.azure.com"),
            (Method::GET, "/api/secrets/app1-demo-secret"),
            (Method::GET, "/api/app2/api/whoami"),
            (Method::GET, "/api/whoami"),
            (Method::GET, "/api/downstream/partner/api/whoami"),
            (Method::GET, "/api/downstream/mirror/api/whoami"),
            (Method::GET, "/api/token?check=partner"),
            (Method::GET, "/api/token?check=graph"),
            (Method::GET, "/api/secrets/no-such-secret"),
        ] {
            bodies.push_str(&send(method, format!("{base}{path}"), None).await.text());
        }
    }
    let logs = w.console();
    assert!(
        logs.contains("request completed"),
        "handler logs were captured"
    );
    for (what, text) in [("responses", &bodies), ("handler logs", &logs)] {
        assert!(!text.contains("eyJ"), "a JWT appears in the {what}");
        assert!(
            !text.contains("devstack-demo-value-not-a-real-secret"),
            "the secret value appears in the {what}"
        );
        assert!(
            !text.contains(w.get("IDENTITY_HEADER")),
            "the identity header appears in the {what}"
        );
    }
}
