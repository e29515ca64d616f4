//! `devstack demo`, as the README promises: every step reported, ok only when
//! all passed; with a scenario, the failing step and its diagnosis, not ok.

use crate::helpers::root;
use devstack::demo::{AppSpec, run};
use devstack::host::HostMode;
use devstack::scenario::Scenario;
use devstack::stack::StackOptions;
use std::path::PathBuf;

fn app() -> AppSpec {
    AppSpec {
        app_root: root(),
        executable: Some(PathBuf::from(env!("CARGO_BIN_EXE_handler"))),
        mode: HostMode::FromHostJson,
        enforce_keys: false,
        port: 0,
    }
}

fn options(scenario: Option<Scenario>) -> StackOptions {
    let mut options = StackOptions::new(std::env::temp_dir().join(format!(
        "e2e-demo-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    )));
    options.cache_dir = Some(root().join(".devstack/cache"));
    options.azurite = scenario.is_none(); // a broken Key Vault stops the flow before storage
    options.scenario = scenario;
    options
}

#[tokio::test]
async fn demo_passes_in_the_default_world() {
    let outcome = run(options(None), &app()).await.unwrap();
    assert!(outcome.ok(), "{}", outcome.body);
    let text = devstack::report::render(&outcome.body, outcome.status, false);
    for step in [
        "✔ keyvault",
        "✔ app2",
        "✔ partner",
        "partner API (tenant ",
        "✔ audit-write",
        "✔ audit-read",
        "ok: every step passed",
    ] {
        assert!(text.contains(step), "{step} missing from:\n{text}");
    }
    // And the run's trace: its id, the spans from both apps, the page.
    let trace = outcome.trace_lines();
    assert_eq!(outcome.trace_id.len(), 32);
    assert!(
        trace.starts_with(&format!("trace {} (", outcome.trace_id)),
        "{trace}"
    );
    assert!(trace.contains("spans from app1 and app2"), "{trace}");
    assert!(
        trace.contains(&format!("/?trace={}", outcome.trace_id)),
        "{trace}"
    );
}

#[tokio::test]
async fn demo_with_a_scenario_shows_the_diagnosis_and_fails() {
    let outcome = run(options(Some(Scenario::KvNoRole)), &app())
        .await
        .unwrap();
    assert!(!outcome.ok());
    assert_eq!(outcome.status, 502);
    let text = devstack::report::render(&outcome.body, outcome.status, false);
    assert!(text.contains("✘ keyvault"), "{text}");
    assert!(
        text.contains("cause: ") && text.contains("fix: Assign \"Key Vault Secrets User\""),
        "{text}"
    );
    assert!(text.contains("failed: see the step marked ✘"), "{text}");
}
