//! Every devstack scenario through the host stand-in: the status, the stage,
//! the upstream status and code, and a fix that names the right role, setting
//! and ids. Also `?check=`. And no token or secret in any answer or log.

use crate::helpers::*;
use devstack::scenario::Scenario;
use devstack::stack::Stack;
use reqwest::Method;
use serde_json::Value;

struct Seen {
    status: u16,
    body: Value,
    env: std::collections::HashMap<String, String>,
}

impl Seen {
    fn fix(&self) -> &str {
        self.body["diagnosis"]["fix"]
            .as_str()
            .unwrap_or_else(|| panic!("no diagnosis: {}", self.body))
    }
    fn cause(&self) -> &str {
        self.body["diagnosis"]["cause"].as_str().unwrap()
    }
    fn id(&self, key: &str) -> &str {
        &self.env[key]
    }
}

fn assert_clean(text: &str, stack: &Stack, what: &str) {
    assert!(!text.contains("eyJ"), "a token in the {what}");
    assert!(
        !text.contains("devstack-demo-value-not-a-real-secret"),
        "the secret value in the {what}"
    );
    assert!(
        !text.contains(&stack.identity.identity_header),
        "the identity header in the {what}"
    );
}

async fn run(scenario: Scenario, path: &str) -> Seen {
    let (stack, host) = scenario_world(Some(scenario), &[]).await;
    let method = if path == "/api/flow" {
        Method::POST
    } else {
        Method::GET
    };
    let got = send(method, format!("{}{path}", host.url), None).await;
    let text = got.text();
    assert_clean(&text, &stack, "response");
    let logs: Vec<String> = host
        .shared
        .worker
        .console()
        .into_iter()
        .map(|l| l.text)
        .collect();
    assert_clean(&logs.join("\n"), &stack, "handler logs");
    let seen = Seen {
        status: got.status,
        body: serde_json::from_str(&text).unwrap_or_else(|_| panic!("{text}")),
        env: stack.env().into_iter().chain(stack.handler_env()).collect(),
    };
    host.stop().await;
    stack.stop().await;
    seen
}

fn assert_problem(seen: &Seen, status: u16, stage: &str, upstream: u16, anchor: &str) {
    assert_eq!(seen.status, status, "{}", seen.body);
    assert_eq!(seen.body["stage"], stage, "{}", seen.body);
    assert_eq!(seen.body["upstream_status"], upstream, "{}", seen.body);
    assert_eq!(
        seen.body["type"],
        format!("TROUBLESHOOTING.md#{anchor}"),
        "{}",
        seen.body
    );
    assert_eq!(seen.body["diagnosis"]["upstream"]["status"], upstream);
    assert_eq!(seen.body["hint"], seen.body["diagnosis"]["fix"]);
}

#[tokio::test]
async fn kv_no_role() {
    let seen = run(Scenario::KvNoRole, "/api/flow").await;
    assert_problem(&seen, 502, "keyvault", 403, "keyvault-forbidden-by-rbac");
    assert_eq!(
        seen.body["diagnosis"]["upstream"]["code"],
        "ForbiddenByRbac"
    );
    assert_eq!(
        seen.body["diagnosis"]["principal"]["oid"],
        seen.id("APP1_OBJECT_ID")
    );
    assert_eq!(
        seen.body["diagnosis"]["token"]["aud"],
        "https://vault.azure.net"
    );
    let fix = seen.fix();
    assert!(
        fix.contains("\"Key Vault Secrets User\"")
            && fix.contains(seen.id("APP1_OBJECT_ID"))
            && fix.contains("devstack-kv"),
        "{fix}"
    );
    assert_eq!(seen.body["ok"], false);
    assert_eq!(
        seen.body["steps"][0]["ok"], false,
        "the step report carries the failure too"
    );
    assert!(seen.body["steps"][0]["detail"]["diagnosis"].is_object());
}

#[tokio::test]
async fn app2_not_allowed() {
    let seen = run(Scenario::App2NotAllowed, "/api/flow").await;
    assert_problem(&seen, 502, "app2", 403, "app2-not-allowed");
    let fix = seen.fix();
    assert!(
        fix.contains("allowedApplications") && fix.contains(seen.id("APP1_CLIENT_ID")),
        "{fix}"
    );
    assert_eq!(seen.body["steps"][0]["ok"], true, "Key Vault still worked");
}

#[tokio::test]
async fn app2_wrong_audience() {
    let seen = run(Scenario::App2WrongAudience, "/api/flow").await;
    assert_problem(&seen, 502, "app2", 401, "app2-audience-not-allowed");
    assert_eq!(
        seen.body["diagnosis"]["upstream"]["www_authenticate"]["resource_id"],
        seen.id("APP2_CLIENT_ID")
    );
    assert_eq!(
        seen.body["diagnosis"]["token"]["aud"],
        seen.id("APP2_RESOURCE")
    );
    let fix = seen.fix();
    assert!(
        fix.contains("allowedAudiences")
            && fix.contains(seen.id("APP2_RESOURCE"))
            && fix.contains(seen.id("APP2_CLIENT_ID")),
        "{fix}"
    );
}

#[tokio::test]
async fn app2_missing_role() {
    let seen = run(Scenario::App2MissingRole, "/api/flow").await;
    assert_problem(&seen, 502, "app2", 403, "app2-missing-app-role");
    assert!(seen.cause().contains("App2.Access"));
    let fix = seen.fix();
    for id in [
        seen.id("APP1_OBJECT_ID"),
        seen.id("APP2_CLIENT_ID"),
        "App2.Access",
        "appRoleAssignments",
    ] {
        assert!(fix.contains(id), "fix lacks {id}: {fix}");
    }
}

#[tokio::test]
async fn user_assigned_missing() {
    let seen = run(Scenario::UserAssignedMissing, "/api/flow").await;
    assert_problem(&seen, 502, "identity", 400, "identity-not-attached");
    let selected = seen.id("AZURE_CLIENT_ID");
    assert!(
        seen.cause()
            .contains(&format!("AZURE_CLIENT_ID={selected}")),
        "{}",
        seen.cause()
    );
    assert!(seen.fix().contains("az functionapp identity assign"));
    assert_eq!(seen.body["diagnosis"]["principal"]["selector"], "client_id");
}

#[tokio::test]
async fn identity_unavailable() {
    let seen = run(Scenario::IdentityUnavailable, "/api/flow").await;
    assert_problem(&seen, 503, "identity", 429, "identity-endpoint-unavailable");
}

#[tokio::test]
async fn check_keyvault_diagnoses_in_a_broken_world() {
    let seen = run(Scenario::KvNoRole, "/api/token?check=keyvault").await;
    assert_problem(&seen, 502, "keyvault", 403, "keyvault-forbidden-by-rbac");
}

#[tokio::test]
async fn check_targets_in_the_default_world() {
    let w = world();
    for target in ["keyvault", "storage", "app2"] {
        let got = get(format!("{}/api/token?check={target}", w.forward)).await;
        assert_eq!(got.status, 200, "{target}: {}", got.text());
        let body = got.json();
        assert_eq!(
            (body["check"].as_str(), body["ok"].as_bool()),
            (Some(target), Some(true))
        );
        assert_eq!(
            body["principal"]["oid"],
            w.get("APP1_OBJECT_ID"),
            "{target}"
        );
        assert!(!got.text().contains("eyJ"));
    }
    // The user-assigned identity holds no Key Vault role: check says so, for that identity.
    let ua = w.get("DEVSTACK_UA_CLIENT_ID");
    let got = get(format!(
        "{}/api/token?check=keyvault&client_id={ua}",
        w.forward
    ))
    .await;
    assert_eq!(got.status, 502, "{}", got.text());
    let body = got.json();
    assert_eq!(
        body["diagnosis"]["principal"]["oid"],
        w.get("DEVSTACK_UA_OBJECT_ID")
    );
    assert_eq!(body["diagnosis"]["principal"]["selector"], "client_id");
    assert!(
        body["diagnosis"]["fix"]
            .as_str()
            .unwrap()
            .contains(w.get("DEVSTACK_UA_OBJECT_ID"))
    );
    // Bad check requests are 400s.
    assert_eq!(
        get(format!("{}/api/token?check=cosmos", w.forward))
            .await
            .status,
        400
    );
    assert_eq!(
        get(format!("{}/api/token?check=app2&resource=x", w.forward))
            .await
            .status,
        400
    );
}
