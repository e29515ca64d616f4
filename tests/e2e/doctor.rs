//! `handler doctor` and `/api/doctor` against devstack: the default world
//! passes every check; each scenario fails exactly its check, with its
//! diagnosis; no output form ever carries a token; `/api/doctor` opens with
//! the master key only.

use crate::helpers::*;
use devstack::scenario::Scenario;
use devstack::stack::{Stack, StackOptions};
use handler::configuration::Settings;
use handler::doctor::{Options, Report, Status};
use std::collections::HashMap;

async fn stack(scenario: Option<Scenario>) -> Stack {
    let state = std::env::temp_dir().join(format!(
        "e2e-doctor-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let mut options = StackOptions::new(&state);
    options.azurite = false;
    options.scenario = scenario;
    Stack::start(options).await.expect("devstack starts")
}

/// The report, as the console would print it, from devstack's env alone.
async fn doctor(stack: &Stack) -> Report {
    let env: HashMap<String, String> = stack.handler_env().into_iter().collect();
    let settings = Settings::from_sources(None, env).expect("devstack's settings are valid");
    handler::doctor::cli::report(&settings, &Options::default())
        .await
        .unwrap()
}

/// Neither output form carries a token, the identity header or a secret.
fn assert_clean(report: &Report, stack: &Stack) {
    let json = serde_json::to_string(report).unwrap();
    let text = handler::doctor::human(report, true);
    for (what, out) in [("json", &json), ("human", &text)] {
        assert!(!out.contains("eyJ"), "a token in the {what} report");
        assert!(
            !out.contains(&stack.identity.identity_header)
                && !out.contains(&stack.identity.msi_secret),
            "the identity header in the {what} report"
        );
        assert!(
            !out.contains("devstack-demo-value-not-a-real-secret"),
            "a secret value in the {what} report"
        );
    }
}

/// Runs the doctor in `scenario`'s world: exactly `failing` fail, each with `anchor`.
async fn expect(scenario: Option<Scenario>, failing: &[&str], anchor: &str) -> Report {
    let stack = stack(scenario).await;
    let report = doctor(&stack).await;
    assert_clean(&report, &stack);
    let failed: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Failed)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        failed,
        failing,
        "{scenario:?}: {}",
        handler::doctor::human(&report, false)
    );
    assert_eq!(report.ok, failing.is_empty());
    assert_eq!(report.exit_code(), u8::from(!failing.is_empty()));
    for check in report.checks.iter().filter(|c| c.status == Status::Failed) {
        let problem = check.problem.as_ref().expect("a failure has its problem");
        let body = serde_json::to_value(problem).unwrap();
        assert_eq!(
            body["type"],
            format!("TROUBLESHOOTING.md#{anchor}"),
            "{scenario:?} {}: {body}",
            check.name
        );
        if anchor != "graph-error" {
            assert!(body["diagnosis"]["fix"].is_string(), "{body}");
        }
    }
    stack.stop().await;
    report
}

#[tokio::test]
async fn the_default_world_passes_every_check() {
    let report = expect(None, &[], "").await;
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    for name in [
        "identity source",
        "selector",
        "protocol",
        "clock",
        "token keyvault",
        "token app2",
        "token graph",
        "token partner",
        "keyvault",
        "app2",
        "graph",
        "partner",
    ] {
        assert!(names.contains(&name), "{name} is checked: {names:?}");
    }
    // The partner API's token is the other tenant's, exchanged for the
    // identity's assertion: both sides' deciding claims, never a token.
    let partner = report
        .checks
        .iter()
        .find(|c| c.name == "token partner")
        .unwrap();
    let claims = partner.claims.as_ref().unwrap();
    assert_eq!(claims["roles"][0], "Partner.Access");
    let home = report
        .checks
        .iter()
        .find(|c| c.name == "token app2")
        .unwrap();
    assert_ne!(claims["tid"], home.claims.as_ref().unwrap()["tid"]);
    assert_eq!(claims["assertion"]["aud"], "api://AzureADTokenExchange");
    assert!(
        partner
            .found
            .contains("assertion iss https://login.microsoftonline.com/"),
        "{}",
        partner.found
    );
    let app2 = report
        .checks
        .iter()
        .find(|c| c.name == "token app2")
        .unwrap();
    let claims = app2.claims.as_ref().unwrap();
    assert_eq!(claims["roles"][0], "App2.Access");
    for claim in ["aud", "iss", "oid", "appid", "tid", "exp"] {
        assert!(claims.contains_key(claim), "{claim} is shown");
    }
    let graph = report.checks.iter().find(|c| c.name == "graph").unwrap();
    assert!(graph.found.contains("App2.Access"), "{}", graph.found);
    // Without Azurite, storage is skipped, not failed.
    assert!(
        report
            .checks
            .iter()
            .any(|c| c.name == "storage" && c.status == Status::Skipped)
    );
}

#[tokio::test]
async fn kv_no_role_fails_the_keyvault_check() {
    expect(
        Some(Scenario::KvNoRole),
        &["keyvault"],
        "keyvault-forbidden-by-rbac",
    )
    .await;
}

#[tokio::test]
async fn app2_not_allowed_fails_the_app2_check() {
    expect(
        Some(Scenario::App2NotAllowed),
        &["app2"],
        "app2-not-allowed",
    )
    .await;
}

#[tokio::test]
async fn app2_wrong_audience_fails_the_app2_check() {
    expect(
        Some(Scenario::App2WrongAudience),
        &["app2"],
        "app2-audience-not-allowed",
    )
    .await;
}

#[tokio::test]
async fn app2_missing_role_fails_the_app2_check_with_the_real_ids() {
    let report = expect(
        Some(Scenario::App2MissingRole),
        &["app2"],
        "role-never-assigned",
    )
    .await;
    let text = handler::doctor::human(&report, false);
    assert!(text.contains("fix:   Assign it: az rest"), "{text}");
}

#[tokio::test]
async fn app2_role_not_yet_in_token_fails_the_app2_check() {
    expect(
        Some(Scenario::App2RoleNotYetInToken),
        &["app2"],
        "role-not-yet-in-token",
    )
    .await;
}

#[tokio::test]
async fn app2_role_not_for_apps_fails_the_app2_check() {
    expect(
        Some(Scenario::App2RoleNotForApps),
        &["app2"],
        "role-not-for-applications",
    )
    .await;
}

#[tokio::test]
async fn app2_role_missing_on_api_fails_the_app2_check() {
    expect(
        Some(Scenario::App2RoleMissingOnApi),
        &["app2"],
        "role-missing-on-api",
    )
    .await;
}

#[tokio::test]
async fn graph_no_permission_fails_app2_and_says_what_graph_could_not_list() {
    let report = expect(
        Some(Scenario::GraphNoPermission),
        &["app2"],
        "app2-missing-app-role",
    )
    .await;
    let graph = report.checks.iter().find(|c| c.name == "graph").unwrap();
    assert!(
        graph.found.contains("Application.Read.All"),
        "{}",
        graph.found
    );
}

#[tokio::test]
async fn graph_throttled_fails_app2_and_graph() {
    let stack = stack(Some(Scenario::GraphThrottled)).await;
    let report = doctor(&stack).await;
    assert_clean(&report, &stack);
    let failed: Vec<(&str, String)> = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Failed)
        .map(|c| (c.name.as_str(), c.problem.as_ref().unwrap().kind.clone()))
        .collect();
    assert_eq!(
        failed,
        [
            (
                "app2",
                "TROUBLESHOOTING.md#app2-missing-app-role".to_owned()
            ),
            ("graph", "TROUBLESHOOTING.md#graph-error".to_owned())
        ]
    );
    stack.stop().await;
}

#[tokio::test]
async fn user_assigned_missing_fails_every_token_and_skips_the_targets() {
    let report = expect(
        Some(Scenario::UserAssignedMissing),
        &["token keyvault", "token app2", "token graph"],
        "identity-not-attached",
    )
    .await;
    let selector = report.checks.iter().find(|c| c.name == "selector").unwrap();
    assert!(
        selector.found.contains("from the settings"),
        "{}",
        selector.found
    );
    assert!(
        report
            .checks
            .iter()
            .filter(|c| c.name == "app2" || c.name == "keyvault")
            .all(|c| c.status == Status::Skipped)
    );
}

#[tokio::test]
async fn identity_unavailable_fails_every_token() {
    expect(
        Some(Scenario::IdentityUnavailable),
        // The partner's exchange starts with the identity's own token.
        &[
            "token keyvault",
            "token app2",
            "token graph",
            "token partner",
        ],
        "identity-endpoint-unavailable",
    )
    .await;
}

#[tokio::test]
async fn every_scenario_has_its_doctor_test() {
    // A new scenario needs a test above: this list is the tests' own.
    let tested = [
        Scenario::KvNoRole,
        Scenario::App2NotAllowed,
        Scenario::App2WrongAudience,
        Scenario::App2MissingRole,
        Scenario::UserAssignedMissing,
        Scenario::IdentityUnavailable,
        Scenario::App2RoleNotYetInToken,
        Scenario::App2RoleNotForApps,
        Scenario::App2RoleMissingOnApi,
        Scenario::GraphNoPermission,
        Scenario::GraphThrottled,
        Scenario::FicWrongSubject,
        Scenario::FicSubjectCase,
        Scenario::FicWrongIssuer,
        Scenario::FicWrongAudience,
        Scenario::FicSystemAssigned,
        Scenario::PartnerNotProvisioned,
        Scenario::PartnerMissingRole,
    ];
    assert_eq!(tested.len(), Scenario::ALL.len());
    assert!(Scenario::ALL.iter().all(|s| tested.contains(s)));
}

#[tokio::test]
async fn fic_scenarios_fail_the_partner_token_check() {
    for (scenario, anchor) in [
        (Scenario::FicWrongSubject, "fic-subject-mismatch"),
        (Scenario::FicSubjectCase, "fic-subject-case"),
        (Scenario::FicWrongIssuer, "fic-issuer-mismatch"),
        (Scenario::FicWrongAudience, "fic-audience-mismatch"),
        (Scenario::PartnerNotProvisioned, "partner-not-provisioned"),
    ] {
        let report = expect(Some(scenario), &["token partner"], anchor).await;
        let partner = report.checks.iter().find(|c| c.name == "partner").unwrap();
        assert_eq!(partner.status, Status::Skipped, "no call without a token");
    }
}

#[tokio::test]
async fn partner_missing_role_fails_the_partner_check() {
    expect(
        Some(Scenario::PartnerMissingRole),
        &["partner"],
        "partner-missing-app-role",
    )
    .await;
}

/// A FIC on the system-assigned identity: the settings are refused (the
/// server would not start), and the report's one check says why.
#[tokio::test]
async fn fic_system_assigned_fails_the_settings_check() {
    let stack = stack(Some(Scenario::FicSystemAssigned)).await;
    let env: HashMap<String, String> = stack.handler_env().into_iter().collect();
    let error = Settings::from_sources(None, env).unwrap_err().to_string();
    assert!(
        error.contains("DOWNSTREAM_APIS__PARTNER__CLIENT_ID") && error.contains("system-assigned"),
        "{error}"
    );
    let report = Report::unusable_settings(&error);
    assert_eq!(report.exit_code(), 1);
    assert_eq!(report.checks[0].name, "settings");
    stack.stop().await;
}

/// The binary itself, as a console runs it: devstack's env, nothing else.
#[tokio::test]
async fn the_binary_runs_the_doctor_as_a_console_would() {
    let stack = stack(None).await;
    let run = |args: &[&str], env: Vec<(String, String)>| {
        std::process::Command::new(env!("CARGO_BIN_EXE_handler"))
            .arg("doctor")
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .output()
            .unwrap()
    };
    let env = stack.handler_env();
    let human = tokio::task::spawn_blocking({
        let env = env.clone();
        move || run(&["--resource", "https://management.azure.com"], env)
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&human.stdout);
    assert_eq!(
        human.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&human.stderr)
    );
    assert!(text.contains("ok: every check passed"), "{text}");
    assert!(
        text.contains("token https://management.azure.com"),
        "{text}"
    );
    assert!(
        !text.contains("\x1b["),
        "no colour when stdout is not a terminal"
    );
    assert!(!text.contains("eyJ") && !text.contains(&stack.identity.identity_header));

    let json = tokio::task::spawn_blocking({
        let env = env.clone();
        move || run(&["--json"], env)
    })
    .await
    .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        (json.status.code(), report["ok"].as_bool()),
        (Some(0), Some(true))
    );
    assert!(!String::from_utf8_lossy(&json.stdout).contains("eyJ"));

    let bad = tokio::task::spawn_blocking(move || run(&["--show-token"], env))
        .await
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no --show-token"));
    stack.stop().await;
}

#[tokio::test]
async fn api_doctor_opens_with_the_master_key_only() {
    let stack = stack(Some(Scenario::KvNoRole)).await;
    let host = devstack::host::FunctionsHost::start(devstack::host::HostOptions {
        app_root: root(),
        port: 0,
        mode: devstack::host::HostMode::FromHostJson,
        enforce_keys: true,
        executable: Some(std::path::PathBuf::from(env!("CARGO_BIN_EXE_handler"))),
        platform_env: stack.handler_env(),
    })
    .await
    .expect("host starts");
    assert!(host.ready(std::time::Duration::from_secs(30)).await);
    let url = format!("{}/api/doctor", host.url);
    assert_eq!(get(url.clone()).await.status, 401, "no key");
    let function_key = get(format!("{url}?code={}", host.keys().function)).await;
    assert_eq!(function_key.status, 401, "a function key is not enough");
    let master = get(format!("{url}?code={}", host.keys().master)).await;
    assert_eq!(master.status, 200, "{}", master.text());
    let report = master.json();
    assert_eq!(report["ok"], false);
    let failed: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "failed")
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["keyvault"]);
    assert!(!master.text().contains("eyJ") && !master.text().contains(&host.keys().master));
    host.stop().await;
    stack.stop().await;
}
