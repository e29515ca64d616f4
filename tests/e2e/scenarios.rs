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
    /// The world as the scenario left it: the directory's real ids.
    world: devstack::world::World,
    /// `GET /api/whoami` in the same world.
    whoami: (u16, Value),
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
    let whoami = get(format!("{}/api/whoami", host.url)).await;
    assert_clean(&whoami.text(), &stack, "whoami");
    let seen = Seen {
        status: got.status,
        body: serde_json::from_str(&text).unwrap_or_else(|_| panic!("{text}")),
        env: stack.env().into_iter().chain(stack.handler_env()).collect(),
        world: stack.world.read().unwrap().clone(),
        whoami: (whoami.status, whoami.json()),
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

/// app2's App2.Access role id in the default world.
fn app2_role_id(w: &devstack::world::World) -> &str {
    &w.app2.app_roles[0].id
}

#[tokio::test]
async fn app2_missing_role() {
    let seen = run(Scenario::App2MissingRole, "/api/flow").await;
    // The directory is readable (app1 holds Application.Read.All): the
    // diagnosis knows the role was never assigned, and names the real ids.
    assert_problem(&seen, 502, "app2", 403, "role-never-assigned");
    assert!(seen.cause().contains("App2.Access"));
    let fix = seen.fix();
    for id in [
        seen.id("APP1_OBJECT_ID"),
        &seen.world.app2.sp_object_id,
        app2_role_id(&seen.world),
        "appRoleAssignments",
        "New-MgServicePrincipalAppRoleAssignment",
    ] {
        assert!(fix.contains(id), "fix lacks {id}: {fix}");
    }
    assert!(!fix.contains("$("), "no placeholders left: {fix}");
    // whoami shows what app1 does hold: Graph's permission, not App2.Access.
    let (status, whoami) = &seen.whoami;
    assert_eq!(*status, 200, "{whoami}");
    let values: Vec<&str> = whoami["app_role_assignments"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["app_role"]["value"].as_str())
        .collect();
    assert_eq!(values, ["Application.Read.All"]);
}

#[tokio::test]
async fn app2_role_not_yet_in_token() {
    let seen = run(Scenario::App2RoleNotYetInToken, "/api/flow").await;
    assert_problem(&seen, 502, "app2", 403, "role-not-yet-in-token");
    let grant = seen
        .world
        .grants
        .iter()
        .find(|g| g.resource_app_id == seen.world.app2.client_id)
        .unwrap();
    let cause = seen.cause();
    assert!(
        cause.contains(&grant.id) && cause.contains("before the grant"),
        "{cause}"
    );
    assert!(seen.fix().contains("Restart the app"), "{}", seen.fix());
}

#[tokio::test]
async fn app2_role_not_for_apps() {
    let seen = run(Scenario::App2RoleNotForApps, "/api/flow").await;
    assert_problem(&seen, 502, "app2", 403, "role-not-for-applications");
    assert!(seen.cause().contains(r#"["User"]"#), "{}", seen.cause());
    assert!(seen.cause().contains(app2_role_id(&seen.world)));
    assert!(seen.fix().contains("allowedMemberTypes"));
}

#[tokio::test]
async fn app2_role_missing_on_api() {
    let seen = run(Scenario::App2RoleMissingOnApi, "/api/flow").await;
    assert_problem(&seen, 502, "app2", 403, "role-missing-on-api");
    let cause = seen.cause();
    assert!(
        cause.contains("App2.Read") && cause.contains(&seen.world.app2.sp_object_id),
        "{cause}"
    );
}

#[tokio::test]
async fn graph_no_permission() {
    let seen = run(Scenario::GraphNoPermission, "/api/flow").await;
    // Without the directory: today's diagnosis, and what the permission would add.
    assert_problem(&seen, 502, "app2", 403, "app2-missing-app-role");
    let fix = seen.fix();
    assert!(
        fix.contains("Application.Read.All") && fix.contains("403 Authorization_RequestDenied"),
        "{fix}"
    );
    let (status, whoami) = &seen.whoami;
    assert_eq!(
        *status, 200,
        "whoami answers with what it could read: {whoami}"
    );
    assert_eq!(whoami["service_principal"]["id"], seen.id("APP1_OBJECT_ID"));
    assert_eq!(whoami["owner"]["kind"], "system_assigned");
    assert!(whoami["app_role_assignments"].is_null());
    assert_eq!(
        whoami["missing_permission"]["permission"],
        "Application.Read.All"
    );
}

#[tokio::test]
async fn graph_throttled() {
    let seen = run(Scenario::GraphThrottled, "/api/flow").await;
    assert_problem(&seen, 502, "app2", 403, "app2-missing-app-role");
    assert!(
        seen.fix().contains("(429 TooManyRequests)"),
        "{}",
        seen.fix()
    );
    let (status, whoami) = &seen.whoami;
    assert_eq!(*status, 503, "{whoami}");
    assert_eq!(whoami["stage"], "graph");
    assert_eq!(whoami["upstream_status"], 429);
    assert_eq!(whoami["type"], "TROUBLESHOOTING.md#graph-error");
}

#[tokio::test]
async fn whoami_and_a_second_named_api_in_the_default_world() {
    let w = world();
    let got = get(format!("{}/api/whoami", w.forward)).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let body = got.json();
    assert_eq!(body["service_principal"]["id"], w.get("APP1_OBJECT_ID"));
    assert_eq!(body["service_principal"]["appId"], w.get("APP1_CLIENT_ID"));
    assert_eq!(
        body["service_principal"]["servicePrincipalType"],
        "ManagedIdentity"
    );
    assert!(
        body["owner"]["resource_id"]
            .as_str()
            .unwrap()
            .ends_with("/providers/Microsoft.Web/sites/app1")
    );
    // Both assignments, across the stand-in's one-item pages, resolved.
    let held: Vec<(String, String)> = body["app_role_assignments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["resource"]["display_name"].as_str().unwrap().to_owned(),
                a["app_role"]["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        held,
        [
            ("app2".to_owned(), "App2.Access".to_owned()),
            (
                "Microsoft Graph".to_owned(),
                "Application.Read.All".to_owned()
            )
        ]
    );
    assert!(body["app_role_assignments"][0]["created_date_time"].is_string());
    assert!(!got.text().contains("eyJ"));

    // A second API, by configuration alone (helpers' world names `mirror`:
    // app2's gate, allowed paths api/*), through every host protocol.
    for (mode, url) in modes() {
        let reached = get(format!("{url}/api/downstream/mirror/api/whoami?code=k")).await;
        assert_eq!(reached.status, 200, "{mode}: {}", reached.text());
        let caller = reached.json();
        assert_eq!(
            caller["object_id"],
            w.get("APP1_OBJECT_ID"),
            "{mode}: {caller}"
        );
        let refused = get(format!("{url}/api/downstream/mirror/admin/x")).await;
        assert_eq!(refused.status, 403, "{mode}: {}", refused.text());
        assert_eq!(
            refused.json()["type"],
            "TROUBLESHOOTING.md#path-not-allowed"
        );
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
    for target in ["keyvault", "storage", "app2", "graph"] {
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

/// The flow reaches Key Vault and app2, then the partner tenant refuses the
/// token exchange with `code`: the diagnosis names both sides' values.
async fn partner_refused(scenario: Scenario, upstream: u16, anchor: &str, code: &str) -> Seen {
    let seen = run(scenario, "/api/flow").await;
    assert_problem(&seen, 502, "partner", upstream, anchor);
    assert_eq!(
        seen.body["diagnosis"]["upstream"]["code"], code,
        "{}",
        seen.body
    );
    assert_eq!(seen.body["steps"][1]["ok"], true, "app2 still worked");
    assert_eq!(seen.body["steps"][2]["name"], "partner");
    assert!(
        seen.fix()
            .contains(seen.id("DOWNSTREAM_APIS__PARTNER__FEDERATED_CLIENT_ID")),
        "{}",
        seen.fix()
    );
    seen
}

#[tokio::test]
async fn fic_wrong_subject() {
    let seen = partner_refused(
        Scenario::FicWrongSubject,
        401,
        "fic-subject-mismatch",
        "AADSTS700213",
    )
    .await;
    assert!(
        seen.fix()
            .contains(&format!("object id {}", seen.id("DEVSTACK_UA_OBJECT_ID"))),
        "{}",
        seen.fix()
    );
}

#[tokio::test]
async fn fic_subject_case() {
    let seen = partner_refused(
        Scenario::FicSubjectCase,
        401,
        "fic-subject-case",
        "AADSTS7002138",
    )
    .await;
    assert!(
        seen.fix().contains(seen.id("DEVSTACK_UA_OBJECT_ID")),
        "{}",
        seen.fix()
    );
}

#[tokio::test]
async fn fic_wrong_issuer() {
    let seen = partner_refused(
        Scenario::FicWrongIssuer,
        401,
        "fic-issuer-mismatch",
        "AADSTS700211",
    )
    .await;
    let issuer = format!(
        "https://login.microsoftonline.com/{}/v2.0",
        seen.id("DEVSTACK_TENANT_ID")
    );
    assert!(seen.fix().contains(&issuer), "{}", seen.fix());
}

#[tokio::test]
async fn fic_wrong_audience() {
    let seen = partner_refused(
        Scenario::FicWrongAudience,
        401,
        "fic-audience-mismatch",
        "AADSTS700212",
    )
    .await;
    assert!(
        seen.fix().contains("api://AzureADTokenExchange"),
        "{}",
        seen.fix()
    );
}

#[tokio::test]
async fn partner_not_provisioned() {
    let seen = partner_refused(
        Scenario::PartnerNotProvisioned,
        400,
        "partner-not-provisioned",
        "AADSTS700016",
    )
    .await;
    assert!(
        seen.fix().contains(seen.id("DEVSTACK_PARTNER_TENANT_ID")),
        "{}",
        seen.fix()
    );
}

#[tokio::test]
async fn partner_missing_role() {
    let seen = run(Scenario::PartnerMissingRole, "/api/flow").await;
    assert_problem(&seen, 502, "partner", 403, "partner-missing-app-role");
    let sp = seen
        .world
        .federated_app
        .partner_sp_object_id
        .clone()
        .unwrap();
    let fix = seen.fix();
    assert!(
        fix.contains(seen.id("DEVSTACK_PARTNER_TENANT_ID"))
            && fix.contains(&sp)
            && fix.contains("Partner.Access"),
        "{fix}"
    );
    assert_eq!(
        seen.body["diagnosis"]["principal"]["tid"],
        seen.id("DEVSTACK_PARTNER_TENANT_ID")
    );
}

/// A FIC on the system-assigned identity, and no user-assigned one for the
/// partner API: the handler refuses to start, naming the setting and why.
#[tokio::test]
async fn fic_system_assigned() {
    let state = std::env::temp_dir().join(format!("e2e-fic-sa-{}", fastrand::u64(..)));
    let mut options = devstack::stack::StackOptions::new(&state);
    options.azurite = false;
    options.scenario = Some(Scenario::FicSystemAssigned);
    let stack = Stack::start(options).await.unwrap();
    let env = stack.handler_env();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_handler"))
            .env_clear()
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", "0")
            .envs(env)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("DOWNSTREAM_APIS__PARTNER__CLIENT_ID")
            && stderr.contains("system-assigned"),
        "{stderr}"
    );
    stack.stop().await;
}
