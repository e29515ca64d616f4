//! devstack's trace page in a real browser: headless Chromium (Debian's
//! `chromium`, which `cargo xtask test` installs) loads the page for a run, and we read
//! the DOM it drew and keep a screenshot.
//!
//! * a passing run draws host → app1 → identity → Key Vault → app2 → Blob, no hop red;
//! * `--scenario app2-missing-role` draws the app2 hop red, with its diagnosis.

use crate::helpers::*;
use devstack::scenario::Scenario;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn chromium() -> PathBuf {
    let path =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    assert!(
        path.exists(),
        "{} is missing: cargo xtask test installs Debian's chromium (or set CHROMIUM)",
        path.display()
    );
    path
}

/// Runs headless Chromium on `url` with `args`; returns stdout.
fn browse(url: &str, args: &[&str]) -> String {
    let profile = tempdir("chromium-profile");
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            // Lets the page's fetches and first refresh finish before the dump.
            "--virtual-time-budget=4000",
            "--window-size=1400,1100",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tempdir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "{what}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Each drawn hop's attributes (`data-from`, `data-to`, `data-status`, …).
fn hops(dom: &str) -> Vec<BTreeMap<String, String>> {
    dom.split("<g class=\"hop\"")
        .skip(1)
        .map(|rest| {
            let tag = &rest[..rest.find('>').unwrap()];
            tag.split("\" ")
                .filter_map(|pair| {
                    let (k, v) = pair.trim().split_once("=\"")?;
                    Some((k.to_owned(), v.trim_end_matches('"').to_owned()))
                })
                .collect()
        })
        .collect()
}

fn screenshot(url: &str, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("trace-page");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    let _ = std::fs::remove_file(&file);
    browse(url, &[&format!("--screenshot={}", file.display())]);
    let png = std::fs::read(&file).expect("chromium wrote the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real picture"
    );
    file
}

/// Runs the flow in a world of its own and returns the page's DOM and hops.
async fn drawn(scenario: Option<Scenario>, shot: &str) -> (String, Vec<BTreeMap<String, String>>) {
    let (stack, host) = scenario_world_with(scenario, &[], scenario.is_none()).await;
    let outcome = devstack::demo::run_flow(&stack, &host).await.unwrap();
    assert_eq!(outcome.ok(), scenario.is_none(), "{}", outcome.body);
    assert!(
        outcome.spans.iter().any(|s| s.service == "app2"),
        "app2's spans arrived"
    );
    let url = outcome.page_url.clone();
    let dom = tokio::task::spawn_blocking({
        let url = url.clone();
        move || browse(&url, &["--dump-dom"])
    })
    .await
    .unwrap();
    let file = tokio::task::spawn_blocking({
        let shot = shot.to_owned();
        move || screenshot(&url, &shot)
    })
    .await
    .unwrap();
    eprintln!("screenshot: {}", file.display());
    host.stop().await;
    stack.stop().await;
    assert!(
        dom.contains("data-state=\"ready\""),
        "the page drew the run: {dom}"
    );
    let hops = hops(&dom);
    (dom, hops)
}

#[tokio::test]
async fn the_page_draws_a_passing_run_hop_by_hop() {
    let (dom, hops) = drawn(None, "passing.png").await;
    let to = |peer: &str| {
        hops.iter()
            .filter(|h| h["data-to"] == peer)
            .collect::<Vec<_>>()
    };
    for peer in ["app1", "identity", "keyvault", "app2", "storage"] {
        assert!(!to(peer).is_empty(), "no hop to {peer} drawn: {hops:#?}");
    }
    assert_eq!(to("app1")[0]["data-from"], "host");
    assert!(
        hops.iter().all(|h| h["data-status"] != "error"),
        "a passing run has no red hop: {hops:#?}"
    );
    // Key Vault's first request is its 401 challenge: drawn, not as a failure.
    assert!(
        to("keyvault")
            .iter()
            .any(|h| h["data-status"] == "challenge")
    );
    assert!(to("keyvault").iter().any(|h| h["data-status"] == "ok"));
    // Audiences and claims are drawn; the token never is.
    assert!(dom.contains("aud https://vault.azure.net"));
    assert!(dom.contains("roles=[App2.Access]"));
    assert!(!dom.contains("eyJ"));
    assert!(!dom.contains("class=\"diagnosis\""));
}

#[tokio::test]
async fn the_page_draws_the_refused_hop_red_with_its_diagnosis() {
    let (dom, hops) = drawn(Some(Scenario::App2MissingRole), "app2-missing-role.png").await;
    let app2: Vec<_> = hops.iter().filter(|h| h["data-to"] == "app2").collect();
    assert_eq!(app2.len(), 1, "{hops:#?}");
    assert_eq!(app2[0]["data-status"], "error");
    assert!(
        hops.iter().filter(|h| h["data-status"] == "error").count() == 1,
        "only the refused hop is red: {hops:#?}"
    );
    assert!(
        dom.contains("data-problem=\"role-never-assigned\""),
        "{dom}"
    );
    assert!(dom.contains("Fix: Assign it: az rest"), "the fix is drawn");
    // The diagnosis asked the directory: that hop is drawn, and it passed.
    assert!(
        hops.iter()
            .any(|h| h["data-to"] == "graph" && h["data-status"] == "ok"),
        "{hops:#?}"
    );
    assert!(
        !dom.contains("data-to=\"storage\""),
        "the flow stopped at app2"
    );
}
